"""Benchmark of the lens' patching engine and (``--full``) of the full ``vaelens.analyze``.

For the roy2025 architecture (conv 32/64/128 k4 s2, latent 10, 64x64; ``build_model("vae")``),
exact patching of every channel of every encoder and decoder conv layer (post-activation):

- time of the batched engine (:func:`vaelens.lens.activation_patching`);
- FLOPs of its forwards (``torch.utils.flop_counter.FlopCounterMode``, counted on the first
  block of the same pairs and scaled to n: the engine skips units the patch leaves unchanged,
  so its FLOPs depend on the inputs; the loop's are counted once on 4 pairs);
- utilisation = FLOP/s achieved / dense matmul FLOP/s measured in the same run;
- speed-up over the looped reference (one full forward per unit, all pairs in the batch,
  in the same channels-last layout as the engine) at each n; when ``--loop-units`` is set
  the loop is timed on that many units per layer and extrapolated to all units (said so in
  the output), and its largest difference from the batched result is over the units it ran;
- attribution patching (Hutchinson L2 estimate): speed-up over exact and Spearman rank
  correlation of the per-unit mean effects with exact (on a random-init model unless
  ``--checkpoint`` is given), for each probe count in ``--probes`` (a sweep when several),
  and of the projection metric (exact first order, one backward; what ``vaelens.analyze``
  uses) against exact patching's projection effects from the same sweep;
- ``--layout-ab N ...``: at those n, exact patching with the model's weights left contiguous
  (``Lens(..., channels_last=False)``) and in the sweep's channels-last layout, interleaved
  (``max(2, --repeats)`` runs each, best of each), to show the layout's gain.

Floors: exact == loop within 1e-5; exact >= 40 % utilisation at n=1000; >= 10x faster than
the loop at n=8; attribution >= 20x faster than exact with Spearman >= 0.8.

Full analysis (``--full``; the patching part is then skipped): ``vaelens.analyze`` with its
DEFAULT settings (trained model and random-init baseline) on the roy2025 architecture, on
procedural dSprites; ``--checkpoint RUN_DIR`` analyses a trained run (model and dataset from
its config) instead of a randomly initialised ``build_model("vae")``. Prints the wall time
(floor: 180 s on 2 CPU cores), the per-stage sample sizes and the bootstrap CIs it reports.

    OMP_NUM_THREADS=1 python benchmarks/analysis.py --quick
    python benchmarks/analysis.py --full --threads 2 [--checkpoint runs/vae_seed0]
    python benchmarks/analysis.py --threads 2 --n 8 1000 --loop-units 8 --json out.json
    python benchmarks/analysis.py --threads 2 --n 8 --probes 8 2 4 16 --layout-ab 8
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from vaelens.lens import Lens, activation_patching, attribution_patching, effect_metric
from vaelens.lens.patching import patch_sweep, resolve_max_batch
from vaelens.models import build_model


def build(checkpoint: str | None) -> tuple[nn.Module, str]:
    model: nn.Module = build_model("vae")
    source = "vaelens.models.build_model('vae')"
    if checkpoint and Path(checkpoint).is_dir():  # a run directory of `vaelens train`
        from vaelens.train import load_run

        model, cfg = load_run(checkpoint)
        return model, f"trained run {checkpoint} ({cfg.model} on {cfg.dataset})"
    if checkpoint:
        from safetensors.torch import load_file

        model.load_state_dict(load_file(checkpoint))
        source += f" + {checkpoint}"
    return model, source


def sprites(n: int, seed: int) -> torch.Tensor:
    """``n`` 64x64 binary images, each one random axis-aligned rectangle (dSprites-like)."""
    g = np.random.default_rng(seed)
    x = np.zeros((n, 1, 64, 64), dtype=np.float32)
    for i in range(n):
        w, h = g.integers(6, 24, size=2)
        r, c = g.integers(0, 64 - h), g.integers(0, 64 - w)
        x[i, 0, r : r + h, c : c + w] = 1.0
    return torch.from_numpy(x)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_flops(device: torch.device, seconds: float = 1.0) -> float:
    """Dense float32 matmul FLOP/s (best of repeated square products; 1024 on CPU, 8192 on GPU)."""
    size = 1024 if device.type == "cpu" else 8192
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    torch.mm(a, b)
    best, t_end = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        _sync(device)
        t0 = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * size**3 / best


def timed(
    fn: Callable[[], Any], repeats: int = 1, device: torch.device | None = None
) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeats):
        if device is not None:
            _sync(device)
        t0 = time.perf_counter()
        out = fn()
        if device is not None:
            _sync(device)
        best = min(best, time.perf_counter() - t0)
    return best, out


def looped(
    lens: Lens, x1: torch.Tensor, x2: torch.Tensor, names: list[str], units: int | None
) -> dict[str, torch.Tensor]:
    """The reference: one full forward per unit (all pairs in one batch), hook replaces the unit.

    Run in the engine's memory layout (:meth:`Lens.sweep_layout`, channels-last conv weights
    on CPU), so that the speed-up measures the batching alone.
    """
    fn = effect_metric("l2")
    out: dict[str, torch.Tensor] = {}
    with torch.no_grad(), lens.sweep_layout(probe=x1[:2]):
        clean = lens.forward(x1)
        corrupt, cache = lens.run_with_cache(x2, names)
        for name in names:
            a2 = cache[name]
            n_units = a2.shape[1] if units is None else min(units, a2.shape[1])
            res = torch.empty(x1.shape[0], n_units)
            for u in range(n_units):

                def patch(
                    a: torch.Tensor, _: str, u: int = u, a2: torch.Tensor = a2
                ) -> torch.Tensor:
                    a = a.clone()
                    a[:, u] = a2[:, u]
                    return a

                patched = lens.run_with_hooks(x1, [(name, patch)])
                res[:, u] = fn(patched.unsqueeze(0), clean, corrupt)[0]
            out[name] = res
    return out


def attribution_row(
    lens: Lens,
    x1: torch.Tensor,
    x2: torch.Tensor,
    names: list[str],
    exact: dict[str, torch.Tensor],
    probes: int,
    args: argparse.Namespace,
    dev: torch.device,
    metric: str = "l2",
) -> dict[str, Any]:
    """Attribution patching (``metric``; ``probes`` Hutchinson probes for L2): time and rank
    agreement with the exact effects of the same metric."""
    seconds, attr = timed(
        lambda: attribution_patching(
            lens, x1, x2, names, metric=metric, probes=probes, seed=0, max_batch=args.max_batch
        ),
        args.repeats,
        dev,
    )

    def rho(a: torch.Tensor, b: torch.Tensor) -> float:
        return float(spearmanr(a.numpy(), b.numpy()).statistic)

    def rho_live(a: torch.Tensor, b: torch.Tensor) -> float:
        keep = (a != 0) | (b != 0)  # drop entries both call exactly zero (dead units)
        return rho(a[keep], b[keep])

    e_pairs = torch.cat([exact[k].flatten() for k in names])
    a_pairs = torch.cat([attr[k].flatten() for k in names])

    return {
        "metric": metric,
        "probes": probes if metric != "projection" else None,
        "seconds": seconds,
        "spearman_unit_means": rho(
            torch.cat([exact[k].mean(0) for k in names]),
            torch.cat([attr[k].mean(0) for k in names]),
        ),
        "spearman_pairs_units": rho(e_pairs, a_pairs),
        "spearman_pairs_units_live": rho_live(e_pairs, a_pairs),
        "share_zero_in_both": float(((e_pairs == 0) & (a_pairs == 0)).float().mean()),
        "spearman_per_layer": {
            k: rho(exact[k].mean(0), attr[k].mean(0)) for k in names if exact[k].shape[1] > 1
        },
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model, source = build(args.checkpoint)
    dev = torch.device(args.device)
    model = model.to(dev)
    lens = Lens(model, example=sprites(2, 0).to(dev))
    names = [n for n in lens.hook_names if re.fullmatch(r"(encoder|decoder)\.conv_\d", n)]
    units = {n: lens.units(n) for n in names}
    peak = matmul_flops(dev)
    report: dict[str, Any] = {
        "model": source,
        "weights": "trained checkpoint" if args.checkpoint else "random init",
        "layers": units,
        "threads": args.threads,
        "machine": platform.processor() or platform.machine(),
        "matmul_gflops": peak / 1e9,
        "max_batch": args.max_batch,
        "runs": [],
    }
    print(f"model: {source} ({report['weights']}); layers: {units}")
    print(f"dense matmul: {peak / 1e9:.1f} GFLOP/s on {args.threads} thread(s)")
    # FLOPs per pair of the loop (every forward is per example: counted once on a small batch)
    nf = 4
    xf1, xf2 = sprites(nf, 1).to(dev), sprites(nf, 2).to(dev)
    with FlopCounterMode(display=False) as fc:
        looped(lens, xf1, xf2, names, None)
    loop_flops_per_pair = fc.get_total_flops() / nf
    report["loop_gflop_per_pair"] = loop_flops_per_pair / 1e9
    print(f"FLOPs per pair of the loop: {loop_flops_per_pair / 1e9:.2f} G")
    block = resolve_max_batch(args.max_batch, lens)
    for n in args.n:
        x1, x2 = sprites(n, 10 + n).to(dev), sprites(n, 20 + n).to(dev)
        # the exact engine skips units that the patch leaves unchanged (dead channels), so its
        # FLOPs depend on the inputs: counted on the first block of these pairs, scaled to n
        nb = min(n, block)
        with FlopCounterMode(display=False) as fc:
            activation_patching(lens, x1[:nb], x2[:nb], names, max_batch=args.max_batch)
        flops_per_pair = fc.get_total_flops() / nb
        # one exact sweep gives both metrics (L2 and projection; the metric costs nothing)
        t_exact, both = timed(
            lambda x1=x1, x2=x2: patch_sweep(
                lens,
                x1,
                x2,
                names,
                {"l2": "l2", "projection": "projection"},
                max_batch=args.max_batch,
            ),
            args.repeats,
            dev,
        )
        exact = both["l2"]
        flops = flops_per_pair * n
        util = flops / t_exact / peak
        print(
            f"n={n}: FLOPs per pair of exact {flops_per_pair / 1e9:.2f} G (counted on {nb} pairs), "
            f"loop/exact FLOP ratio {loop_flops_per_pair / flops_per_pair:.2f} (it bounds the "
            "speed-up wherever the loop's forwards already run near peak)"
        )
        sub = None if (args.loop_units is None or n <= 8) else args.loop_units
        t_loop, loop = timed(lambda x1=x1, x2=x2, sub=sub: looped(lens, x1, x2, names, sub), 1, dev)
        total_units = sum(units.values())
        ran_units = sum(v.shape[1] for v in loop.values())
        t_loop_full = t_loop * total_units / ran_units
        diff = max(float((exact[k][:, : v.shape[1]] - v).abs().max()) for k, v in loop.items())
        attribution = [
            attribution_row(lens, x1, x2, names, exact, probes, args, dev) for probes in args.probes
        ]
        projection = attribution_row(
            lens, x1, x2, names, both["projection"], 1, args, dev, metric="projection"
        )
        layout = None
        if n in args.layout_ab:  # the same sweep with contiguous weights, runs interleaved
            plain = Lens(lens.model, example=x1[:2], channels_last=False)
            best = {"channels_last": float("inf"), "contiguous": float("inf")}
            for _ in range(max(2, args.repeats)):
                for key, which in (("contiguous", plain), ("channels_last", lens)):
                    t, _ = timed(
                        lambda x1=x1, x2=x2, which=which: activation_patching(
                            which, x1, x2, names, max_batch=args.max_batch
                        ),
                        1,
                        dev,
                    )
                    best[key] = min(best[key], t)
            layout = {**best, "runs_each": max(2, args.repeats)}
        per_pair = None
        if n <= 8:  # the loop written straight from eq. 5-6: one forward per (pair, unit)
            k = 2
            t_pp, _ = timed(
                lambda x1=x1, x2=x2, k=k, n=n: [
                    looped(lens, x1[i : i + 1], x2[i : i + 1], names, k) for i in range(n)
                ],
                1,
                dev,
            )
            ran = sum(min(k, u) for u in units.values())
            per_pair = t_pp * sum(units.values()) / ran
        row = {
            "n": n,
            "loop_per_pair_s_estimated": per_pair,
            "speedup_vs_loop_per_pair": None if per_pair is None else per_pair / t_exact,
            "exact_s": t_exact,
            "exact_gflop": flops / 1e9,
            "exact_gflop_per_pair": flops_per_pair / 1e9,
            "exact_gflops_per_s": flops / t_exact / 1e9,
            "utilisation": util,
            "loop_s": t_loop_full,
            "loop_estimated": ran_units < total_units,
            "loop_units_run": ran_units,
            "speedup_vs_loop": t_loop_full / t_exact,
            "max_abs_diff_vs_loop": diff,
            "layout_ab_s": layout,
            "attribution": [
                {**a, "speedup": t_exact / a["seconds"]} for a in [*attribution, projection]
            ],
        }
        report["runs"].append(row)
        est = f" (estimated from {ran_units}/{total_units} units)" if row["loop_estimated"] else ""
        print(
            f"n={n}: exact {t_exact:.2f}s, {flops / 1e9:.1f} GFLOP, "
            f"{flops / t_exact / 1e9:.1f} GFLOP/s = {100 * util:.0f}% of matmul | "
            f"loop {t_loop_full:.2f}s{est}, speed-up {t_loop_full / t_exact:.1f}x, "
            f"max |exact - loop| {diff:.2e}"
        )
        if per_pair is not None:
            print(
                f"   loop with one forward per (pair, unit), batch 1: {per_pair:.2f}s (estimated from "
                f"2 units a layer), speed-up {per_pair / t_exact:.1f}x"
            )
        for a in row["attribution"]:
            form = f"L2, {a['probes']} probes" if a["probes"] else "projection, 1 backward"
            print(
                f"   attribution ({form}): {a['seconds']:.3f}s, {a['speedup']:.1f}x faster, "
                f"Spearman {a['spearman_unit_means']:.3f} (unit means), "
                f"{a['spearman_pairs_units']:.3f} (pair x unit), "
                f"{a['spearman_pairs_units_live']:.3f} (pair x unit without the "
                f"{100 * a['share_zero_in_both']:.0f}% both call exactly 0); per layer "
                f"{ {k: round(v, 3) for k, v in a['spearman_per_layer'].items()} }"
            )
        if layout is not None:
            print(
                f"   layout A/B ({layout['runs_each']} interleaved runs each, best): contiguous "
                f"weights {layout['contiguous']:.2f}s, channels-last {layout['channels_last']:.2f}s: "
                f"{layout['contiguous'] / layout['channels_last']:.2f}x"
            )
    return report


def run_full(args: argparse.Namespace) -> dict[str, Any]:
    """Time ``vaelens.analyze`` with default settings; print the CIs it reports."""
    from vaelens.analysis import analyze
    from vaelens.data import load_dataset

    torch.set_num_threads(args.threads)
    if args.checkpoint and os.path.isdir(args.checkpoint):
        from vaelens.train import Run

        run = Run.open(args.checkpoint)
        model, ds = run.model(), run.dataset()
        source = f"trained run {args.checkpoint}"
    elif args.checkpoint:
        raise SystemExit(f"--full --checkpoint: expected a run directory, got {args.checkpoint}")
    else:
        torch.manual_seed(args.seed + 1)  # not the baseline's seed: the twin would equal it
        model, source = build_model("vae"), "random-init build_model('vae')"
        ds = load_dataset("dsprites", source="procedural")
    print(f"== full analysis: {source}, dataset {ds.name}, {args.threads} thread(s)")
    print(f"   {platform.processor() or platform.machine()}, torch {torch.__version__}")
    t0 = time.perf_counter()
    res = analyze(model, ds, seed=args.seed)
    seconds = time.perf_counter() - t0
    meta, st = res.meta, res.meta.settings
    print(f"   wall time {seconds:.1f} s (floor 180 s), n_samples={st.n_samples}, "
          f"n_boot={st.n_boot}, layers={len(meta.layers)}, "
          f"channel layers={meta.channel_layers}")  # fmt: skip

    def fmt(v: Any) -> str:
        return f"{v:.4g}"

    for label, part in (("trained", res.trained), ("baseline", res.baseline)):
        if part is None:
            continue
        c = part.latent
        print(f"   [{label}] CES mean {fmt(c.ces_mean)} CI [{fmt(c.ces_mean_ci[0])}, "
              f"{fmt(c.ces_mean_ci[1])}] (n={c.n_samples}); specificity mean "
              f"{fmt(c.specificity_mean)}")  # fmt: skip
        for i, (v, ci) in enumerate(zip(c.ces, c.ces_ci, strict=True)):
            print(f"      dim {i}: CES {fmt(v)} [{fmt(ci[0])}, {fmt(ci[1])}]")
        for layer, lm in part.layers.items():
            m = lm.monosemantic
            print(f"      {layer}: monosemantic {m.n_monosemantic}/{m.n_live} live "
                  f"({m.n_units} units) CI [{fmt(m.ci[0])}, {fmt(m.ci[1])}]; "
                  f"modularity {fmt(lm.modularity.roy2025)}")  # fmt: skip
    d = res.to_json()
    ok = seconds <= 180.0
    print(f"   floor (<= 180 s): {'PASS' if ok else 'FAIL'}")
    return {"full": {"seconds": seconds, "source": source, "pass": ok, "analysis": d}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="n = 8 and 64, loop on 4 units a layer")
    p.add_argument("--n", type=int, nargs="+", default=[8, 1000], help="numbers of pairs")
    p.add_argument(
        "--loop-units", type=int, default=None, help="units a layer the loop runs (n > 8)"
    )
    p.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    p.add_argument("--max-batch", type=int, default=None, help="default: 64 on CPU, 2048 on GPU")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument(
        "--probes",
        type=int,
        nargs="+",
        default=[8],
        help="Hutchinson probes of attribution patching (L2 form); several values print a sweep",
    )
    p.add_argument(
        "--layout-ab",
        type=int,
        nargs="*",
        default=[],
        help="numbers of pairs at which exact patching is also timed with contiguous weights",
    )
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--checkpoint",
        default=None,
        help="run directory of `vaelens train` (or a safetensors state dict of build_model('vae'))",
    )
    p.add_argument("--json", default=None, help="write the report here")
    p.add_argument(
        "--full", action="store_true", help="time the full vaelens.analyze (default settings)"
    )
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.loop_units = [8, 64], args.loop_units or 4
    report = run_full(args) if args.full else run(args)
    if args.json:
        from vaelens.io import atomic_write_json

        atomic_write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
