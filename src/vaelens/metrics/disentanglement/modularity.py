"""Modularity and explicitness (Ridgeway & Mozer, NeurIPS 2018), as disentanglement_lib.

Modularity: with ``m_ik = I(discretised z_i; v_k)`` (20 equal-width bins) and
``theta_i = max_k m_ik``,

    delta_i = (sum_k m_ik^2 - theta_i^2) / (theta_i^2 (F - 1)),   modularity_i = 1 - delta_i,

averaged over latents. A latent with zero MI to every factor (a dead latent) scores 0, as
in disentanglement_lib, so dead latents pull modularity *down*.

Explicitness: per factor, a ``LogisticRegression()`` (sklearn defaults) on the
standardised codes predicts the factor; the score is the macro ROC-AUC of its predicted
probabilities (one-vs-rest), averaged over factors, on train and test points.

Differences from disentanglement_lib (documented, deliberate):

* A constant latent is standardised with scale 1 instead of 0 (disentanglement_lib divides
  by zero and the classifier fails on NaN).
* The test labels are binarised against the classifier's training classes, and classes
  absent from the test points are left out of the AUC (disentanglement_lib fits a fresh
  ``MultiLabelBinarizer`` on the test labels and fails when a class is missing).
* A factor with a single training level is left out of explicitness and of the MI matrix
  (``num_skipped_factors``); with a single remaining factor modularity is 1 by definition
  (disentanglement_lib divides by ``F - 1 = 0``).
* Logistic regression uses today's sklearn defaults (lbfgs, multinomial) with
  ``max_iter=1000``; disentanglement_lib ran the defaults of sklearn 0.20 (liblinear, OvR).
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from vaelens.errors import ConfigError
from vaelens.metrics.disentanglement._utils import (
    RandomState,
    as_generator,
    check_codes_factors,
    discrete_mutual_info,
    histogram_discretize,
    resolve_test_split,
    varying_factors,
)

__all__ = ["explicitness_per_factor", "modularity", "modularity_explicitness", "modularity_score"]


def modularity_score(mutual_information: np.ndarray) -> float:
    """Mean modularity ``1 - delta_i`` of an MI matrix ``(D, F)`` (see module docstring)."""
    m = np.asarray(mutual_information, dtype=np.float64)
    if m.ndim != 2 or m.size == 0 or not np.isfinite(m).all():
        raise ConfigError(
            f"mutual_information: expected a finite (D, F) matrix, got shape {m.shape}"
        )
    sq = np.square(m)
    theta = sq.max(axis=1)
    dead = theta == 0.0
    if m.shape[1] == 1:
        per = np.ones(m.shape[0])
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            per = 1.0 - (sq.sum(axis=1) - theta) / (theta * (m.shape[1] - 1.0))
    per[dead] = 0.0
    return float(np.mean(per))


def explicitness_per_factor(
    x: np.ndarray, y: np.ndarray, xt: np.ndarray, yt: np.ndarray, seed: int
) -> tuple[float, float]:
    """Train/test macro ROC-AUC of a logistic regression predicting ``y`` from ``x``."""
    clf = LogisticRegression(max_iter=1000, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x, y)
    return _auc(clf, x, y), _auc(clf, xt, yt)


def _auc(clf: LogisticRegression, x: np.ndarray, y: np.ndarray) -> float:
    proba = clf.predict_proba(x)
    classes = clf.classes_
    onehot = y[:, None] == classes[None, :]
    cols = [c for c in range(classes.size) if 0 < onehot[:, c].sum() < y.size]
    if not cols:
        return float("nan")
    if classes.size == 2:  # binary: one AUC, on the positive class
        return float(roc_auc_score(onehot[:, 1], proba[:, 1]))
    return float(np.mean([roc_auc_score(onehot[:, c], proba[:, c]) for c in cols]))


def modularity(codes: np.ndarray, factors: np.ndarray, *, num_bins: int = 20) -> float:
    """Modularity of codes ``(N, D)`` against integer factors ``(N, F)`` (deterministic)."""
    c, f = check_codes_factors(codes, factors)
    keep = varying_factors(f)
    if not keep.any():
        raise ConfigError("factors: every factor takes a single level; modularity is undefined")
    return modularity_score(discrete_mutual_info(histogram_discretize(c, num_bins), f[:, keep]))


def modularity_explicitness(
    codes: np.ndarray,
    factors: np.ndarray,
    codes_test: np.ndarray | None = None,
    factors_test: np.ndarray | None = None,
    *,
    num_bins: int = 20,
    random_state: RandomState = 0,
) -> dict[str, float]:
    """``modularity``, ``explicitness_train``, ``explicitness_test`` and ``num_skipped_factors``.

    Modularity uses the training points; explicitness trains on ``codes`` and tests on
    ``codes_test`` (a random 1/3 of ``codes`` held out when not given).
    """
    rng = as_generator(random_state)
    x, y, xt, yt = resolve_test_split(codes, factors, codes_test, factors_test, rng)
    keep = varying_factors(y)
    if not keep.any():
        raise ConfigError("factors: every factor takes a single level; modularity is undefined")
    mod = modularity_score(discrete_mutual_info(histogram_discretize(x, num_bins), y[:, keep]))
    mean, std = x.mean(axis=0), x.std(axis=0)
    std[std == 0.0] = 1.0
    xn, xtn = (x - mean) / std, (xt - mean) / std
    tr, te = [], []
    for k in np.flatnonzero(keep):
        a, b = explicitness_per_factor(xn, y[:, k], xtn, yt[:, k], int(rng.integers(2**31 - 1)))
        tr.append(a)
        te.append(b)
    return {
        "modularity": mod,
        "explicitness_train": float(np.nanmean(tr)),
        "explicitness_test": float(np.nanmean(te)) if not np.all(np.isnan(te)) else float("nan"),
        "num_skipped_factors": int((~keep).sum()),
    }
