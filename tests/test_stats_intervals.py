"""Welch's ANOVA, Fisher-z intervals, intervals across seeds, rank matching and the mixed model."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from vaelens.errors import ArgumentError
from vaelens.stats import (
    compare_groups,
    correlation,
    fisher_z_ci,
    group_summary,
    match_by_rank,
    mixed_slope,
    partial_correlation,
    summary_interval,
    welch_anova,
    within_group_correlation,
)

# Student's sleep data (R's ``sleep``): extra hours of sleep under two drugs
SLEEP_1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0]
SLEEP_2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4]

# three groups, equal-ish means but very unequal variances and sizes
HETERO = (
    [10.1, 9.8, 10.3, 10.0, 9.9, 10.2],
    [12.0, 7.5, 14.1, 6.0, 13.2, 9.9, 11.8],
    [10.9, 11.3, 10.6, 11.1, 10.8],
)


def test_welch_anova_two_groups_is_the_published_welch_t() -> None:
    # R: t.test(extra ~ group, data = sleep): t = -1.8608, df = 17.776, p-value = 0.07939;
    # with two groups Welch's F* is t^2 and df2 the Welch-Satterthwaite df
    res = welch_anova(SLEEP_1, SLEEP_2)
    assert res["statistic"] == pytest.approx(1.8608**2, rel=1e-4)
    assert res["df1"] == 1 and res["df2"] == pytest.approx(17.776, abs=5e-4)
    assert res["p"] == pytest.approx(0.07939, abs=5e-6)


def test_welch_anova_by_hand_on_a_heteroscedastic_example() -> None:
    n = np.array([len(g) for g in HETERO], float)
    m = np.array([np.mean(g) for g in HETERO])
    v = np.array([np.var(g, ddof=1) for g in HETERO])
    w = n / v
    grand = (w * m).sum() / w.sum()
    lam = ((1 - w / w.sum()) ** 2 / (n - 1)).sum()
    f = (w * (m - grand) ** 2).sum() / 2 / (1 + 2 * 1 * lam / 8)
    df2 = 8 / (3 * lam)
    res = welch_anova(*HETERO)
    assert res["statistic"] == pytest.approx(f) and res["df2"] == pytest.approx(df2)
    assert res["p"] == pytest.approx(sps.f.sf(f, 2, df2))
    assert res["statistic"] == pytest.approx(18.0295, abs=1e-4)
    assert res["df2"] == pytest.approx(8.5989, abs=1e-4) and res["p"] < 0.001
    # the equal-variance ANOVA misses it: p = 0.73
    assert sps.f_oneway(*HETERO).pvalue > 0.7
    omni, _ = compare_groups(np.concatenate(HETERO), np.repeat(["a", "b", "c"], n.astype(int)))
    assert omni["test"] == "welch_anova" and omni["p"] == pytest.approx(res["p"])
    assert omni["df2"] == pytest.approx(df2)
    # a group with one value is left out; zero variance makes w infinite: no test
    assert welch_anova([7.0], SLEEP_1, SLEEP_2) == welch_anova(SLEEP_1, SLEEP_2)
    assert np.isnan(welch_anova([1.0], [2.0, 3.0])["p"])
    assert np.isnan(welch_anova([1.0, 1.0], [2.0, 3.0])["statistic"])


def test_welch_anova_matches_statsmodels_when_installed() -> None:
    oneway = pytest.importorskip("statsmodels.stats.oneway")
    ref = oneway.anova_oneway(list(HETERO), use_var="unequal")
    res = welch_anova(*HETERO)
    assert res["statistic"] == pytest.approx(ref.statistic)
    assert res["df2"] == pytest.approx(ref.df[1]) and res["p"] == pytest.approx(ref.pvalue)


def test_fisher_z_known_values() -> None:
    # r = 0.8, n = 30: atanh 0.8 = 1.0986, se = 1/sqrt(27) = 0.19245
    lo, hi = fisher_z_ci(0.8, 30)
    assert lo == pytest.approx(np.tanh(np.arctanh(0.8) - 1.959964 / np.sqrt(27)))
    assert (round(lo, 4), round(hi, 4)) == (0.6178, 0.9007)
    # a partial correlation with 2 controls has n - 5; Spearman's variance is 1.06 / (n - 3)
    assert fisher_z_ci(0.8, 32, n_controls=2) == pytest.approx((lo, hi))
    _, shi = fisher_z_ci(0.8, 30, method="spearman")
    assert np.arctanh(shi) - np.arctanh(0.8) == pytest.approx(1.959964 * np.sqrt(1.06 / 27))
    assert np.isnan(fisher_z_ci(0.5, 3)[0]) and np.isnan(fisher_z_ci(np.nan, 30)[1])
    with pytest.raises(ArgumentError, match=r"^level: expected a number in \(0, 1\)"):
        fisher_z_ci(0.5, 30, level=1.5)


def test_every_correlation_carries_its_fisher_z_interval() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=40)
    y = 0.5 * x + rng.normal(size=40)
    c = rng.normal(size=40)
    res = correlation(x, y, n_boot=100)
    assert (res.fz_low, res.fz_high) == pytest.approx(fisher_z_ci(res.r, 40))
    part = partial_correlation(x, y, c, n_boot=100)
    assert (part.fz_low, part.fz_high) == pytest.approx(fisher_z_ci(part.r, 40, n_controls=1))
    import pandas as pd

    df = pd.DataFrame({"x": x, "y": y, "g": np.repeat(["a", "b"], 20)})
    wg = within_group_correlation(df, "x", "y", "g", n_boot=50)
    pooled = wg.iloc[-1]
    assert (pooled.fz_low, pooled.fz_high) == pytest.approx(fisher_z_ci(pooled.r, 40, n_controls=1))


def test_partial_correlation_drops_collinear_dataset_covariates() -> None:
    rng = np.random.default_rng(6)
    ds = np.repeat([0, 1, 2], 10)
    n_factors = np.array([5.0, 6.0, 40.0])[ds]
    channels = np.array([1.0, 1.0, 3.0])[ds]
    entropy = np.array([9.0, 8.0, 27.7])[ds]  # with 3 datasets only 2 columns add rank
    x, y = rng.normal(size=30), rng.normal(size=30)
    res = partial_correlation(
        x, y, np.column_stack([n_factors, channels, entropy]),
        covariate_names=("factors", "channels", "entropy"), n_boot=50,
    )  # fmt: skip
    assert res.controls == ("factors", "channels")
    ref = partial_correlation(x, y, np.column_stack([n_factors, channels]), n_boot=50)
    assert res.r == pytest.approx(ref.r) and res.p == pytest.approx(ref.p)


def test_summary_interval_kinds() -> None:
    # n = 2: the seeds' range, not a t interval (5.58 +- 35 at t_1 = 12.7)
    two = summary_interval([1.0, 10.16], nonnegative=True)
    assert two["interval"] == "range" and (two["min"], two["max"]) == (1.0, 10.16)
    assert np.isnan(two["ci_low"]) and two["mean"] == pytest.approx(5.58)
    assert summary_interval([3.0])["interval"] == "single"
    assert summary_interval([np.nan])["interval"] == "none"
    vals = np.array([0.3, 1.0, 5.58, 0.9])
    t = summary_interval(vals)
    half = sps.t.ppf(0.975, 3) * vals.std(ddof=1) / 2
    assert t["interval"] == "t" and t["ci_low"] == pytest.approx(vals.mean() - half)
    assert t["ci_low"] < 0  # the t interval of a non-negative metric crosses zero
    lt = summary_interval(vals, nonnegative=True)
    factor = np.exp(half / vals.mean())
    assert lt["interval"] == "log-t" and lt["ci_low"] > 0
    assert (lt["ci_low"], lt["ci_high"]) == pytest.approx(
        (vals.mean() / factor, vals.mean() * factor)
    )
    assert summary_interval([0.0, 0.0, 0.0], nonnegative=True)["ci_high"] == 0
    with pytest.raises(ArgumentError, match=r"^values: nonnegative=True but the smallest"):
        summary_interval([1.0, -0.5, 2.0], nonnegative=True)
    gs = group_summary([1.0, 2.0, 4.0, 5.0, 6.0], ["a", "a", "b", "b", "b"], nonnegative=True)
    assert list(gs.interval) == ["range", "log-t"]


def test_log_t_interval_covers_a_lognormal_mean() -> None:
    # coverage of the true mean of a log-normal at n = 5 stays near 95% and never crosses 0
    rng = np.random.default_rng(7)
    true = np.exp(0.5 * 0.6**2)
    hits, lows = 0, []
    for _ in range(2000):
        s = summary_interval(rng.lognormal(0, 0.6, 5), nonnegative=True)
        hits += s["ci_low"] <= true <= s["ci_high"]
        lows.append(s["ci_low"])
    assert 0.88 < hits / 2000 < 0.98 and min(lows) > 0


def test_match_by_rank_pairs_strongest_latents() -> None:
    ces = [np.array([0.1, 5.0, 2.0]), np.array([4.0, np.nan, 0.2, 3.0])]
    spec = [np.array([10.0, 50.0, 20.0]), np.array([40.0, 1.0, 2.0, 30.0])]
    k, s = match_by_rank(ces, spec)
    np.testing.assert_array_equal(k[0], [5.0, 2.0, 0.1, np.nan])
    np.testing.assert_array_equal(k[1], [4.0, 3.0, 0.2, np.nan])
    np.testing.assert_array_equal(s[1], [40.0, 30.0, 2.0, 1.0])
    with pytest.raises(ArgumentError, match=r"^others\[0\]: expected 2 runs"):
        match_by_rank(ces, spec[:1])


def test_mixed_slope_recovers_a_planted_slope_with_architecture_intercepts() -> None:
    pytest.importorskip("statsmodels")
    rng = np.random.default_rng(8)
    groups = np.repeat(np.arange(6), 8)
    u = rng.normal(0, 2.0, 6)[groups]  # large architecture intercepts
    x = rng.normal(size=48) + 0.5 * u  # x is confounded with the architecture
    y = 1.5 * x + u + rng.normal(0, 0.5, 48)
    res = mixed_slope(y, x, groups)
    assert res["converged"] and res["n"] == 48 and res["n_groups"] == 6
    assert res["ci_low"] < 1.5 < res["ci_high"] and res["p"] < 1e-6
    assert res["group_var"] > 1.0
    # the naive per-run slope is biased by the shared intercepts
    assert sps.linregress(x, y).slope > 1.9
    few = mixed_slope(y[:16], x[:16], groups[:16])
    assert np.isnan(few["slope"]) and "at least 3" in few["note"]
    with pytest.raises(ArgumentError, match=r"^x, groups, fixed: expected 48 rows"):
        mixed_slope(y, x[:5], groups)


def test_spearman_exact_p_at_small_n() -> None:
    # a perfect ranking of n points: exact two-sided p = 2 / n! (the t approximation gives 0)
    assert correlation([1, 2, 3], [1, 2, 3], method="spearman").p == pytest.approx(1 / 3)
    assert correlation([1, 2, 3, 4], [4, 3, 2, 1], method="spearman").p == pytest.approx(1 / 12)
    assert correlation([1, 2, 3], [1, 2, 3], n_boot=0).n == 3
    with pytest.raises(ArgumentError, match=r"^n_boot: expected a non-negative int"):
        correlation([1, 2, 3, 4], [1, 2, 3, 4], n_boot=-1)
