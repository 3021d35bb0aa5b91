"""How fast models become useful on this machine: quality against optimiser steps and wall time.

Trains one model with the trainer's own optimiser step (:class:`vaelens.train.trainer.StepRunner`,
the lr schedule of :func:`vaelens.train.trainer.lr_factor`) and, every ``--eval-every``
steps, scores it on a fixed held-out sample of the dataset (the clock stops while it scores):

- ``rec``: reconstruction loss per image (the model's own ``-log p(x|z)``, at the mean code);
- ``kl``: KL to the prior per image, summed over latents;
- ``active``: latents whose mean KL is above 0.01 nats (the analysis's ``collapse_kl``);
- ``mig`` and ``dci_d`` / ``dci_c`` / ``dci_i``: MIG (20 bins) and DCI with the fast
  ``gbt-hist`` estimator, on ``--n-eval`` codes (a third of them held out for DCI's test);
- ``pos``: the best absolute Spearman correlation of one latent with posX and with posY
  (dSprites only; shows when position is learned);
- ``shape_acc``: whether the reconstructions draw the right shape (dSprites only): each of
  the first 600 held-out images is also rendered as the other shapes with every other
  factor kept but scale (the best of the 6 scales is taken for each shape: at one scale the
  three shapes differ in area, so a blob of the right area would otherwise pass), and the
  reconstruction counts as right when it is closer (the model's own per-image
  reconstruction loss) to its own shape than to the others. Chance is 1/3.

    python benchmarks/convergence.py --model beta_vae --dataset dsprites --width 0.5 --steps 6000
    python benchmarks/convergence.py --model factor_vae --dataset synthetic --steps 3000 \\
        --param gamma=10 --json out/conv.json
    python benchmarks/convergence.py --plot docs/convergence.png out/a.json out/b.json

Prints one row per evaluation; ``--json`` writes the curve; ``--plot`` draws saved curves.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr

from vaelens.data import load_dataset
from vaelens.metrics.causal import collapsed_latents
from vaelens.metrics.disentanglement.dci import dci
from vaelens.metrics.disentanglement.mig import mig
from vaelens.models import build_model
from vaelens.models.vae import reconstruction_loss_per_image
from vaelens.train.config import ADAM_BETAS, TrainConfig
from vaelens.train.data import EpochOrder, build_training_set
from vaelens.train.trainer import StepRunner, lr_factor


def _param(text: str) -> tuple[str, Any]:
    key, _, value = text.partition("=")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


@torch.no_grad()
def evaluate(
    model: torch.nn.Module, x: torch.Tensor, factors: np.ndarray, names: list[str]
) -> dict:
    """The scores of the module docstring on held-out images ``x`` with factor indices."""
    was_training = model.training
    model.eval()
    means, logvars, decoded = [], [], []
    for chunk in torch.split(x, 256):
        post = model.encode(chunk)
        means.append(post.mean)
        logvars.append(post.logvar)
        decoded.append(model.decode(post.mean))
    model.train(was_training)
    recon = torch.cat(decoded)
    mu = torch.cat(means)
    lv = None if logvars[0] is None else torch.cat(logvars)
    collapsed, kl_dim, _ = collapsed_latents(mu, lv)  # the analysis' rule: KL < 0.01 nats
    codes = mu.numpy().astype(np.float64)
    n_fit = 2 * len(codes) // 3
    out = {
        "rec": float(reconstruction_loss_per_image(recon, x, model.likelihood).mean()),
        "kl": float(kl_dim.sum()),
        "active": int((~collapsed).sum()),
        "mig": mig(codes, factors)["mig"],
    }
    d = dci(codes[:n_fit], factors[:n_fit], codes[n_fit:], factors[n_fit:], estimator="gbt-hist")
    out.update(dci_d=d["disentanglement"], dci_c=d["completeness"], dci_i=d["informativeness_test"])
    if names == ["shape", "scale", "orientation", "posX", "posY"]:  # dSprites
        n = min(_SHAPE_N, len(x))
        out["shape_acc"] = shape_accuracy(recon[:n], factors[:n], model.likelihood)
    for f, name in enumerate(names):
        if name in ("posX", "posY"):
            rho = [abs(spearmanr(codes[:, j], factors[:, f])[0]) for j in range(codes.shape[1])]
            rho = [0.0 if math.isnan(r) else r for r in rho]
            out[f"{name}_rho"] = float(max(rho))
            out[f"{name}_latent"] = int(np.argmax(rho))
    return out


_SHAPE_N = 600


def shape_accuracy(decoded: torch.Tensor, factors: np.ndarray, likelihood: str) -> float:
    """Share of reconstructions (decoder outputs of dSprites images with ``factors``) closer
    to their own shape's rendering than to any other's (module docstring)."""
    from vaelens.data.dsprites import render_dsprites

    n, f = len(decoded), 0  # dSprites: (shape, scale, orientation, posX, posY)
    losses = []
    for s in range(3):  # best over the 6 scales: the shapes differ in area at one scale
        per_scale = []
        for k in range(6):
            alt = factors[:n].copy()
            alt[:, f], alt[:, 1] = s, k
            target = torch.from_numpy(render_dsprites(alt).astype(np.float32))
            per_scale.append(
                reconstruction_loss_per_image(decoded, target.reshape(decoded.shape), likelihood)
            )
        losses.append(torch.stack(per_scale, 1).amin(1))
    pick = torch.stack(losses, 1).argmin(1).numpy()
    return float(np.mean(pick == factors[:n, f]))


def run(args: argparse.Namespace) -> list[dict]:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    ds = load_dataset(args.dataset, source="procedural")
    params = {"width": args.width, **dict(_param(p) for p in args.param)}
    c, h, _ = ds.image_shape
    model = build_model(args.model, in_channels=c, image_size=h, **params)
    model.to(memory_format=torch.channels_last)
    cfg = TrainConfig(
        model=args.model, steps=args.steps, lr=args.lr, batch_size=args.batch,
        schedule=args.schedule, warmup_steps=args.warmup, n_train=args.n_train,
        adam_betas=args.adam_betas,
    )  # fmt: skip
    trainset = build_training_set(ds, args.n_train, seed=args.seed)
    rng = np.random.default_rng(12345)
    eval_factors = ds.sample_factors(args.n_eval, rng)
    x_eval = torch.from_numpy(np.asarray(ds.images(eval_factors), dtype=np.float32))
    runner = StepRunner(model, lr=cfg.lr, betas=cfg.adam_betas)
    order = EpochOrder(len(trainset), args.batch, args.seed)
    names = list(ds.factor_names)
    curve, train_s = [], 0.0
    for step in range(args.steps + 1):
        if step % args.eval_every == 0 or step == args.steps:
            row = {"step": step, "time_s": round(train_s, 2)}
            row.update(evaluate(model, x_eval, eval_factors, names))
            curve.append(row)
            print(_format(row), flush=True)
            _save(args, curve)
        if step == args.steps:
            break
        t0 = time.perf_counter()
        runner.set_lr_factor(lr_factor(step, cfg))
        x = trainset.batch(order.indices(step), channels_last=True)
        runner(x, step)
        train_s += time.perf_counter() - t0
    if args.save:
        torch.save(model.state_dict(), args.save)
    return curve


def _format(row: dict) -> str:
    parts = [f"step {row['step']:6d}", f"t {row['time_s']:7.1f}s"]
    for k in (
        "rec",
        "kl",
        "active",
        "mig",
        "dci_d",
        "dci_c",
        "dci_i",
        "posX_rho",
        "posY_rho",
        "shape_acc",
    ):
        if k in row:
            v = row[k]
            parts.append(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}")
    if "posX_latent" in row:
        parts.append(f"latents x/y {row['posX_latent']}/{row['posY_latent']}")
    return "  ".join(parts)


def plot(paths: list[str], out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = ("rec", "mig", "dci_d", "active")
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.2))
    for path in paths:
        data = json.loads(Path(path).read_text())
        steps = [r["step"] for r in data["curve"]]
        for ax, k in zip(axes, keys, strict=True):
            ax.plot(steps, [r[k] for r in data["curve"]], marker=".", label=data["label"])
    for ax, k in zip(axes, keys, strict=True):
        ax.set_xlabel("optimiser steps (batch 64)")
        ax.set_title(k)
    axes[0].set_yscale("log")
    axes[-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="beta_vae")
    p.add_argument("--dataset", default="dsprites")
    p.add_argument("--width", type=float, default=0.5)
    p.add_argument("--param", action="append", default=[], help="model parameter KEY=VALUE")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--schedule", default="constant", choices=["constant", "cosine"])
    p.add_argument("--warmup", type=int, default=0, help="linear lr warm-up steps")
    p.add_argument(
        "--adam-betas", type=float, nargs=2, default=list(ADAM_BETAS), metavar=("B1", "B2"),
        help="Adam's betas (the trainer's adam_betas)",
    )  # fmt: skip
    p.add_argument("--n-train", type=int, default=20000)
    p.add_argument("--n-eval", type=int, default=3000)
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", 2)))
    p.add_argument("--json", help="write the curve here")
    p.add_argument("--save", help="save the trained model's state_dict here")
    p.add_argument("--label", help="label of the curve in plots")
    p.add_argument("--plot", help="draw the curves of the JSON files given as arguments")
    p.add_argument("curves", nargs="*")
    args = p.parse_args(argv)
    if args.plot:
        plot(args.curves, args.plot)
        return 0
    run(args)
    return 0


def _save(args: argparse.Namespace, curve: list[dict]) -> None:
    """Write the curve so far to ``--json`` (after every evaluation: a killed run keeps it)."""
    if not args.json:
        return
    label = args.label or f"{args.model} {args.dataset} w{args.width} lr{args.lr} b{args.batch}"
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"label": label, "args": vars(args), "curve": curve}))


if __name__ == "__main__":
    sys.exit(main())
