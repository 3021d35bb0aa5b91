"""Statistics: correlations with CIs, partial and within-group correlations, group tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from vaelens.errors import ArgumentError, VaelensError
from vaelens.stats import (
    adjust_pvalues,
    compare_groups,
    correlation,
    group_summary,
    paired_vs_baseline,
    partial_correlation,
    within_group_correlation,
)


def test_correlation_matches_scipy_and_ci_brackets_r() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=60)
    y = 0.6 * x + rng.normal(size=60)
    for method, ref in (("pearson", sps.pearsonr(x, y)), ("spearman", sps.spearmanr(x, y))):
        res = correlation(x, y, method=method, n_boot=500)
        assert res.r == pytest.approx(ref.statistic)
        assert res.p == pytest.approx(ref.pvalue)
        assert res.ci_low < res.r < res.ci_high
        assert res.n == 60
    assert "pearson r = " in str(correlation(x, y, n_boot=100))


def test_correlation_edge_cases() -> None:
    assert np.isnan(correlation([1, 2], [3, 4]).r)
    assert np.isnan(correlation([1, 1, 1, 1], [1, 2, 3, 4]).r)
    # NaN pairs are dropped
    assert correlation([1, 2, 3, np.nan, 5], [2, 4, 6, 1, 10], n_boot=50).n == 4
    with pytest.raises(ArgumentError, match=r"^method: expected 'pearson' or 'spearman'") as info:
        correlation([1, 2, 3], [1, 2, 3], method="kendal")
    assert isinstance(info.value, ValueError) and isinstance(info.value, VaelensError)
    three = correlation([1, 2, 3], [1, 3, 2])  # r and p, but no CI below 4 pairs
    assert np.isfinite(three.r) and np.isnan(three.ci_low) and np.isnan(three.ci_high)
    with pytest.raises(ValueError, match="y: expected 3 values"):
        correlation([1, 2, 3], [1, 2])


def test_partial_correlation_matches_the_closed_form_and_removes_a_confounder() -> None:
    rng = np.random.default_rng(1)
    c = rng.normal(size=1000)
    x = c + 0.5 * rng.normal(size=1000)
    y = c + 0.5 * rng.normal(size=1000)
    raw = correlation(x, y, n_boot=200)
    part = partial_correlation(x, y, c, covariate_names=("c",), n_boot=200)
    rxy, rxz, ryz = np.corrcoef(x, y)[0, 1], np.corrcoef(x, c)[0, 1], np.corrcoef(y, c)[0, 1]
    closed = (rxy - rxz * ryz) / np.sqrt((1 - rxz**2) * (1 - ryz**2))
    assert part.r == pytest.approx(closed)
    assert raw.r > 0.7 and abs(part.r) < 0.1
    assert part.ci_low < 0 < part.ci_high
    assert part.controls == ("c",)
    # a constant covariate is dropped, not a singular fit
    const = partial_correlation(
        x, y, np.column_stack([c, np.ones(1000)]), covariate_names=("c", "one"), n_boot=50
    )
    assert const.r == pytest.approx(closed) and const.controls == ("c",)


def test_within_group_correlation_sees_through_between_group_levels() -> None:
    rng = np.random.default_rng(2)
    rows = []
    for g, level in enumerate([0.0, 5.0, 10.0]):
        x = rng.normal(size=30)
        y = -0.8 * x + 0.3 * rng.normal(size=30)
        rows += [
            {"dataset": f"d{g}", "ces": xi + level, "dci": yi + level}
            for xi, yi in zip(x, y, strict=True)
        ]
    df = pd.DataFrame(rows)
    assert (
        correlation(df.ces, df.dci).r > 0.8
    )  # between-dataset levels dominate the raw correlation
    table = within_group_correlation(df, "ces", "dci", "dataset", n_boot=200)
    assert list(table.group) == ["d0", "d1", "d2", "(pooled within)"]
    assert (table.r < -0.8).all()
    assert table.iloc[-1].p < 1e-10
    with pytest.raises(ValueError, match="no column 'zzz'"):
        within_group_correlation(df, "zzz", "dci", "dataset")


def test_adjust_pvalues_known_values() -> None:
    p = [0.01, 0.04, 0.03, 0.02, 0.05, np.nan]
    np.testing.assert_allclose(adjust_pvalues(p, "bonferroni")[:5], [0.05, 0.2, 0.15, 0.1, 0.25])
    np.testing.assert_allclose(adjust_pvalues(p, "holm")[:5], [0.05, 0.09, 0.09, 0.08, 0.09])
    np.testing.assert_allclose(adjust_pvalues(p, "fdr_bh")[:5], [0.05] * 5)
    assert np.isnan(adjust_pvalues(p)[5])
    with pytest.raises(ValueError, match="method"):
        adjust_pvalues(p, "sidak")


def test_group_summary_and_comparisons() -> None:
    rng = np.random.default_rng(3)
    vals = np.concatenate([rng.normal(0, 0.1, 5), rng.normal(1, 0.1, 5), rng.normal(1.02, 0.1, 5)])
    groups = ["vae"] * 5 + ["beta"] * 5 + ["factor"] * 5
    summary = group_summary(vals, groups)
    assert list(summary.group) == ["vae", "beta", "factor"]
    row = summary.iloc[0]
    assert row.ci_low < row["mean"] < row.ci_high and row.n == 5
    for test in ("welch", "mannwhitney"):
        omni, pairs = compare_groups(vals, groups, test=test)
        assert omni["p"] < 0.01
        vb = pairs[(pairs.a == "vae") & (pairs.b == "beta")].iloc[0]
        bf = pairs[(pairs.a == "beta") & (pairs.b == "factor")].iloc[0]
        assert vb.p_adj < 0.05 and bf.p_adj > 0.05
        assert (pairs.p_adj >= pairs.p).all()


def test_paired_vs_baseline() -> None:
    trained = np.array([4.0, 4.2, 3.9, 4.1, 4.3])
    baseline = np.array([1.0, 1.1, 0.9, 1.2, 1.0])
    out = paired_vs_baseline(trained, baseline)
    assert out["mean_diff"] == pytest.approx(3.06)
    assert out["ci_low"] < 3.06 < out["ci_high"]
    assert out["t_p"] < 1e-4
    assert np.isnan(paired_vs_baseline([1.0], [0.5])["t_p"])
