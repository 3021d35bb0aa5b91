"""Interventional Robustness Score (Suter et al., ICML 2019), as disentanglement_lib.

For latent ``j`` and factor ``i``: group the points by the level of ``v_i``; within each
group take the ``diff_quantile`` (0.99) quantile of ``|z_j - E[z_j | v_i]|``; average over
the levels to get ``EMPIDA_ij``, normalise by ``max_dev_j = max |z_j - mean z_j|`` and

    IRS_ij = 1 - EMPIDA_ij / max_dev_j,    score_j = max_i IRS_ij,
    IRS = sum_j max_dev_j score_j / sum_j max_dev_j      (over non-constant latents).

The factors are first discretised like the codes of the other metrics (20 equal-width
bins of the level indices, disentanglement_lib's ``make_discretizer(ys)``), which merges
adjacent levels of factors with more than 20 levels.

The score is computed from i.i.d. samples ``(codes, factors)``; :func:`compute_metrics`
draws them from a dataset through a representation function (10,000 points faithful).

Differences from disentanglement_lib (documented, deliberate): ``num_active_dims`` counts
non-constant latents (the same as disentanglement_lib here); with every latent constant the
score is 0, as there.

Directions: a duplicated latent keeps the score (each copy is as robust as the original);
a dead latent is dropped (no change); a noise latent scores near 0 and lowers the average in
proportion to its range.
"""

from __future__ import annotations

import numpy as np

from vaelens.errors import ConfigError
from vaelens.metrics.disentanglement._utils import check_codes_factors, histogram_discretize

__all__ = ["irs", "irs_matrix"]


def irs_matrix(
    codes: np.ndarray, factors: np.ndarray, diff_quantile: float = 0.99
) -> tuple[np.ndarray, np.ndarray]:
    """``(IRS matrix (D, F), max_deviations (D,))`` of codes against (discretised) factors."""
    z, g = check_codes_factors(codes, factors)
    if not 0.0 < diff_quantile <= 1.0:
        raise ConfigError(f"diff_quantile: expected a value in (0, 1], got {diff_quantile}")
    max_dev = np.max(np.abs(z - z.mean(axis=0)), axis=0)
    cum = np.zeros((z.shape[1], g.shape[1]))
    for i in range(g.shape[1]):
        levels = np.unique(g[:, i])
        for lv in levels:
            zm = z[g[:, i] == lv]
            diffs = np.abs(zm - zm.mean(axis=0))
            cum[:, i] += np.quantile(diffs, q=diff_quantile, axis=0)
        cum[:, i] /= levels.size
    with np.errstate(divide="ignore", invalid="ignore"):
        mat = 1.0 - cum / max_dev[:, None]
    return mat, max_dev


def irs(
    codes: np.ndarray, factors: np.ndarray, *, diff_quantile: float = 0.99, num_bins: int = 20
) -> dict[str, float]:
    """Interventional robustness score of codes ``(N, D)`` against integer factors ``(N, F)``.

    Returns ``irs`` (in [0, 1]) and ``num_active_dims`` (non-constant latents).
    """
    z, g = check_codes_factors(codes, factors)
    active = z.var(axis=0) > 0.0
    if not active.any():
        return {"irs": 0.0, "num_active_dims": 0}
    mat, max_dev = irs_matrix(
        z[:, active], histogram_discretize(g.astype(np.float64), num_bins), diff_quantile
    )
    scores = mat.max(axis=1)
    score = np.average(scores, weights=max_dev) if max_dev.sum() > 0 else float(np.mean(scores))
    return {"irs": float(score), "num_active_dims": int(active.sum())}
