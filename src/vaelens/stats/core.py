"""Implementation of :mod:`vaelens.stats` (see the package docstring)."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from vaelens.errors import ArgumentError
from vaelens.stats.bootstrap import bootstrap_ci


@dataclass
class CorrelationResult:
    """A correlation coefficient with its test and bootstrap confidence interval."""

    method: str
    r: float
    p: float
    ci_low: float
    ci_high: float
    n: int
    level: float = 0.95
    controls: tuple[str, ...] = ()
    #: the Fisher-z interval (:func:`fisher_z_ci`) beside the bootstrap one
    fz_low: float = float("nan")
    fz_high: float = float("nan")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["controls"] = list(self.controls)
        return d

    def __str__(self) -> str:
        ctl = f" | {', '.join(self.controls)}" if self.controls else ""
        return (
            f"{self.method} r{ctl} = {self.r:.3f} (p = {self.p:.3g}, "
            f"{int(self.level * 100)}% CI [{self.ci_low:.3f}, {self.ci_high:.3f}], "
            f"Fisher-z [{self.fz_low:.3f}, {self.fz_high:.3f}], n = {self.n})"
        )


def _vec(a: Any, name: str) -> np.ndarray:
    v = np.asarray(a, dtype=np.float64).ravel()
    return v


def _pair(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    xv, yv = _vec(x, "x"), _vec(y, "y")
    if xv.shape != yv.shape:
        raise ArgumentError(f"y: expected {xv.size} values like x, got {yv.size}")
    keep = np.isfinite(xv) & np.isfinite(yv)
    return xv[keep], yv[keep]


def _corr_rows(x: np.ndarray, y: np.ndarray, method: str, axis: int = -1) -> np.ndarray:
    """Pearson r along ``axis`` (Spearman: of the average ranks), NaN for n < 3 or a constant."""
    x, y = np.moveaxis(x, axis, -1), np.moveaxis(y, axis, -1)
    if method == "spearman":
        x, y = sps.rankdata(x, axis=-1), sps.rankdata(y, axis=-1)
    if x.shape[-1] < 3:
        return np.full(x.shape[:-1], np.nan)
    xc, yc = x - x.mean(-1, keepdims=True), y - y.mean(-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = (xc * yc).sum(-1) / np.sqrt((xc**2).sum(-1) * (yc**2).sum(-1))
    constant = (np.ptp(x, axis=-1) == 0) | (np.ptp(y, axis=-1) == 0)
    return np.where(constant, np.nan, np.clip(r, -1.0, 1.0))


def _rows_ci(
    samples: tuple[np.ndarray, ...],
    statistic: Callable[..., Any],
    vectorized: bool,
    n_boot: int,
    level: float,
    random_state: int,
) -> tuple[float, float]:
    """Bootstrap CI of ``statistic(*samples)`` resampling whole rows (paired samples)."""
    _, lo, hi = bootstrap_ci(
        samples,
        statistic=statistic,
        paired=True,
        vectorized=vectorized,
        n_boot=n_boot,
        level=level,
        random_state=random_state,
    )
    return lo, hi


def _want_boot(n_boot: Any) -> bool:
    """Whether to bootstrap: ``n_boot = 0`` asks for no bootstrap CI."""
    if isinstance(n_boot, bool) or not isinstance(n_boot, int | np.integer) or n_boot < 0:
        raise ArgumentError(f"n_boot: expected a non-negative int, got {n_boot!r}")
    return n_boot > 0


def _check_method(method: str) -> None:
    if method not in ("pearson", "spearman"):
        raise ArgumentError(f"method: expected 'pearson' or 'spearman', got {method!r}")


#: Spearman p-values are exact (all n! pairings) up to this many pairs
SPEARMAN_EXACT_MAX_N = 8


def _spearman_exact_p(x: np.ndarray, y: np.ndarray) -> float:
    """Two-sided exact permutation p of Spearman's r over all pairings of ``x`` and ``y``."""
    rx, ry = sps.rankdata(x), sps.rankdata(y)
    perms = np.array(list(itertools.permutations(range(ry.size))))
    null = _corr_rows(np.broadcast_to(rx, perms.shape), ry[perms], "pearson")
    obs = float(_corr_rows(rx, ry, "pearson"))
    return float(np.mean(np.abs(null) >= abs(obs) - 1e-12))


def correlation(
    x: Any,
    y: Any,
    *,
    method: str = "pearson",
    n_boot: int = 2000,
    level: float = 0.95,
    random_state: int = 0,
) -> CorrelationResult:
    """Correlation of ``x`` and ``y`` with a two-sided p-value and a bootstrap CI.

    Pearson: ``r = cov(x, y) / (sd(x) sd(y))``, p from the t distribution with ``n - 2`` df;
    Spearman: Pearson's r of the ranks, p from the t approximation, or with at most
    :data:`SPEARMAN_EXACT_MAX_N` pairs the exact permutation p-value (the share of the ``n!``
    pairings with ``|r_s| >= |r_s observed|``; the t approximation gives p = 0 for a
    perfect ranking of 3 points, the exact p is 1/3). Pairs with a NaN are dropped. With fewer than 3
    pairs, or a constant variable, r and p are NaN. The CI resamples whole pairs
    (:func:`~vaelens.stats.bootstrap_ci`, ``method="auto"``); none with fewer than 4 pairs or
    when more than half of the replicates are NaN, and none asked for with ``n_boot=0``.
    ``fz_low, fz_high``: the Fisher-z interval
    (:func:`fisher_z_ci`), none with fewer than 4 pairs.
    """
    _check_method(method)
    xv, yv = _pair(x, y)
    r = float(_corr_rows(xv, yv, method))
    if np.isnan(r):
        p = float("nan")
    elif method == "pearson":
        p = float(sps.pearsonr(xv, yv).pvalue)
    elif xv.size <= SPEARMAN_EXACT_MAX_N:
        p = _spearman_exact_p(xv, yv)
    else:
        p = float(sps.spearmanr(xv, yv).pvalue)
    lo = hi = float("nan")
    if xv.size >= 4 and _want_boot(n_boot):
        stat = functools.partial(_corr_rows, method=method)
        lo, hi = _rows_ci((xv, yv), stat, True, n_boot, level, random_state)
    fz = fisher_z_ci(r, int(xv.size), level=level, method=method)
    return CorrelationResult(method, r, p, lo, hi, int(xv.size), level, (), *fz)


def _partial_r(x: np.ndarray, y: np.ndarray, *covariates: np.ndarray) -> float:
    """Pearson r of the residuals of ``x`` and ``y`` on an intercept and ``covariates``."""
    if x.size - 2 - len(covariates) < 1:
        return float("nan")
    design = np.column_stack([np.ones(x.size), *covariates])
    coef, *_ = np.linalg.lstsq(design, np.column_stack([x, y]), rcond=None)
    rx, ry = (np.column_stack([x, y]) - design @ coef).T
    if np.ptp(rx) < 1e-12 or np.ptp(ry) < 1e-12:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def _independent_columns(cov: np.ndarray) -> list[int]:
    """Columns of ``cov`` that are not linear combinations of an intercept and earlier ones.

    Dataset-level covariates (e.g. number of factors, channels) can take at most ``G``
    distinct value patterns over ``G`` datasets; a covariate that adds no rank would make the
    regression singular and its degree of freedom fictitious.
    """
    keep: list[int] = []
    basis = np.ones((cov.shape[0], 1))
    for j in range(cov.shape[1]):
        trial = np.column_stack([basis, cov[:, j]])
        scaled = trial / np.maximum(np.abs(trial).max(axis=0), 1e-300)
        if np.linalg.matrix_rank(scaled, tol=1e-9 * cov.shape[0]) == trial.shape[1]:
            keep.append(j)
            basis = trial
    return keep


def _partial_rows(
    x: Any, y: Any, covariates: Any, names: tuple[str, ...], method: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
    """Finite rows of ``x``, ``y`` and the varying covariates (ranked for Spearman)."""
    xv, yv = _vec(x, "x"), _vec(y, "y")
    cov = np.asarray(covariates, dtype=np.float64)
    if cov.ndim == 1:
        cov = cov[:, None]
    if cov.shape[0] != xv.size or yv.size != xv.size:
        raise ArgumentError(
            f"covariates: expected {xv.size} rows like x and y, got x {xv.size}, y {yv.size}, covariates {cov.shape[0]}"
        )
    names = names or tuple(f"c{i}" for i in range(cov.shape[1]))
    keep = np.isfinite(xv) & np.isfinite(yv) & np.all(np.isfinite(cov), axis=1)
    xv, yv, cov = xv[keep], yv[keep], cov[keep]
    varying = np.ptp(cov, axis=0) > 0 if cov.shape[0] else np.zeros(cov.shape[1], bool)
    cov = cov[:, varying]
    names = tuple(n for n, v in zip(names, varying, strict=True) if v)
    independent = _independent_columns(cov)
    cov = cov[:, independent]
    names = tuple(names[i] for i in independent)
    if method == "spearman":
        xv, yv = sps.rankdata(xv), sps.rankdata(yv)
        cov = np.column_stack([sps.rankdata(c) for c in cov.T]) if cov.shape[1] else cov
    return xv, yv, cov, names


def partial_correlation(
    x: Any,
    y: Any,
    covariates: Any,
    *,
    method: str = "pearson",
    covariate_names: tuple[str, ...] = (),
    n_boot: int = 2000,
    level: float = 0.95,
    random_state: int = 0,
) -> CorrelationResult:
    """Correlation of ``x`` and ``y`` controlling for ``covariates`` ``(N, K)``.

    Both variables are regressed (least squares with an intercept) on the covariates and
    the residuals correlated; Spearman ranks every variable first. The p-value uses the t
    distribution with ``n - 2 - K`` degrees of freedom,
    ``t = r sqrt((n - 2 - K) / (1 - r^2))``. The bootstrap (:func:`~vaelens.stats.bootstrap_ci`,
    ``method="auto"``) resamples whole rows, refitting the regressions each time; no CI with
    fewer than ``4 + K`` rows, with ``n_boot=0``, or when more than half of the replicates
    are NaN. The Fisher-z
    interval (:func:`fisher_z_ci`) uses ``n - 3 - K``. Covariates constant over the rows, or
    linear combinations of an intercept and the covariates before them, are dropped (they
    carry no information); their names stay out of ``controls``.
    """
    _check_method(method)
    xv, yv, cov, names = _partial_rows(x, y, covariates, covariate_names, method)
    n, k = xv.size, cov.shape[1]
    r = _partial_r(xv, yv, *cov.T)
    df = n - 2 - k
    if np.isnan(r) or df < 1:
        p = float("nan")
    else:
        t = r * np.sqrt(df / max(1e-300, 1 - r**2))
        p = float(2 * sps.t.sf(abs(t), df))
    lo = hi = float("nan")
    if n >= 4 + k and _want_boot(n_boot):
        lo, hi = _rows_ci((xv, yv, *cov.T), _partial_r, False, n_boot, level, random_state)
    fz = fisher_z_ci(r, int(n), n_controls=k, level=level, method=method)
    return CorrelationResult(method, r, p, lo, hi, int(n), level, names, *fz)


def within_group_correlation(
    df: pd.DataFrame,
    x: str,
    y: str,
    group: str,
    *,
    method: str = "pearson",
    n_boot: int = 2000,
    level: float = 0.95,
    random_state: int = 0,
) -> pd.DataFrame:
    """Correlation of columns ``x`` and ``y`` inside each ``group``, and pooled within groups.

    The pooled row (group ``"(pooled within)"``) correlates ``x - mean_g(x)`` with
    ``y - mean_g(y)``: between-group differences in level cannot produce it. For Spearman,
    ranks are taken inside each group before centring. Its p-value uses
    ``n - 2 - (G - 1)`` degrees of freedom for the ``G`` removed group means, and its
    Fisher-z interval ``n - 3 - (G - 1)``.
    """
    _check_method(method)
    for col in (x, y, group):
        if col not in df.columns:
            raise ArgumentError(f"df: has no column {col!r}; columns are {list(df.columns)}")
    rows = []
    centred_x, centred_y = [], []
    for g, sub in df.groupby(group, sort=True):
        res = correlation(
            sub[x], sub[y], method=method, n_boot=n_boot, level=level, random_state=random_state
        )
        rows.append({"group": g, **res.to_dict()})
        xs, ys = _pair(sub[x], sub[y])
        if method == "spearman":
            xs, ys = sps.rankdata(xs), sps.rankdata(ys)
        centred_x.append(xs - xs.mean() if xs.size else xs)
        centred_y.append(ys - ys.mean() if ys.size else ys)
    cx, cy = np.concatenate(centred_x), np.concatenate(centred_y)
    groups = len(centred_x)
    pooled = correlation(
        cx, cy, method="pearson", n_boot=n_boot, level=level, random_state=random_state
    )
    dof = cx.size - 2 - (groups - 1)
    if np.isfinite(pooled.r) and dof >= 1:
        t = pooled.r * np.sqrt(dof / max(1e-300, 1 - pooled.r**2))
        pooled.p = float(2 * sps.t.sf(abs(t), dof))
    else:
        pooled.p = float("nan")
    pooled.fz_low, pooled.fz_high = fisher_z_ci(
        pooled.r, pooled.n, n_controls=groups - 1, level=level, method=method
    )
    pooled.method = method
    rows.append({"group": "(pooled within)", **pooled.to_dict()})
    return pd.DataFrame(rows)


#: Fieller, Hartley & Pearson (1957): var(atanh r_s) ~ 1.06 / (n - 3) for Spearman's r
_SPEARMAN_Z_VAR = 1.06


def fisher_z_ci(
    r: float, n: int, *, n_controls: int = 0, level: float = 0.95, method: str = "pearson"
) -> tuple[float, float]:
    """Fisher-z confidence interval of a correlation ``r`` from ``n`` pairs.

    ``z = atanh(r)``, ``se = sqrt(c / (n - 3 - K))`` with ``K = n_controls`` (partial
    correlations, removed group means) and ``c = 1`` for Pearson, ``c = 1.06`` for Spearman
    (Fieller, Hartley & Pearson 1957); the interval is ``tanh(z -+ z_{(1+level)/2} se)``.
    It lies inside [-1, 1] and is asymmetric about r. ``(nan, nan)`` when r is not finite or
    ``n - 3 - K < 1``.
    """
    _check_method(method)
    if isinstance(level, bool) or not 0 < level < 1:
        raise ArgumentError(f"level: expected a number in (0, 1), got {level!r}")
    dof = n - 3 - n_controls
    if not np.isfinite(r) or dof < 1:
        return float("nan"), float("nan")
    c = _SPEARMAN_Z_VAR if method == "spearman" else 1.0
    with np.errstate(divide="ignore"):
        z = np.arctanh(np.clip(r, -1.0, 1.0))
    half = float(sps.norm.ppf(0.5 + level / 2) * np.sqrt(c / dof))
    return float(np.tanh(z - half)), float(np.tanh(z + half))


#: the interval kinds :func:`summary_interval` reports
INTERVAL_KINDS = ("none", "single", "range", "t", "log-t")


def summary_interval(
    values: Any, *, nonnegative: bool = False, level: float = 0.95
) -> dict[str, Any]:
    """Mean of ``values`` across seeds with the interval a reviewer can read.

    Returns ``mean``, ``sd`` (ddof 1), ``n`` (finite values), ``min``, ``max``, ``ci_low``,
    ``ci_high`` and ``interval``, one of :data:`INTERVAL_KINDS`:

    - ``"none"`` (n = 0) and ``"single"`` (n = 1): no interval;
    - ``"range"`` (n = 2): no confidence interval (``t_{0.975, 1} = 12.7`` makes one
      meaningless); show the seeds' points, ``min`` and ``max``; ``ci_low``/``ci_high`` NaN;
    - ``"t"`` (n >= 3, ``nonnegative=False``): ``mean -+ t_{n-1} sd / sqrt(n)``;
    - ``"log-t"`` (n >= 3, ``nonnegative=True``): the t interval on the log scale by the
      delta method, ``mean * exp(-+ t_{n-1} (sd / sqrt(n)) / mean)``: asymmetric and never
      below zero (``(0, 0)`` when every value is 0).

    ``nonnegative=True`` with a negative value is an :class:`ArgumentError`.
    """
    if isinstance(level, bool) or not isinstance(level, int | float) or not 0 < level < 1:
        raise ArgumentError(f"level: expected a number in (0, 1), got {level!r}")
    v = _vec(values, "values")
    v = v[np.isfinite(v)]
    n = int(v.size)
    nan = float("nan")
    out: dict[str, Any] = {
        "mean": float(v.mean()) if n else nan,
        "sd": float(v.std(ddof=1)) if n > 1 else nan,
        "n": n,
        "min": float(v.min()) if n else nan,
        "max": float(v.max()) if n else nan,
        "ci_low": nan,
        "ci_high": nan,
        "interval": INTERVAL_KINDS[min(n, 2)],
    }
    if nonnegative and n and out["min"] < 0:
        raise ArgumentError(f"values: nonnegative=True but the smallest value is {out['min']:.4g}")
    if n < 3:
        return out
    mean, se = out["mean"], out["sd"] / np.sqrt(n)
    t = float(sps.t.ppf(0.5 + level / 2, n - 1))
    if not nonnegative:
        out.update(ci_low=float(mean - t * se), ci_high=float(mean + t * se), interval="t")
    elif mean == 0:
        out.update(ci_low=0.0, ci_high=0.0, interval="log-t")
    else:
        f = float(np.exp(t * se / mean))
        out.update(ci_low=mean / f, ci_high=mean * f, interval="log-t")
    return out


def match_by_rank(key: Any, *others: Any) -> tuple[np.ndarray, ...]:
    """Each run's latents reordered by rank of ``key`` (largest first), and ``others`` alike.

    Latent indices are arbitrary in each run, so dimension i of one seed has nothing to do
    with dimension i of another; rank 1 (the strongest effect) of one run can be compared
    with rank 1 of another. ``key`` and every array of ``others`` are sequences of 1-D
    arrays, one per run (lengths may differ); the result is ``(R, D_max)`` arrays, column j
    holding each run's rank-(j + 1) latent, NaN-padded; a NaN key ranks last.
    """
    runs = [np.asarray(k, dtype=np.float64).ravel() for k in key]
    rest = [[np.asarray(o, dtype=np.float64).ravel() for o in other] for other in others]
    for name, other in zip(range(len(rest)), rest, strict=True):
        if len(other) != len(runs) or any(
            o.size != k.size for o, k in zip(other, runs, strict=True)
        ):
            raise ArgumentError(
                f"others[{name}]: expected {len(runs)} runs shaped like key, got "
                f"{[o.size for o in other]} against {[k.size for k in runs]}"
            )
    width = max((k.size for k in runs), default=0)
    out = [np.full((len(runs), width), np.nan) for _ in range(1 + len(rest))]
    for i, k in enumerate(runs):
        order = np.argsort(np.where(np.isfinite(k), -k, np.inf), kind="stable")
        out[0][i, : k.size] = k[order]
        for j, other in enumerate(rest):
            out[j + 1][i, : k.size] = other[i][order]
    return tuple(out)


def group_summary(
    values: Any, groups: Any, *, level: float = 0.95, nonnegative: bool = False
) -> pd.DataFrame:
    """Per-group :func:`summary_interval`: mean, sd, n, min, max and the interval.

    n >= 3: ``mean -+ t_{n-1} sd / sqrt(n)``, or for a non-negative metric
    (``nonnegative=True``) the log-scale ``mean * exp(-+ t_{n-1} sd / (sqrt(n) mean))``;
    n = 2: no CI, the seeds' range (``min``, ``max``); column ``interval`` names which.
    """
    v = _vec(values, "values")
    g = np.asarray(groups).ravel()
    if g.size != v.size:
        raise ArgumentError(f"groups: expected {v.size} labels like values, got {g.size}")
    rows = []
    for label in pd.unique(g):
        sel = v[g == label]
        rows.append({"group": label, **summary_interval(sel, nonnegative=nonnegative, level=level)})
    return pd.DataFrame(rows)


def adjust_pvalues(p: Any, method: str = "holm") -> np.ndarray:
    """Adjusted p-values for multiple comparisons (NaNs stay NaN and do not count).

    ``bonferroni``: ``min(1, m p)``; ``holm``: step-down ``max_{j<=i} min(1, (m - j + 1) p_(j))``;
    ``fdr_bh`` (Benjamini-Hochberg): step-up ``min_{j>=i} m p_(j) / j``.
    """
    pv = _vec(p, "p")
    out = np.full_like(pv, np.nan)
    ok = np.isfinite(pv)
    q = pv[ok]
    m = q.size
    if m == 0:
        return out
    order = np.argsort(q)
    ranked = q[order]
    if method == "bonferroni":
        adj = np.minimum(1.0, ranked * m)
    elif method == "holm":
        adj = np.minimum(1.0, np.maximum.accumulate(ranked * (m - np.arange(m))))
    elif method == "fdr_bh":
        adj = np.minimum(1.0, np.minimum.accumulate((ranked * m / np.arange(1, m + 1))[::-1])[::-1])
    else:
        raise ArgumentError(f"method: expected 'holm', 'bonferroni' or 'fdr_bh', got {method!r}")
    res = np.empty(m)
    res[order] = adj
    out[ok] = res
    return out


def welch_anova(*samples: Any) -> dict[str, float]:
    """Welch's (1951) one-way ANOVA for means with unequal variances.

    For ``k`` groups with sizes ``n_i``, means ``m_i`` and variances ``s_i^2`` (ddof 1):
    ``w_i = n_i / s_i^2``, ``W = sum w_i``, ``m = sum w_i m_i / W``,
    ``L = sum (1 - w_i / W)^2 / (n_i - 1)``,
    ``F* = [sum w_i (m_i - m)^2 / (k - 1)] / [1 + 2 (k - 2) L / (k^2 - 1)]``, referred to
    F with ``df1 = k - 1`` and ``df2 = (k^2 - 1) / (3 L)``. Returns ``statistic``, ``df1``,
    ``df2``, ``p``; all NaN with fewer than 2 groups of at least 2 finite values, or when a
    group has zero variance (its weight is infinite). NaNs are dropped.
    """
    groups = [_vec(x, "samples") for x in samples]
    groups = [x[np.isfinite(x)] for x in groups]
    nan = float("nan")
    out = {"statistic": nan, "df1": nan, "df2": nan, "p": nan}
    groups = [x for x in groups if x.size >= 2]
    k = len(groups)
    if k < 2:
        return out
    n = np.array([x.size for x in groups], dtype=np.float64)
    m = np.array([x.mean() for x in groups])
    var = np.array([x.var(ddof=1) for x in groups])
    if np.any(var <= 0):
        return out
    w = n / var
    big_w = w.sum()
    grand = float((w * m).sum() / big_w)
    lam = float(((1 - w / big_w) ** 2 / (n - 1)).sum())
    a = float((w * (m - grand) ** 2).sum() / (k - 1))
    b = 1 + 2 * (k - 2) * lam / (k**2 - 1)
    f = a / b
    df2 = (k**2 - 1) / (3 * lam)
    out.update(statistic=f, df1=float(k - 1), df2=float(df2), p=float(sps.f.sf(f, k - 1, df2)))
    return out


def compare_groups(
    values: Any,
    groups: Any,
    *,
    test: str = "welch",
    correction: str = "holm",
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Test differences between groups (e.g. architectures across seeds).

    Omnibus: Welch's ANOVA (:func:`welch_anova`, ``test="welch"``: no equal-variance
    assumption; ``omnibus`` then has ``df1`` and ``df2``) or Kruskal-Wallis
    (``test="mannwhitney"``). Pairwise: Welch's t-test or the Mann-Whitney U test for every
    pair of groups, with p-values adjusted by ``correction`` over all pairs. Returns
    ``(omnibus, pairwise)``.
    """
    if test not in ("welch", "mannwhitney"):
        raise ArgumentError(f"test: expected 'welch' or 'mannwhitney', got {test!r}")
    v = _vec(values, "values")
    g = np.asarray(groups).ravel()
    if g.size != v.size:
        raise ArgumentError(f"groups: expected {v.size} labels like values, got {g.size}")
    labels = list(pd.unique(g))
    samples = {lab: v[(g == lab) & np.isfinite(v)] for lab in labels}
    usable = [s for s in samples.values() if s.size >= 2]
    omnibus: dict[str, Any] = {
        "test": "welch_anova" if test == "welch" else "kruskal",
        "statistic": float("nan"),
        "p": float("nan"),
    }
    if test == "welch":
        omnibus.update(welch_anova(*usable))
    elif len(usable) >= 2 and any(np.ptp(s) > 0 for s in usable):
        res = sps.kruskal(*usable)
        omnibus.update(statistic=float(res.statistic), p=float(res.pvalue))
    rows = []
    for a, b in itertools.combinations(labels, 2):
        sa, sb = samples[a], samples[b]
        stat = p = float("nan")
        if sa.size >= 2 and sb.size >= 2 and (np.ptp(sa) > 0 or np.ptp(sb) > 0):
            if test == "welch":
                r = sps.ttest_ind(sa, sb, equal_var=False)
            else:
                r = sps.mannwhitneyu(sa, sb, alternative="two-sided")
            stat, p = float(r.statistic), float(r.pvalue)
        rows.append(
            {
                "a": a,
                "b": b,
                "mean_a": float(sa.mean()) if sa.size else np.nan,
                "mean_b": float(sb.mean()) if sb.size else np.nan,
                "diff": float(sa.mean() - sb.mean()) if sa.size and sb.size else np.nan,
                "statistic": stat,
                "p": p,
            }
        )
    table = pd.DataFrame(rows, columns=["a", "b", "mean_a", "mean_b", "diff", "statistic", "p"])
    table["p_adj"] = adjust_pvalues(table["p"].to_numpy(), correction) if len(table) else []
    table["correction"] = correction
    return omnibus, table


def paired_vs_baseline(trained: Any, baseline: Any) -> dict[str, float]:
    """A metric of trained models against the same metric on their random-init twins.

    Paired over runs: mean difference, its t-based 95% CI, the paired t-test and the
    Wilcoxon signed-rank test (NaN when there are fewer than 2 pairs or no differences).
    """
    t, b = _pair(trained, baseline)
    d = t - b
    n = d.size
    out = {
        "n": n,
        "mean_trained": float(t.mean()) if n else np.nan,
        "mean_baseline": float(b.mean()) if n else np.nan,
        "mean_diff": float(d.mean()) if n else np.nan,
        "ci_low": np.nan,
        "ci_high": np.nan,
        "t_p": np.nan,
        "wilcoxon_p": np.nan,
    }
    if n >= 2 and np.ptp(d) > 0:
        half = float(sps.t.ppf(0.975, n - 1) * d.std(ddof=1) / np.sqrt(n))
        out.update(ci_low=out["mean_diff"] - half, ci_high=out["mean_diff"] + half)
        out["t_p"] = float(sps.ttest_rel(t, b).pvalue)
    if n >= 2 and np.any(d != 0):
        out["wilcoxon_p"] = float(sps.wilcoxon(d).pvalue)
    return out
