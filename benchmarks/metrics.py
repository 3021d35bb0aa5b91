"""Benchmark of the disentanglement metrics: time at the reference sizes, fast vs faithful DCI.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/metrics.py            # full: ~20 min
    OMP_NUM_THREADS=1 python benchmarks/metrics.py --quick    # small sizes, a few minutes
    python benchmarks/metrics.py --quick --out results.json

Full mode (~20 min on one core): part 1 at reference sizes including faithful DCI on
the oracle (the speed-up at reference size), part 2's bank at 2,000 / 1,000 points (pass
``--bank-train 10000 --bank-test 5000`` for the reference size: about 9 x 6 minutes, or
split it over processes with ``--bank``). The bank is drawn from ``--seed`` after part 1's
points, so runs with and without ``--skip-timing`` compare on different draws.
Quick mode: part 1 without faithful DCI, the bank at 500 / 250 points.

Part 1 times every metric at disentanglement_lib's sizes (10,000 train / 5,000 test
points, dSprites factor sizes (3, 6, 40, 32, 32), 10 latents); the intervention metrics run
on a synthetic dataset whose "images" are the factor vectors and a linear representation,
so their time is the metric's own overhead, not an encoder's. Faithful DCI at full size
runs once, on the oracle (about 5 minutes on 2 cores).

Part 2 compares DCI with the fast estimators (``--fast``, default ``gbt-hist`` (the fast
preset) and ``lightgbm``) against ``"gbt"`` (faithful) on a bank of representations and
reports, per estimator, the speed-up and the largest |difference| in D, C and
informativeness. The floor (issue 5): speed-up >= 20x and |delta D| <= 0.05 on every
representation. ``--faithful-seeds N`` also runs ``"gbt"`` with ``random_state`` 1..N-1 and
reports its own seed-to-seed spread, the yardstick for the fast estimators' differences.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

from vaelens.io import atomic_write_json
from vaelens.metrics.disentanglement import (
    beta_vae_score,
    dci,
    factor_vae_score,
    irs,
    mig,
    modularity_explicitness,
    sap,
)

DSPRITES_SIZES = (3, 6, 40, 32, 32)


class FactorDataset:
    """Synthetic factorial dataset: the "image" of a factor vector is the vector itself."""

    def __init__(self, sizes: tuple[int, ...]) -> None:
        self.name = "synthetic"
        self.factor_sizes = tuple(sizes)
        self.factor_names = tuple(f"f{i}" for i in range(len(sizes)))
        self.factor_values = [np.arange(s, dtype=np.float64) for s in sizes]
        self.image_shape = (1, 1, len(sizes))

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.integers(0, np.asarray(self.factor_sizes), size=(n, len(self.factor_sizes)))

    def images(self, factors: np.ndarray) -> np.ndarray:
        return (factors / np.asarray(self.factor_sizes)).astype(np.float32)[:, None, None, :]


def bank(factors: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Representations of ``factors`` (N, 5) with known structure, 10 latents unless named."""
    n = factors.shape[0]
    v = factors / np.asarray(DSPRITES_SIZES)  # in [0, 1)
    eps = rng.normal(size=(n, 10))
    oracle = np.concatenate([v + 0.01 * eps[:, :5], 0.01 * eps[:, 5:]], axis=1)
    q, _ = np.linalg.qr(rng.normal(size=(10, 10)))
    mix = np.eye(5) + 0.4 * rng.normal(size=(5, 5)) * (1 - np.eye(5))
    return {
        "oracle": oracle,
        "rotated_oracle": oracle @ q,
        "noisy": np.concatenate([v + 0.1 * eps[:, :5], eps[:, 5:]], axis=1),
        "dead_latents": np.concatenate([v + 0.01 * eps[:, :5], np.zeros((n, 5))], axis=1),
        "duplicated": np.concatenate([v, v], axis=1) + 0.01 * eps,
        "random": eps,
        "partial_mixing": np.concatenate([v @ mix, 0.01 * eps[:, 5:]], axis=1) + 0.02 * eps,
        "nonlinear": np.concatenate(
            [np.tanh(3 * v - 1.5), np.sin(6 * v) * v[:, [1, 2, 3, 4, 0]]], axis=1
        )
        + 0.01 * eps,
        "fewer_latents": v[:, :3] + 0.05 * v[:, 3:] @ rng.normal(size=(2, 3)) + 0.01 * eps[:, :3],
    }


def dci_row(name: str, label: str, scores: dict[str, Any], dt: float) -> str:
    """One printed line of the bank: D, C, test informativeness and time."""
    return (
        f"{name:16s} {label:8s} D {scores['disentanglement']:.3f} C {scores['completeness']:.3f}"
        f" I {scores['informativeness_test']:.3f}  {dt:6.1f} s"
    )


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def part_sizes(quick: bool) -> dict[str, Any]:
    if quick:
        return {"n_train": 10_000, "n_test": 5_000, "bank_train": 500, "bank_test": 250}
    return {"n_train": 10_000, "n_test": 5_000, "bank_train": 2_000, "bank_test": 1_000}


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--quick", action="store_true", help="small DCI bank, no faithful DCI at full size"
    )
    ap.add_argument("--skip-timing", action="store_true", help="run only the DCI comparison")
    ap.add_argument("--out", help="write the results as JSON here")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bank-train", type=int, help="train points of the DCI bank")
    ap.add_argument("--bank-test", type=int, help="test points of the DCI bank")
    ap.add_argument("--bank", help="comma-separated subset of the bank's representations")
    ap.add_argument(
        "--fast",
        default="gbt-hist,lightgbm",
        help="comma-separated fast DCI estimators to compare with gbt (default: %(default)s)",
    )
    ap.add_argument(
        "--faithful-seeds",
        type=int,
        default=1,
        help="also run gbt with random_state 1..N-1 and report its own seed-to-seed spread "
        "in D, C, I (the yardstick for the fast estimators' differences; default: %(default)s)",
    )
    args = ap.parse_args()
    sz = part_sizes(args.quick)
    if args.bank_train:
        sz["bank_train"] = args.bank_train
    if args.bank_test:
        sz["bank_test"] = args.bank_test
    rng = np.random.default_rng(args.seed)
    results: dict[str, Any] = {"quick": args.quick, "sizes": sz, "timing_s": {}, "dci_bank": {}}

    if not args.skip_timing:
        print(
            f"== Part 1: time of each metric at {sz['n_train']} train / {sz['n_test']} test points"
        )
        n, nt = sz["n_train"], sz["n_test"]
        f = rng.integers(0, DSPRITES_SIZES, size=(n + nt, 5))
        z = bank(f, rng)["oracle"]
        x, y, xt, yt = z[:n], f[:n], z[n:], f[n:]
        jobs: dict[str, Callable[[], Any]] = {
            "dci_fast(gbt-hist)": lambda: dci(x, y, xt, yt, estimator="gbt-hist"),
            "mig": lambda: mig(x, y),
            "sap(discrete)": lambda: sap(x, y, xt, yt),
            "sap(continuous)": lambda: sap(x, y, continuous=True),
            "irs": lambda: irs(x, y),
            "modularity_explicitness": lambda: modularity_explicitness(x, y, xt, yt),
        }
        ds = FactorDataset(DSPRITES_SIZES)
        w = np.concatenate([np.eye(5), np.zeros((5, 5))], axis=1)

        def repr_fn(im: np.ndarray) -> np.ndarray:
            return im.reshape(im.shape[0], -1).astype(np.float64) @ w

        jobs["factor_vae"] = lambda: factor_vae_score(repr_fn, ds)
        jobs["beta_vae"] = lambda: beta_vae_score(repr_fn, ds)
        if not args.quick:  # once: about 5 minutes
            jobs["dci_faithful(gbt)"] = lambda: dci(x, y, xt, yt, estimator="gbt")
        for name, job in jobs.items():
            out, dt = timed(job)
            results["timing_s"][name] = dt
            shown = {k: round(v, 3) for k, v in out.items()}
            print(f"{name:26s} {dt:8.1f} s  {shown}", flush=True)

    nb, nbt = sz["bank_train"], sz["bank_test"]
    fast_names = [e for e in args.fast.split(",") if e]
    print(f"== Part 2: DCI {', '.join(fast_names)} vs gbt on the bank ({nb} train / {nbt} test)")
    f = rng.integers(0, DSPRITES_SIZES, size=(nb + nbt, 5))
    reps = bank(f, rng)
    if args.bank:
        reps = {k: reps[k] for k in args.bank.split(",")}
    keys = ("disentanglement", "completeness", "informativeness_test")
    worst = {e: dict.fromkeys(keys, 0.0) for e in fast_names}
    t_fast = dict.fromkeys(fast_names, 0.0)
    t_slow = 0.0
    spread = dict.fromkeys(keys, 0.0)
    for name, z in reps.items():
        args_ = (z[:nb], f[:nb], z[nb:], f[nb:])
        slow, dts = timed(lambda a=args_: dci(*a, estimator="gbt", random_state=0))
        t_slow += dts
        row: dict[str, Any] = {"faithful": slow, "t_faithful": dts}
        print(dci_row(name, "gbt", slow, dts), flush=True)
        for s in range(1, args.faithful_seeds):
            other, dto = timed(lambda a=args_, s=s: dci(*a, estimator="gbt", random_state=s))
            for k in keys:
                spread[k] = max(spread[k], abs(other[k] - slow[k]))
            row[f"faithful_seed{s}"] = other
            d_d = abs(other["disentanglement"] - slow["disentanglement"])
            print(f"{dci_row('', f'gbt s={s}', other, dto)}  |dD| {d_d:.3f}", flush=True)
        for est in fast_names:
            fast, dtf = timed(lambda a=args_, e=est: dci(*a, estimator=e, random_state=0))
            t_fast[est] += dtf
            for k in keys:
                worst[est][k] = max(worst[est][k], abs(fast[k] - slow[k]))
            row[est] = {"scores": fast, "t": dtf}
            d_d = abs(fast["disentanglement"] - slow["disentanglement"])
            print(f"{dci_row('', est, fast, dtf)}  x{dts / dtf:5.1f}  |dD| {d_d:.3f}", flush=True)
        results["dci_bank"][name] = row
    timing = results["timing_s"]
    if "dci_faithful(gbt)" in timing:
        ref = timing["dci_faithful(gbt)"] / timing["dci_fast(gbt-hist)"]
        results["dci_speedup_reference_size"] = ref
        print(f"gbt-hist speed-up at the reference size (oracle): x{ref:.1f}")
    results["dci_speedup"] = {e: t_slow / t_fast[e] for e in fast_names}
    results["dci_max_abs_diff"] = worst
    for e in fast_names:
        print(
            f"{e}: speed-up over the bank x{t_slow / t_fast[e]:.1f}; max |diff| "
            + ", ".join(f"{k} {v:.3f}" for k, v in worst[e].items())
        )
    if args.faithful_seeds > 1:
        results["dci_faithful_seed_spread"] = spread
        print(
            f"gbt itself, random_state 0 vs 1..{args.faithful_seeds - 1}: max |diff| "
            + ", ".join(f"{k} {v:.3f}" for k, v in spread.items())
        )
    if args.out:
        atomic_write_json(args.out, results)


if __name__ == "__main__":
    main()
