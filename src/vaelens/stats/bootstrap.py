"""The one bootstrap of vaelens: :func:`bootstrap_ci`, built on :func:`scipy.stats.bootstrap`."""

from __future__ import annotations

import inspect
import numbers
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import stats as sps

from vaelens.errors import ArgumentError

__all__ = ["BCA_MIN_N", "BOOT_METHODS", "bootstrap_ci"]

#: the interval methods :func:`bootstrap_ci` accepts
BOOT_METHODS = ("auto", "bca", "percentile", "basic")

#: ``method="auto"`` uses BCa from this many values on: below it the jackknife estimate of
#: the acceleration is too coarse to trust, and the percentile interval is used instead
BCA_MIN_N = 10

#: at most this many resampled values are held at once (scipy's ``batch``)
_MAX_BATCH_VALUES = 1 << 22

#: scipy >= 1.15 names the seed ``rng``; older versions ``random_state``
_RNG_KW = "rng" if "rng" in inspect.signature(sps.bootstrap).parameters else "random_state"

_NAN3 = (float("nan"), float("nan"), float("nan"))


def _check_args(n_boot: Any, level: Any, method: Any, statistic: Any) -> None:
    if isinstance(n_boot, bool) or not isinstance(n_boot, int | np.integer) or n_boot < 1:
        raise ArgumentError(f"n_boot: expected a positive int, got {n_boot!r}")
    if isinstance(level, bool) or not isinstance(level, numbers.Real) or not 0 < level < 1:
        raise ArgumentError(f"level: expected a number in (0, 1), got {level!r}")
    if method not in BOOT_METHODS:
        raise ArgumentError(f"method: expected one of {BOOT_METHODS}, got {method!r}")
    if not callable(statistic):
        raise ArgumentError(f"statistic: expected a callable, got {type(statistic).__name__}")


def _samples(
    values: Any, statistic: Callable[..., Any], paired: bool, vectorized: bool | None
) -> tuple[tuple[np.ndarray, ...], Callable[..., Any], bool | None]:
    """The samples scipy resamples, the statistic on them and its ``vectorized`` flag."""
    if isinstance(values, tuple) and values and all(np.ndim(s) >= 1 for s in values):
        samples = tuple(np.asarray(s, dtype=np.float64) for s in values)
        if any(s.ndim != 1 for s in samples):
            raise ArgumentError("values: expected a tuple of 1-D arrays")
        if paired and len({s.size for s in samples}) > 1:
            raise ArgumentError(
                f"values: paired samples need equal lengths, got {[s.size for s in samples]}"
            )
        return samples, statistic, vectorized
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 0:
        raise ArgumentError("values: expected an array of at least one dimension, got a scalar")
    if v.ndim == 1:
        return (v[~np.isnan(v)],), statistic, vectorized

    def on_rows(i: np.ndarray) -> Any:  # resample whole rows of an (N, ...) array
        return statistic(v[np.asarray(i, dtype=np.intp)])

    return (np.arange(v.shape[0]),), on_rows, False


def _percentile(
    dist: np.ndarray, est: float, level: float, basic: bool
) -> tuple[float, float, float]:
    a = (1 - level) / 2
    q_lo, q_hi = (float(q) for q in np.quantile(dist, [a, 1 - a]))
    if basic:
        return est, 2 * est - q_hi, 2 * est - q_lo
    return est, q_lo, q_hi


def bootstrap_ci(
    values: Any,
    *,
    statistic: Callable[..., Any] = np.mean,
    n_boot: int = 1000,
    level: float = 0.95,
    random_state: int | np.random.Generator = 0,
    method: str = "auto",
    paired: bool = False,
    vectorized: bool | None = None,
) -> tuple[float, float, float]:
    """Bootstrap confidence interval of ``statistic``: ``(estimate, low, high)``.

    ``values`` is one array, resampled along its first axis (a 1-D array loses its NaNs
    first; an ``(N, ...)`` array is resampled by whole rows), or a tuple of 1-D arrays given
    to ``statistic(*samples)``; ``paired=True`` draws the same indices in every sample, so a
    row ``(x_i, y_i, ...)`` stays together. ``estimate = statistic(values)``; from the ``B =
    n_boot`` replicates ``t*_b`` and ``a = (1 - level) / 2`` the interval is

    - ``"percentile"``: ``(q_a, q_{1-a})``, quantiles of the finite replicates;
    - ``"basic"``: ``(2 estimate - q_{1-a}, 2 estimate - q_a)``;
    - ``"bca"``: Efron's bias-corrected and accelerated quantiles ``Phi(z0 + (z0 + z) /
      (1 - acc (z0 + z)))`` for ``z = Phi^-1(a), Phi^-1(1 - a)``, ``z0`` from the share of
      replicates below the estimate, ``acc`` from the jackknife (NaN where that fails);
    - ``"auto"``: BCa with at least :data:`BCA_MIN_N` values and where BCa is finite
      (not for constant data or NaN replicates), else percentile.

    Constant data give ``(v, v, v)`` except under ``"bca"``. No interval, ``(estimate, nan,
    nan)``, with fewer than two values or when more than half of the replicates are NaN;
    empty input gives ``(nan, nan, nan)``. ``vectorized`` is passed to scipy (``None``: true
    when ``statistic`` takes ``axis``); ``random_state`` seeds the resampling.
    """
    _check_args(n_boot, level, method, statistic)
    samples, stat, vectorized = _samples(values, statistic, paired, vectorized)
    n = min(s.size for s in samples)
    if n == 0:
        return _NAN3
    est = float(stat(*samples))
    if n < 2:
        return est, float("nan"), float("nan")
    use_bca = method == "bca" or (method == "auto" and n >= BCA_MIN_N)
    rng = (
        random_state
        if isinstance(random_state, np.random.Generator)
        else np.random.default_rng(random_state)
    )
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        if method == "auto":  # a failed BCa falls back to the percentile interval below
            warnings.simplefilter("ignore", sps.DegenerateDataWarning)
        res = sps.bootstrap(
            samples,
            stat,
            n_resamples=n_boot,
            batch=max(1, min(n_boot, _MAX_BATCH_VALUES // (n * len(samples)))),
            vectorized=vectorized,
            paired=paired,
            confidence_level=level,
            method="BCa" if use_bca else "percentile",
            **{_RNG_KW: rng},
        )
    dist = np.asarray(res.bootstrap_distribution, dtype=np.float64).ravel()
    dist = dist[np.isfinite(dist)]
    if 2 * dist.size < n_boot:
        return est, float("nan"), float("nan")
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if method == "bca" or (use_bca and np.isfinite(lo) and np.isfinite(hi)):
        return est, lo, hi
    return _percentile(dist, est, level, basic=method == "basic")
