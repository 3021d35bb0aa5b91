"""A random-intercept linear mixed model (statsmodels ``MixedLM``) for a slope whose unit is a group."""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import numpy as np
from scipy import stats as sps

from vaelens.errors import ArgumentError

__all__ = ["MIN_GROUPS", "mixed_slope"]

#: a random-intercept variance needs at least this many groups to be estimated at all
MIN_GROUPS = 3


def _nan_result(n: int, n_groups: int, note: str) -> dict[str, Any]:
    nan = float("nan")
    return {
        "slope": nan,
        "se": nan,
        "p": nan,
        "ci_low": nan,
        "ci_high": nan,
        "group_var": nan,
        "n": n,
        "n_groups": n_groups,
        "converged": False,
        "note": note,
    }


def _finite_rows(
    y: Any, x: Any, groups: Any, fixed: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``y``, ``x``, ``groups`` and ``fixed`` ``(N, K)`` as arrays, checked, without NaN rows."""
    yv = np.asarray(y, dtype=np.float64).ravel()
    xv = np.asarray(x, dtype=np.float64).ravel()
    g = np.asarray(groups).ravel()
    f = np.empty((yv.size, 0)) if fixed is None else np.asarray(fixed, dtype=np.float64)
    if f.ndim == 1:
        f = f[:, None]
    if xv.size != yv.size or g.size != yv.size or f.ndim != 2 or f.shape[0] != yv.size:
        raise ArgumentError(
            f"x, groups, fixed: expected {yv.size} rows like y, got x {xv.size}, "
            f"groups {g.size}, fixed {np.shape(fixed)}"
        )
    keep = np.isfinite(yv) & np.isfinite(xv) & np.all(np.isfinite(f), axis=1)
    return yv[keep], xv[keep], g[keep], f[keep]


class _Fit(NamedTuple):
    slope: float
    se: float
    tau2: float
    converged: bool
    scale: float
    warned: str  # the fit's warning messages, joined


def _fit_reml(yv: np.ndarray, exog: np.ndarray, g: np.ndarray) -> _Fit | str:
    """The REML ``MixedLM`` fit, or the reason there is none (no statsmodels, a failed fit)."""
    try:
        from statsmodels.regression.mixed_linear_model import MixedLM
    except ImportError:
        return "statsmodels is not installed"
    with warnings.catch_warnings(record=True) as caught, np.errstate(all="ignore"):
        warnings.simplefilter("always")
        try:
            res = MixedLM(yv, exog, groups=g).fit(reml=True)
            slope, se = float(res.fe_params[1]), float(res.bse_fe[1])
            tau2 = float(np.asarray(res.cov_re).ravel()[0])
            converged, scale = bool(res.converged), float(res.scale)
        except (np.linalg.LinAlgError, ValueError) as exc:
            return f"the fit failed: {exc}"
    text = " ".join(str(w.message) for w in caught)
    return _Fit(slope, se, tau2, converged, scale, text)


def _slope_result(fit: _Fit, n: int, n_groups: int, level: float) -> dict[str, Any]:
    """The result of :func:`mixed_slope` from a fit: the Wald test and interval, the notes."""
    slope, se, tau2, converged, scale, text = fit
    if not converged:
        return _nan_result(n, n_groups, "the REML fit did not converge: no estimate")
    notes = []
    if tau2 <= 1e-8 * max(scale, 1e-300) or "boundary" in text:
        notes.append("random-intercept variance at or near 0 (boundary): close to the OLS slope")
    if "Hessian" in text or not np.isfinite(se):
        notes.append("Hessian not positive definite: no standard error")
    ok = np.isfinite(se) and se > 0
    z = float(sps.norm.ppf(0.5 + level / 2))
    return {
        "slope": slope,
        "se": se if ok else float("nan"),
        "p": float(2 * sps.norm.sf(abs(slope / se))) if ok else float("nan"),
        "ci_low": slope - z * se if ok else float("nan"),
        "ci_high": slope + z * se if ok else float("nan"),
        "group_var": tau2,
        "n": n,
        "n_groups": n_groups,
        "converged": converged,
        "note": "; ".join(notes),
    }


def mixed_slope(
    y: Any,
    x: Any,
    groups: Any,
    *,
    fixed: Any = None,
    level: float = 0.95,
) -> dict[str, Any]:
    """Slope of ``y`` on ``x`` with a random intercept per group (REML, statsmodels ``MixedLM``).

    Model: ``y_ij = b0 + b1 x_ij + c' f_ij + u_j + e_ij``, ``u_j ~ N(0, tau^2)``,
    ``e_ij ~ N(0, sigma^2)``, for run ``i`` of group ``j`` (e.g. the seeds of one
    architecture) and optional fixed covariates ``fixed`` ``(N, K)`` (e.g. dataset
    indicators). Returns ``slope = b1``, its standard error ``se``, the Wald test ``p`` (``z
    = b1 / se``, normal), the Wald interval ``b1 -+ z_{(1+level)/2} se`` (``ci_low``,
    ``ci_high``), ``group_var = tau^2``, ``n``, ``n_groups``, ``converged`` and ``note``
    (why there is no estimate, or a warning about the fit: boundary ``tau^2 = 0`` means the
    slope is close to the ordinary least-squares one). Rows with a NaN are dropped. No
    estimate (NaN, with the reason in ``note``) when statsmodels is not installed, with fewer
    than :data:`MIN_GROUPS` groups, with no more rows than parameters plus groups, when
    ``x`` is constant, or when the fit does not converge.
    """
    if isinstance(level, bool) or not isinstance(level, int | float) or not 0 < level < 1:
        raise ArgumentError(f"level: expected a number in (0, 1), got {level!r}")
    yv, xv, g, f = _finite_rows(y, x, groups, fixed)
    n, n_groups = int(yv.size), len(set(g.tolist()))
    if n_groups < MIN_GROUPS:
        return _nan_result(
            n, n_groups, f"{n_groups} groups: a random intercept needs at least {MIN_GROUPS}"
        )
    f = f[:, np.ptp(f, axis=0) > 0] if f.shape[1] else f
    exog = np.column_stack([np.ones(n), xv, f])
    if n <= exog.shape[1] + n_groups:
        return _nan_result(n, n_groups, f"{n} rows: too few for {exog.shape[1]} fixed effects "
                           f"and {n_groups} groups")  # fmt: skip
    if np.ptp(xv) == 0:
        return _nan_result(n, n_groups, "x is constant")
    fit = _fit_reml(yv, exog, g)
    if isinstance(fit, str):
        return _nan_result(n, n_groups, fit)
    return _slope_result(fit, n, n_groups, level)
