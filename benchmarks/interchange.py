"""Benchmark: batched interchange interventions vs a per-pair loop, and alignment search.

(a) The latent interchange matrix (:func:`vaelens.analysis.interchange_matrix`: every single
latent, all latents, the greedy minimal sets, scores with bootstrap CIs) of a freshly built
(untrained: timing needs no training) ``beta_vae`` (``width=0.5``, 10 latents) on procedural
dSprites (5 factors of more than one level) at ``--pairs`` pairs per factor, twice: as it is
(every ``(variable, pair)`` variant stacked on the batch axis) and with
:func:`vaelens.lens.interchange` replaced, inside the matrix code, by a loop that encodes and
decodes one pair and one variable at a time (the same patches, the same scoring and greedy
search). The loop costs tens of milliseconds a call, so it runs on ``--loop-pairs`` pairs
(default 8; the batched code again at that size for the check and the speed-up); the time
spent inside the patching calls is measured apart, and the loop's patching time at
``--pairs`` is extrapolated linearly (its cost is linear in the pairs; the scoring and
bootstrap around it are the same code both ways). Checks that both
give the same shares, CIs, accuracies, isolation and sets at ``--loop-pairs``.

(b) One factor's distributed alignment search (:func:`vaelens.analysis.alignment.
alignment_search`, latent, ``k = 1`` and ``2``): ``--train`` training pairs (default 128),
``--steps`` Adam steps of 64 pairs (default 100; the function's defaults are 256 and 200)
and ``--pairs`` held-out pairs.

    python benchmarks/interchange.py [--threads 2 --pairs 256 --loop-pairs 8 --boot 200]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import vaelens.analysis.interchange as matrix_module
from vaelens.analysis import interchange_matrix
from vaelens.analysis.alignment import alignment_search
from vaelens.data import load_dataset
from vaelens.lens import InterchangeResult, Lens, pair_isolation, pair_shares
from vaelens.lens.interchange import resolve_variables
from vaelens.models import build_model


def loop_interchange(
    lens: Lens, x, x_prime, variables, *, target_images=None, other_directions=None, **_
) -> InterchangeResult:
    """:func:`vaelens.lens.interchange` for latent variables, one pair and one variable a time."""
    with torch.no_grad():
        resolved = None
        base, source, patched = [], [], []
        for n in range(x.shape[0]):
            z = lens.encode_mean(x[n : n + 1])
            zp = lens.encode_mean(x_prime[n : n + 1])
            if resolved is None:
                resolved = resolve_variables(lens, variables, int(z.shape[1]))
            base.append(lens.decode_output(z))
            source.append(lens.decode_output(zp))
            row = []
            for _, dims in resolved:
                zz = z.clone()
                zz[:, list(dims)] = zp[:, list(dims)]
                row.append(lens.decode_output(zz))
            patched.append(torch.cat(row))
    b, s = torch.cat(base), torch.cat(source)
    p = torch.stack(patched, 1)
    target = None if target_images is None else target_images.reshape(b.shape)
    iso = None if other_directions is None else pair_isolation(p, b, other_directions)
    return InterchangeResult(resolved, p, b, s, target, pair_shares(p, b, s), iso)


def _matrix(lens, ds, pairs: int, boot: int, loop: bool):
    """``(total seconds, seconds inside the patching calls, the Interchange block)``."""
    saved = matrix_module.interchange
    inner = loop_interchange if loop else saved
    spent = [0.0]

    def timed(*args, **kwargs):
        t = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - t

    matrix_module.interchange = timed
    try:
        t0 = time.perf_counter()
        m = interchange_matrix(lens, ds, n_pairs=pairs, seed=0, n_boot=boot)
        return time.perf_counter() - t0, spent[0], m
    finally:
        matrix_module.interchange = saved


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    both = np.isfinite(a) & np.isfinite(b)
    assert (np.isfinite(a) == np.isfinite(b)).all(), "NaN patterns differ"
    return float(np.abs(a[both] - b[both]).max()) if both.any() else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--pairs", type=int, default=256)
    ap.add_argument("--loop-pairs", type=int, default=8)
    ap.add_argument("--boot", type=int, default=200)
    ap.add_argument("--train", type=int, default=128)
    ap.add_argument("--factor", default="posX")
    ap.add_argument("--steps", type=int, default=100)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    ds = load_dataset("dsprites", source="procedural")
    model = build_model("beta_vae", width=0.5).eval()
    lens = Lens(model)
    moving = [n for n, s in zip(ds.factor_names, ds.factor_sizes, strict=True) if int(s) > 1]
    print(
        f"beta_vae width=0.5 (untrained), dsprites procedural ({len(moving)} factors: "
        f"{', '.join(moving)}), {a.pairs} pairs/factor, {a.threads} threads, n_boot={a.boot}"
    )
    t_batched, p_batched, _ = _matrix(lens, ds, a.pairs, a.boot, loop=False)
    t_small, p_small, m1 = _matrix(lens, ds, a.loop_pairs, a.boot, loop=False)
    t_loop, p_loop, m2 = _matrix(lens, ds, a.loop_pairs, a.boot, loop=True)
    share_diff = _max_diff(m1.share, m2.share)
    diff = max(
        share_diff,
        _max_diff(m1.share_ci, m2.share_ci),
        _max_diff(m1.accuracy, m2.accuracy),
        _max_diff(m1.isolation, m2.isolation),
        _max_diff(m1.min_set_share, m2.min_set_share),
    )
    assert m1.min_sets == m2.min_sets, (m1.min_sets, m2.min_sets)
    assert diff < 1e-4, diff
    scale = a.pairs / a.loop_pairs
    # the loop's patching scales with the pairs; the rest (scores, bootstrap) is the batched one's
    est = t_batched - p_batched + p_loop * scale
    print(f"\n(a) interchange_matrix, {m1.share.shape[0]} latents x {len(moving)} factors")
    print(f"  {'pairs':>6s} {'':9s} {'total s':>9s} {'patching s':>11s}")
    print(f"  {a.loop_pairs:6d} {'batched':9s} {t_small:9.2f} {p_small:11.2f}")
    print(f"  {a.loop_pairs:6d} {'loop':9s} {t_loop:9.2f} {p_loop:11.2f}")
    print(f"  {a.pairs:6d} {'batched':9s} {t_batched:9.2f} {p_batched:11.2f}")
    print(f"  {a.pairs:6d} {'loop est.':9s} {est:9.2f} {p_loop * scale:11.2f}  (x{scale:g})")
    print(
        f"  speed-up of the patching: {p_loop / p_small:.1f}x at {a.loop_pairs} pairs, "
        f"{p_loop * scale / p_batched:.1f}x at {a.pairs} (est.); whole matrix at {a.pairs}: "
        f"{est / t_batched:.1f}x (est.)"
    )
    print(
        f"  max |batched - loop| at {a.loop_pairs} pairs: shares {share_diff:.1e}, every "
        f"field {diff:.1e}; same min_sets"
    )
    print(
        f"\n(b) alignment_search, factor {a.factor!r}, latent, {a.train} train pairs, {a.steps} steps"
    )
    print(f"  {'k':>2s} {'seconds':>9s} {'share':>7s} {'CI':>17s} {'axis':>7s} {'units':>8s}")
    for k in (1, 2):
        t0 = time.perf_counter()
        r = alignment_search(
            lens,
            ds,
            factors=a.factor,
            k=k,
            n_pairs=a.pairs,
            n_train=a.train,
            steps=a.steps,
            n_boot=a.boot,
        )
        dt = time.perf_counter() - t0
        ci = f"[{r.share_ci[0, 0]:.3f}, {r.share_ci[0, 1]:.3f}]"
        units = ",".join(map(str, r.axis_units[0]))
        print(f"  {k:2d} {dt:9.2f} {r.share[0]:7.3f} {ci:>17s} {r.axis_share[0]:7.3f} {units:>8s}")


if __name__ == "__main__":
    main()
