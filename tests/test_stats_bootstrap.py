"""The one bootstrap, :func:`vaelens.stats.bootstrap_ci`, against known answers."""

from __future__ import annotations

import time

import numpy as np
import pytest
from scipy import stats as sps

from vaelens.errors import ArgumentError, VaelensError
from vaelens.stats import BCA_MIN_N, bootstrap_ci, correlation


def test_contains_the_mean_and_shrinks_with_n() -> None:
    rng = np.random.default_rng(0)
    small = rng.normal(1.0, 1.0, 20)
    large = rng.normal(1.0, 1.0, 2000)
    est, lo, hi = bootstrap_ci(small, n_boot=500)
    assert est == pytest.approx(small.mean()) and lo < est < hi
    _, lo2, hi2 = bootstrap_ci(large, n_boot=500)
    assert hi2 - lo2 < (hi - lo) / 5  # ~ 1 / sqrt(n): 10 times narrower


def test_normal_sample_covers_the_true_mean_with_the_t_interval_width() -> None:
    covered, ratios = 0, []
    for seed in range(50):
        v = np.random.default_rng(seed).normal(3.0, 2.0, 30)
        _, lo, hi = bootstrap_ci(v, n_boot=1000, random_state=seed)
        covered += lo <= 3.0 <= hi
        half_t = sps.t.ppf(0.975, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size)
        ratios.append((hi - lo) / (2 * half_t))
    assert covered >= 43  # nominal 95% of 50 = 47.5
    # z instead of t, sd with n instead of n - 1: sqrt(29 / 30) 1.96 / 2.045 = 0.94 of the t width
    assert 0.88 < np.mean(ratios) < 0.99


def test_skewed_sample_gets_bca_which_differs_from_percentile() -> None:
    v = np.random.default_rng(1).lognormal(0.0, 1.0, 40)
    auto = bootstrap_ci(v, n_boot=2000)
    bca = bootstrap_ci(v, n_boot=2000, method="bca")
    pct = bootstrap_ci(v, n_boot=2000, method="percentile")
    basic = bootstrap_ci(v, n_boot=2000, method="basic")
    assert auto == bca
    # right skew: BCa moves both ends up from the percentile interval
    assert bca[1] > pct[1] + 0.03 and bca[2] > pct[2] + 0.03
    # basic reflects the percentile quantiles about the estimate
    assert basic[1] == pytest.approx(2 * pct[0] - pct[2])
    assert basic[2] == pytest.approx(2 * pct[0] - pct[1])
    few = v[: BCA_MIN_N - 1]
    assert bootstrap_ci(few) == bootstrap_ci(few, method="percentile")


def test_constant_data_and_small_inputs() -> None:
    assert bootstrap_ci(np.full(12, 2.5)) == (2.5, 2.5, 2.5)
    assert bootstrap_ci(np.full(12, 2.5), method="percentile") == (2.5, 2.5, 2.5)
    with pytest.warns(sps.DegenerateDataWarning):
        assert np.isnan(bootstrap_ci(np.full(12, 2.5), method="bca")[1])
    est, lo, hi = bootstrap_ci([1.0])
    assert est == 1.0 and np.isnan(lo) and np.isnan(hi)
    assert all(np.isnan(bootstrap_ci([])))
    assert all(np.isnan(bootstrap_ci([np.nan, np.nan])))
    assert bootstrap_ci([1.0, np.nan, 3.0], n_boot=200)[0] == 2.0  # NaN dropped


def test_more_than_half_nan_replicates_give_no_interval() -> None:
    v = np.arange(10.0)
    # a resample of 10 lacks the value 0 with probability 0.9^10 = 0.35
    nan_without_zero = bootstrap_ci(v, statistic=lambda a: a.mean() if 0 in a else np.nan)
    nan_with_zero = bootstrap_ci(v, statistic=lambda a: np.nan if 0 in a else a.mean())
    assert np.isfinite(nan_without_zero[1:]).all()
    assert np.isnan(nan_with_zero[1:]).all() and nan_with_zero[0] != nan_with_zero[0]


def test_paired_resampling_keeps_rows_together() -> None:
    x = np.random.default_rng(2).normal(size=25)

    def diff(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.mean(a, axis=axis) - np.mean(b, axis=axis)

    assert bootstrap_ci((x, x.copy()), statistic=diff, paired=True) == (0.0, 0.0, 0.0)
    _, lo, hi = bootstrap_ci((x, x.copy()), statistic=diff, paired=False)
    assert lo < -0.1 and hi > 0.1  # independent draws break the pairs
    rows = np.column_stack([x, x])  # an (N, 2) array is resampled by whole rows
    assert bootstrap_ci(rows, statistic=lambda a: np.mean(a[:, 0] - a[:, 1])) == (0.0, 0.0, 0.0)
    res = correlation(x, 2 * x + 1, n_boot=500)  # every resampled pair lies on the line
    assert (res.r, res.ci_low, res.ci_high) == pytest.approx((1.0, 1.0, 1.0))
    with pytest.raises(ArgumentError, match="equal lengths"):
        bootstrap_ci((x, x[:-1]), statistic=diff, paired=True)


def test_correlation_bootstrap_is_fast() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=20)
    start = time.perf_counter()
    for method in ("pearson", "spearman"):
        correlation(x, x + rng.normal(size=20), method=method, n_boot=2000)
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"method": "bcaa"}, "method"),
        ({"n_boot": 0}, "n_boot"),
        ({"level": 95}, "level"),
        ({"statistic": "mean"}, "statistic"),
    ],
)
def test_bad_arguments(kwargs: dict, field: str) -> None:
    with pytest.raises(ArgumentError, match=f"^{field}: expected") as info:
        bootstrap_ci([1.0, 2.0, 3.0], **kwargs)
    assert isinstance(info.value, ValueError) and isinstance(info.value, VaelensError)
