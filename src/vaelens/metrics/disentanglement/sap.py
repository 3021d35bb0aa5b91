"""Separated Attribute Predictability (Kumar et al., ICLR 2018), as disentanglement_lib.

A score matrix ``S`` (latents x factors) and ``SAP = mean_k (S_(1)k - S_(2)k)``, the gap
between the best and second-best latent for each factor.

* Discrete mode (disentanglement_lib's default): ``S_ik`` is the test accuracy of a
  ``LinearSVC(C=0.01, class_weight="balanced")`` trained on latent ``i`` alone to predict
  factor ``k``. Even an oracle scores low with many classes (a linear classifier on one
  dimension cannot carve 40 intervals).
* Continuous mode: ``S_ik = Cov(z_i, v_k)^2 / (Var z_i Var v_k)`` (the R^2 of a linear fit)
  on the training points; a latent with variance below 1e-12 scores 0.

Differences from disentanglement_lib (documented, deliberate):

* A factor with a single training level is left out (LinearSVC raises; R^2 is 0/0) and
  counted in ``num_skipped_factors``.
* With a single latent the second-best score is 0.
* ``LinearSVC`` uses today's ``dual="auto"`` (primal solver here); the optimum is the
  same as disentanglement_lib's dual solver up to solver tolerance.

Directions: a duplicated latent drives its factor's gap to 0; a dead latent scores at
chance (discrete) or 0 (continuous) and changes nothing unless it is the runner-up.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.svm import LinearSVC

from vaelens.errors import ConfigError
from vaelens.metrics.disentanglement._utils import (
    RandomState,
    as_generator,
    check_codes_factors,
    resolve_test_split,
    seed_from,
    varying_factors,
)

__all__ = ["sap", "sap_score_matrix"]


def sap_score_matrix(
    codes: np.ndarray,
    factors: np.ndarray,
    codes_test: np.ndarray | None = None,
    factors_test: np.ndarray | None = None,
    *,
    continuous: bool = False,
    random_state: RandomState = 0,
) -> np.ndarray:
    """Score matrix ``(D, F)``; single-level factors get a NaN column."""
    rng = as_generator(random_state)
    if continuous:
        x, y = check_codes_factors(codes, factors)
        xt = yt = None
    else:
        x, y, xt, yt = resolve_test_split(codes, factors, codes_test, factors_test, rng)
    keep = varying_factors(y)
    s = np.full((x.shape[1], y.shape[1]), np.nan)
    for k in range(y.shape[1]):
        if not keep[k]:
            continue
        for i in range(x.shape[1]):
            if continuous:
                cov = np.cov(x[:, i], y[:, k], ddof=1)
                var_z, var_y = cov[0, 0], cov[1, 1]
                s[i, k] = cov[0, 1] ** 2 / (var_z * var_y) if var_z > 1e-12 else 0.0
            else:
                clf = LinearSVC(C=0.01, class_weight="balanced", random_state=seed_from(rng))
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    clf.fit(x[:, i : i + 1], y[:, k])
                s[i, k] = np.mean(clf.predict(xt[:, i : i + 1]) == yt[:, k])
    return s


def sap(
    codes: np.ndarray,
    factors: np.ndarray,
    codes_test: np.ndarray | None = None,
    factors_test: np.ndarray | None = None,
    *,
    continuous: bool = False,
    random_state: RandomState = 0,
) -> dict[str, float]:
    """SAP score of codes ``(N, D)`` against integer factors ``(N, F)``.

    Returns ``sap`` and ``num_skipped_factors``. Discrete mode trains on ``codes`` and
    tests on ``codes_test`` (a random 1/3 of ``codes`` when not given).
    """
    s = sap_score_matrix(
        codes,
        factors,
        codes_test,
        factors_test,
        continuous=continuous,
        random_state=random_state,
    )
    keep = ~np.isnan(s[0])
    if not keep.any():
        raise ConfigError("factors: every factor takes a single level; SAP is undefined")
    srt = np.sort(s[:, keep], axis=0)[::-1]
    second = srt[1] if srt.shape[0] > 1 else np.zeros(srt.shape[1])
    return {"sap": float(np.mean(srt[0] - second)), "num_skipped_factors": int((~keep).sum())}
