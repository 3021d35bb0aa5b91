"""DCI: disentanglement, completeness and informativeness (Eastwood & Williams, ICLR 2018).

One classifier per factor predicts the factor's level from all codes; its feature
importances fill column ``j`` of the importance matrix ``R`` (codes x factors).

* Disentanglement ``D = sum_i rho_i (1 - H_K(P_i))`` with ``P_i = R_i / sum_k R_ik`` code
  ``i``'s importances over the ``K`` factors (entropy base ``K``, ``+1e-11`` before
  normalising, as disentanglement_lib) and ``rho_i = sum_k R_ik / sum R``.
* Completeness ``C = sum_j rho_j (1 - H_D(P_.j))``, the same per factor with base ``D``
  (number of codes).
* Informativeness: the classifier's mean accuracy on train and test points.

Estimators:

* ``"gbt"`` (faithful): ``sklearn.ensemble.GradientBoostingClassifier()`` with default
  hyperparameters on the raw codes, ``R[:, j] = |feature_importances_|``, as
  disentanglement_lib and disent. Slow with many classes: 299 s on a shared 2-core
  machine at 10,000/5,000 points with dSprites' factor sizes and 10 latents.
* ``"gbt-hist"`` (fast, the ``fast`` preset): the same boosting algorithm as ``"gbt"``,
  with its trees grown by LightGBM's histogram learner. sklearn's multiclass gradient
  boosting fits, per stage and class ``k``, a depth-3 least-squares regression tree to the
  negative gradient ``r_k = y_k - p_k`` of the multinomial deviance, sets each leaf to the
  Newton step ``(K-1)/K * sum(r_k) / sum(p_k (1 - p_k))`` (binary: one tree,
  ``sum(r) / sum(p (1 - p))``), adds ``0.1 *`` that to the raw scores, and credits every
  split with its impurity decrease ``G_L^2/n_L + G_R^2/n_R - G^2/n`` (``G`` = sum of
  ``r_k`` in the node). LightGBM fed the gradient ``-r_k`` with unit hessians and no
  penalty chooses its splits by, and records as their gain, exactly that decrease; the
  Newton leaf values are computed here from the trees' leaf assignments and the raw scores
  kept here. Only the split candidates can differ: up to 2,048 training points every
  distinct value gets its own bin, so the candidates are sklearn's midpoints; above, 127
  quantile bins per code (exact candidates would then cost more than the estimator
  saves). With exact candidates the raw scores equal sklearn's to rounding, except where
  two splits tie to float32 precision (LightGBM's gradients are float32) and the fits take
  different but equally good paths. sklearn breaks exact ties (two codes inducing the
  same partition) in a random code order drawn at every node, LightGBM by the lower
  column; here each stage is grown on one of 8 boosters whose datasets hold the codes in
  different random orders, so tied codes share the credit across stages. Binning moves D
  either way, depending on the codes: on the benchmark bank at 10,000 points fewer bins
  raise D on noisy codes and lower it on nonlinear ones. 127 bins gave the smallest
  worst-case |delta D| on two draws of the bank (0.034 and 0.035; 0.050 with LightGBM's
  default 255, 0.039 with 63). Measured figures: docs/metrics.md.
* ``"lightgbm"``: LightGBM's own boosting (Newton splits weighted by the hessians
  ``p(1 - p)``, gain importance), same tree shape and rounds, ``min_child_weight=0.1``,
  ``min_data_in_bin=1``. Kept for comparison only: its hessian-weighted gains overstate
  disentanglement on entangled codes (rotated oracle at 10,000/5,000 points: D 0.367
  against the faithful 0.279).

Differences from disentanglement_lib (documented, deliberate):

* The classifier gets a ``random_state`` drawn from ours (disentanglement_lib leaves it
  ``None``, so its D/C vary slightly from run to run through tie-breaking).
* A factor that takes a single level in the training points cannot be classified
  (sklearn raises); it is left out of D, C and informativeness, and reported in
  ``num_skipped_factors``.
* With a single (varying) factor ``H_1`` is undefined (log base 1); every code is then
  dedicated to it and its per-code disentanglement is defined as 1. With a single code,
  per-factor completeness is 1 likewise.
* Factor levels are label-encoded from the training points; a test level never seen in
  training counts as a misclassification.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import scipy.stats
from sklearn.ensemble import GradientBoostingClassifier

from vaelens.errors import ConfigError
from vaelens.metrics.disentanglement._utils import (
    RandomState,
    as_generator,
    resolve_test_split,
    seed_from,
    varying_factors,
)

__all__ = [
    "DCI_ESTIMATORS",
    "completeness",
    "dci",
    "disentanglement",
    "importance_matrix",
]

DCI_ESTIMATORS = ("gbt", "gbt-hist", "lightgbm")


def _fit_gbt(x: np.ndarray, y: np.ndarray, seed: int) -> Any:
    model = GradientBoostingClassifier(random_state=seed)
    model.fit(x, y)
    return model, np.abs(model.feature_importances_), model.predict(x)


def _import_lightgbm() -> Any:
    try:
        import lightgbm
    except ImportError as exc:  # pragma: no cover - lightgbm is a core dependency
        raise ConfigError(
            "DCI's fast estimators need the lightgbm package (pip install lightgbm)"
        ) from exc
    return lightgbm


EXACT_BINS_UP_TO = 2048
HIST_BINS = 127  # above EXACT_BINS_UP_TO; chosen on the benchmark bank (docs/metrics.md)


class _HistGBT:
    """sklearn's ``GradientBoostingClassifier()`` algorithm on LightGBM histogram trees.

    Defaults as sklearn's: 100 stages, learning rate 0.1, depth 3, one point per leaf.
    ``max_bin`` caps the split candidates per code. ``None`` (default): one bin per
    distinct value up to ``EXACT_BINS_UP_TO`` training points, so the splits are sklearn's
    exact ones, and ``HIST_BINS`` quantile bins above, where exact candidates would cost
    more than the faithful estimator saves. With at least as many bins as distinct values
    the fit equals sklearn's up to split ties.
    """

    n_estimators = 100
    learning_rate = 0.1
    max_leaves = 8  # depth 3
    n_orders = 8  # code orders (boosters) among which each stage picks one at random

    def __init__(self, seed: int, max_bin: int | None = None) -> None:
        self.seed = seed
        self.max_bin = max_bin

    def fit(self, x: np.ndarray, y: np.ndarray) -> _HistGBT:
        """Fit to codes ``x`` ``(N, D)`` and labels ``y`` ``(N,)`` in ``0..K-1``."""
        lightgbm = _import_lightgbm()
        n, n_codes = x.shape
        n_classes = int(y.max()) + 1
        self.binary = n_classes == 2
        self.kt = 1 if self.binary else n_classes  # trees per stage
        # Ties between codes go to the lowest column in LightGBM; sklearn breaks them in a
        # random code order drawn at every node. Grow each stage on one of several boosters
        # whose datasets hold the codes in different random orders, so that tied codes
        # share the credit across stages as they do in sklearn.
        rng = np.random.default_rng(self.seed)
        # with no varying code nothing can split anywhere: the prior is the model
        varies = bool((x.max(axis=0) > x.min(axis=0)).any())
        n_orders = min(self.n_orders, math.factorial(n_codes)) if varies else 0
        self.perms = [rng.permutation(n_codes) for _ in range(n_orders)]
        self.init, target = self._prior_scores(y, n_classes)
        xs = [np.ascontiguousarray(x[:, perm], dtype=np.float64) for perm in self.perms]
        self.boosters = self._make_boosters(lightgbm, xs, self._max_bin(n))
        raw, values, self.stages = self._boost(xs, target, rng)
        self.values = np.stack(values) if values else np.zeros((0, self.kt, self.max_leaves))
        # predictions on the training points, from the raw scores kept during the fit
        self.train_pred_ = self._decide(raw.T)
        self.feature_importances_ = self._importances(n_codes)
        return self

    def _max_bin(self, n: int) -> int:
        """Split candidates per code for ``n`` training points (see the class docstring)."""
        if self.max_bin is None:
            return max(n, 2) if n <= EXACT_BINS_UP_TO else HIST_BINS
        return self.max_bin

    def _prior_scores(self, y: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
        """sklearn's initial raw scores ``(kt,)`` (log prior odds) and one-hot targets ``(kt, N)``."""
        n = y.shape[0]
        prior = np.bincount(y, minlength=n_classes) / n
        target = np.zeros((self.kt, n))
        if self.binary:
            p1 = float(np.clip(prior[1], 1e-15, 1 - 1e-15))
            init = np.array([np.log(p1 / (1 - p1))])
            target[0] = y == 1
        else:
            log_prior = np.log(np.clip(prior, 1e-15, None))
            init = log_prior - log_prior.mean()
            target[y, np.arange(n)] = 1.0
        return init, target

    def _make_boosters(self, lightgbm: Any, xs: list[np.ndarray], max_bin: int) -> list[Any]:
        """One LightGBM booster a code order, fed custom gradients with unit hessians."""
        params = {
            "objective": "none",
            "num_class": self.kt,
            "num_leaves": self.max_leaves,
            "max_depth": 3,
            "learning_rate": 1.0,
            "min_data_in_leaf": 1,
            "min_sum_hessian_in_leaf": 0.0,
            "min_data_in_bin": 1,
            "min_gain_to_split": 0.0,
            "lambda_l1": 0.0,
            "lambda_l2": 0.0,
            "max_bin": max_bin,
            "num_threads": 1,
            "deterministic": True,
            "force_col_wise": True,
            "seed": self.seed,
            "verbose": -1,
        }
        data_params = {"max_bin": max_bin, "min_data_in_bin": 1, "verbose": -1}
        return [
            lightgbm.Booster(params=params, train_set=lightgbm.Dataset(xp, params=data_params))
            for xp in xs
        ]

    def _probabilities(self, raw: np.ndarray) -> np.ndarray:
        """Class probabilities from raw scores ``(kt, N)``: sigmoid (binary) or softmax."""
        if self.binary:
            return 1.0 / (1.0 + np.exp(-raw))
        p = np.exp(raw - raw.max(axis=0))
        p /= p.sum(axis=0)
        return p

    def _boost(
        self, xs: list[np.ndarray], target: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, list[np.ndarray], list[list[int]]]:
        """Grow the stages; returns the raw training scores ``(kt, N)``, the leaf values of
        each stage ``(kt, leaves)`` and, per booster, the stages it grew, in order."""
        kt, n = target.shape
        n_orders = len(self.boosters)
        raw = np.repeat(self.init[:, None], n, axis=1)  # (kt, N), class-major as LightGBM's
        grad = np.empty((kt, n), dtype=np.float32)
        hess = np.ones((kt, n), dtype=np.float32)
        # LightGBM takes (N,) for one tree per stage, else (N, kt) read in column order.
        grad_view, hess_view = (grad[0], hess[0]) if self.binary else (grad.T, hess.T)
        # stages[b]: the stages grown by booster b, in order (its iterations 0, 1, ...)
        stages: list[list[int]] = [[] for _ in self.boosters]
        offsets = (np.arange(kt) * self.max_leaves)[:, None]
        values = []
        for stage in range(self.n_estimators if n_orders else 0):
            b = int(rng.integers(n_orders))
            p = self._probabilities(raw)
            resid = target - p
            np.negative(resid, out=grad, casting="same_kind")
            if self.boosters[b].update(fobj=lambda _preds, _data: (grad_view, hess_view)):
                break  # no code can split any node: sklearn's later stages change nothing
            leaves = self.boosters[b].predict(
                xs[b], pred_leaf=True, start_iteration=len(stages[b]), num_iteration=1
            )
            stages[b].append(stage)
            key = (np.asarray(leaves).reshape(n, kt).T + offsets).ravel()
            step = self._newton_step(key, resid, p)
            values.append(step.reshape(kt, self.max_leaves))
            raw += self.learning_rate * step[key].reshape(kt, n)
        return raw, values, stages

    def _newton_step(self, key: np.ndarray, resid: np.ndarray, p: np.ndarray) -> np.ndarray:
        """sklearn's Newton leaf values ``(kt * leaves,)`` for the points' leaf keys ``key``."""
        size = self.kt * self.max_leaves
        num = np.bincount(key, weights=resid.ravel(), minlength=size)
        den = np.bincount(key, weights=(p * (1.0 - p)).ravel(), minlength=size)
        if not self.binary:
            num *= (self.kt - 1) / self.kt
        # sklearn's _safe_divide: a leaf whose mean hessian is below 1e-150 gets 0
        cnt = np.bincount(key, minlength=size)
        ok = (cnt > 0) & (np.abs(den) >= 1e-150 * cnt)
        return np.where(ok, num / np.where(ok, den, 1.0), 0.0)

    def _importances(self, n_codes: int) -> np.ndarray:
        """Split gains summed over the boosters per code, normalised to sum 1 (if any)."""
        imp = np.zeros(n_codes)
        for booster, perm, grown in zip(self.boosters, self.perms, self.stages, strict=True):
            if grown:
                imp[perm] += booster.feature_importance(importance_type="gain")
        total = imp.sum()
        return imp / total if total > 0 else imp

    def raw_predict(self, x: np.ndarray, chunk: int = 20) -> np.ndarray:
        """Raw scores ``(N, kt)``: init plus 0.1 times the Newton values of the leaves."""
        n = x.shape[0]
        raw = np.repeat(self.init[None, :], n, axis=0)
        cls = np.arange(self.kt)[None, None, :]
        for booster, perm, grown in zip(self.boosters, self.perms, self.stages, strict=True):
            xb = np.ascontiguousarray(x[:, perm], dtype=np.float64)
            for start in range(0, len(grown), chunk):
                m = min(chunk, len(grown) - start)
                leaves = booster.predict(xb, pred_leaf=True, start_iteration=start, num_iteration=m)
                leaves = np.asarray(leaves).reshape(n, m, self.kt)
                vals = self.values[grown[start : start + m]]
                raw += self.learning_rate * vals[np.arange(m)[None, :, None], cls, leaves].sum(1)
        return raw

    def _decide(self, raw: np.ndarray) -> np.ndarray:
        """Class labels from raw scores ``(N, kt)``, as sklearn's ``predict``."""
        if self.binary:
            return (raw[:, 0] > 0).astype(np.int64)
        return raw.argmax(axis=1)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self._decide(self.raw_predict(x))


def _fit_gbt_hist(x: np.ndarray, y: np.ndarray, seed: int) -> Any:
    model = _HistGBT(seed).fit(x, y)
    return model, model.feature_importances_, model.train_pred_


def _fit_lightgbm(x: np.ndarray, y: np.ndarray, seed: int) -> Any:
    lightgbm = _import_lightgbm()
    model = lightgbm.LGBMClassifier(
        n_estimators=100,
        learning_rate=0.1,
        num_leaves=8,
        max_depth=3,
        min_child_samples=1,
        min_child_weight=0.1,
        min_data_in_bin=1,
        reg_lambda=0.0,
        subsample=1.0,
        colsample_bytree=1.0,
        importance_type="gain",
        random_state=seed,
        n_jobs=1,
        deterministic=True,
        force_col_wise=True,
        verbose=-1,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model.fit(x, y)
    imp = np.abs(np.asarray(model.feature_importances_, dtype=np.float64))
    total = imp.sum()
    return model, imp / total if total > 0 else imp, model.predict(x)


# name -> fit(x, y, seed) returning (model, importances, predictions on x)
_FITTERS = {"gbt": _fit_gbt, "gbt-hist": _fit_gbt_hist, "lightgbm": _fit_lightgbm}


def importance_matrix(
    codes: np.ndarray,
    factors: np.ndarray,
    codes_test: np.ndarray | None = None,
    factors_test: np.ndarray | None = None,
    *,
    estimator: str = "gbt",
    random_state: RandomState = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Importance matrix ``R`` ``(D, F)`` and per-factor train/test accuracies ``(F,)``.

    Column ``j`` holds the (non-negative, summing to 1 unless the classifier made no
    split) importances of the codes for predicting factor ``j``. Factors with a single
    training level get a zero column and NaN accuracies. Without test arrays the points
    are split 2/3 train, 1/3 test at random.
    """
    if estimator not in _FITTERS:
        raise ConfigError(f"estimator: expected one of {DCI_ESTIMATORS}, got {estimator!r}")
    rng = as_generator(random_state)
    x, y, xt, yt = resolve_test_split(codes, factors, codes_test, factors_test, rng)
    n_codes, n_factors = x.shape[1], y.shape[1]
    r = np.zeros((n_codes, n_factors))
    acc_train = np.full(n_factors, np.nan)
    acc_test = np.full(n_factors, np.nan)
    keep = varying_factors(y)
    for j in range(n_factors):
        if not keep[j]:
            continue
        classes, y_enc = np.unique(y[:, j], return_inverse=True)
        model, imp, pred_train = _FITTERS[estimator](x, y_enc, seed_from(rng))
        r[:, j] = imp
        acc_train[j] = np.mean(classes[pred_train] == y[:, j])
        acc_test[j] = np.mean(classes[model.predict(xt)] == yt[:, j])
    return r, acc_train, acc_test


def _per_row_score(p: np.ndarray) -> np.ndarray:
    """``1 - H_K(p_row)`` for each row of ``p`` ``(rows, K)``; 1 when ``K == 1``."""
    k = p.shape[1]
    if k == 1:
        return np.ones(p.shape[0])
    return 1.0 - scipy.stats.entropy(p.T + 1e-11, base=k)


def disentanglement(r: np.ndarray) -> float:
    """``D = sum_i rho_i (1 - H_K(P_i))`` of an importance matrix ``R`` (codes x factors).

    An all-zero ``R`` scores 0 (every code weighted equally, each uniform over factors),
    as in disentanglement_lib.
    """
    r = np.asarray(r, dtype=np.float64)
    if r.ndim != 2 or r.size == 0 or (r < 0).any() or not np.isfinite(r).all():
        raise ConfigError(
            f"r: expected a finite non-negative (codes, factors) matrix, got shape {r.shape}"
        )
    per_code = _per_row_score(r if r.sum() > 0 else np.ones_like(r))
    if r.sum() == 0.0:
        r = np.ones_like(r)
    rho = r.sum(axis=1) / r.sum()
    return float(np.sum(per_code * rho))


def completeness(r: np.ndarray) -> float:
    """``C = sum_j rho_j (1 - H_D(P_.j))``: :func:`disentanglement` of ``R`` transposed."""
    return disentanglement(np.asarray(r, dtype=np.float64).T)


def dci(
    codes: np.ndarray,
    factors: np.ndarray,
    codes_test: np.ndarray | None = None,
    factors_test: np.ndarray | None = None,
    *,
    estimator: str = "gbt",
    random_state: RandomState = 0,
) -> dict[str, float]:
    """DCI scores of codes ``(N, D)`` against integer factors ``(N, F)``.

    Returns ``disentanglement``, ``completeness``, ``informativeness_train``,
    ``informativeness_test`` (mean accuracy over factors) and ``num_skipped_factors``.
    ``estimator="gbt"`` is disentanglement_lib's protocol; ``"gbt-hist"`` the same
    algorithm on histogram trees (fast); ``"lightgbm"`` LightGBM's own boosting (biased
    towards higher D on entangled codes; for comparison).

    Example: an oracle ``codes = factors + 0.05 * noise`` scores D = C = 1 (to about 0.01)
    and informativeness 1.
    """
    r, acc_train, acc_test = importance_matrix(
        codes, factors, codes_test, factors_test, estimator=estimator, random_state=random_state
    )
    keep = ~np.isnan(acc_train)
    if not keep.any():
        raise ConfigError("factors: every factor takes a single level; DCI is undefined")
    rk = r[:, keep]
    return {
        "disentanglement": disentanglement(rk),
        "completeness": completeness(rk),
        "informativeness_train": float(np.mean(acc_train[keep])),
        "informativeness_test": float(np.mean(acc_test[keep])),
        "num_skipped_factors": int((~keep).sum()),
    }
