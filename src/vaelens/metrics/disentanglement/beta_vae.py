"""BetaVAE score (Higgins et al., ICLR 2017), as disentanglement_lib computes it.

One training point: pick a factor ``k`` uniformly; sample two batches of ``batch_size``
(64) factor vectors that agree on ``k`` row by row (the others free); the point is
``mean_b |z1_b - z2_b|`` (a ``(D,)`` vector) with label ``k``. A logistic regression is
fitted on ``num_train`` (10,000) points and scored on ``num_eval`` (5,000) fresh ones.

Differences from disentanglement_lib (documented, deliberate):

* ``LogisticRegression(max_iter=1000)`` with today's sklearn defaults (lbfgs, multinomial);
  disentanglement_lib ran sklearn 0.20's defaults (liblinear, one-vs-rest) and 100 iterations.
* Only factors with at least two levels are labels (a one-level factor is always shared).
* Batches are encoded several per call of the representation function (same numbers).

Directions: a duplicated latent adds no information (no change); a dead latent is an
all-zero feature (no change); a noise latent adds an uninformative feature (little change).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from vaelens.metrics.disentanglement._utils import (
    RandomState,
    ReprFn,
    as_generator,
    encode,
    seed_from,
)
from vaelens.metrics.disentanglement.factor_vae import _check_positive, _votable_factors

__all__ = ["beta_vae_points", "beta_vae_score"]


def beta_vae_points(
    repr_fn: ReprFn,
    dataset: Any,
    num_points: int,
    rng: np.random.Generator,
    batch_size: int = 64,
    points_per_call: int = 8,
) -> tuple[np.ndarray, np.ndarray]:
    """``(features (num_points, D), labels (num_points,))`` of the BetaVAE protocol."""
    votable = _votable_factors(dataset)
    feats, labels = [], []
    done = 0
    while done < num_points:
        m = min(points_per_call, num_points - done)
        ks = votable[rng.integers(0, votable.size, size=m)]
        f1, f2 = [], []
        for k in ks:
            a = np.asarray(dataset.sample_factors(batch_size, rng), dtype=np.int64)
            b = np.asarray(dataset.sample_factors(batch_size, rng), dtype=np.int64)
            b[:, k] = a[:, k]
            f1.append(a)
            f2.append(b)
        both = np.concatenate([np.concatenate(f1), np.concatenate(f2)])
        z = encode(repr_fn, dataset.images(both), 2 * m * batch_size)
        z1, z2 = z[: m * batch_size], z[m * batch_size :]
        feats.append(np.abs(z1 - z2).reshape(m, batch_size, -1).mean(axis=1))
        labels.append(ks)
        done += m
    return np.concatenate(feats), np.concatenate(labels)


def beta_vae_score(
    repr_fn: ReprFn,
    dataset: Any,
    *,
    random_state: RandomState = 0,
    batch_size: int = 64,
    num_train: int = 10_000,
    num_eval: int = 5_000,
    points_per_call: int = 8,
) -> dict[str, float]:
    """BetaVAE score of ``repr_fn`` on ``dataset``: ``train_accuracy``, ``eval_accuracy``."""
    _check_positive(
        batch_size=batch_size,
        num_train=num_train,
        num_eval=num_eval,
        points_per_call=points_per_call,
    )
    rng = as_generator(random_state)
    x, y = beta_vae_points(repr_fn, dataset, num_train, rng, batch_size, points_per_call)
    xe, ye = beta_vae_points(repr_fn, dataset, num_eval, rng, batch_size, points_per_call)
    if np.unique(y).size < 2:
        acc = float(np.mean(ye == y[0]))
        return {"train_accuracy": 1.0, "eval_accuracy": acc}
    model = LogisticRegression(max_iter=1000, random_state=seed_from(rng))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x, y)
    return {
        "train_accuracy": float(model.score(x, y)),
        "eval_accuracy": float(model.score(xe, ye)),
    }
