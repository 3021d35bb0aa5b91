"""FactorVAE score (Kim & Mnih, ICML 2018), as disentanglement_lib computes it.

1. Global variances ``s_d^2`` of each latent over ``num_variance_estimate`` (10,000) encoded
   samples (``ddof=1``). Latents with ``sqrt(s_d^2) < prune_threshold`` (0.05) are inactive.
2. A *vote*: pick a factor ``k`` uniformly, sample ``batch_size`` (64) factor vectors that
   all share one level of ``k`` (the others free), encode, and vote
   ``(k, argmin_d Var_local(z_d) / s_d^2)`` over the active latents (``ddof=1``).
3. ``num_train`` (10,000) votes fill a (factor x latent) count table; the classifier maps
   each latent to its majority factor; the score is the fraction of ``num_eval`` (5,000)
   fresh votes it classifies correctly (``eval_accuracy``).

Differences from disentanglement_lib (documented, deliberate):

* ``prune_threshold`` defaults to 0.05, the value of the study configs; disent hard-codes
  0 (and disentanglement_lib's function default is 0), which keeps dead latents active:
  their ratio 0/0 or 0/tiny wins the argmin and one dead latent drops an oracle from 1.0
  to about 0.27.
* ``num_active_dims`` is the number of active latents; both peers report the mask's length.
* Only factors with at least two levels are voted on (fixing a one-level factor changes
  nothing, so its votes are noise); a dataset whose factors all have one level raises.
* Votes are encoded many batches per call of the representation function (same numbers,
  fewer calls); random numbers come from a numpy ``Generator``.
* With no active latent the scores are 0, as in disentanglement_lib.

Directions: a dead latent is pruned (no change); a duplicated latent splits its factor's
votes between two latents, both mapped to the same factor (no change); a noise latent
never has the smallest normalised variance (no change).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vaelens.errors import ConfigError
from vaelens.metrics.disentanglement._utils import (
    RandomState,
    ReprFn,
    as_generator,
    encode,
    sample_codes,
)

__all__ = ["factor_vae_score", "fixed_factor_batches"]


def _check_positive(**kwargs: Any) -> None:
    for name, value in kwargs.items():
        if not isinstance(value, int | np.integer) or value < 1:
            raise ConfigError(f"{name}: expected a positive int, got {value!r}")


def _votable_factors(dataset: Any) -> np.ndarray:
    sizes = np.asarray(dataset.factor_sizes)
    votable = np.flatnonzero(sizes > 1)
    if votable.size == 0:
        raise ConfigError(
            f"dataset {getattr(dataset, 'name', '?')}: every factor has a single level"
        )
    return votable


def fixed_factor_batches(
    dataset: Any, ks: np.ndarray, batch_size: int, rng: np.random.Generator
) -> np.ndarray:
    """Factor vectors ``(len(ks), batch_size, F)``: batch ``b`` shares one level of factor ``ks[b]``.

    Each batch is ``dataset.sample_factors(batch_size, rng)`` with factor ``ks[b]`` set to
    its value in the batch's first row (disentanglement_lib's sampling).
    """
    out = []
    for k in ks:
        f = np.asarray(dataset.sample_factors(batch_size, rng), dtype=np.int64)
        f[:, k] = f[0, k]
        out.append(f)
    return np.stack(out)


def _votes(
    repr_fn: ReprFn,
    dataset: Any,
    num_points: int,
    batch_size: int,
    rng: np.random.Generator,
    global_var: np.ndarray,
    active: np.ndarray,
    votes_per_call: int,
) -> np.ndarray:
    votable = _votable_factors(dataset)
    idx_active = np.flatnonzero(active)
    table = np.zeros((len(dataset.factor_sizes), global_var.size), dtype=np.int64)
    done = 0
    while done < num_points:
        m = min(votes_per_call, num_points - done)
        ks = votable[rng.integers(0, votable.size, size=m)]
        fac = fixed_factor_batches(dataset, ks, batch_size, rng)
        imgs = dataset.images(fac.reshape(-1, fac.shape[-1]))
        z = encode(repr_fn, imgs, batch_size * m).reshape(m, batch_size, -1)
        local = z.var(axis=1, ddof=1)[:, idx_active] / global_var[idx_active]
        dims = idx_active[np.argmin(local, axis=1)]
        np.add.at(table, (ks, dims), 1)
        done += m
    return table


def factor_vae_score(
    repr_fn: ReprFn,
    dataset: Any,
    *,
    random_state: RandomState = 0,
    batch_size: int = 64,
    num_train: int = 10_000,
    num_eval: int = 5_000,
    num_variance_estimate: int = 10_000,
    prune_threshold: float = 0.05,
    votes_per_call: int = 16,
) -> dict[str, float]:
    """FactorVAE score of ``repr_fn`` (images ``(N,C,H,W)`` -> codes ``(N,D)``) on ``dataset``.

    Returns ``train_accuracy``, ``eval_accuracy`` (the score) and ``num_active_dims``.
    ``dataset`` follows :class:`vaelens.data.base.GroundTruthDataset`.
    """
    _check_positive(
        num_train=num_train,
        num_eval=num_eval,
        num_variance_estimate=num_variance_estimate,
        votes_per_call=votes_per_call,
    )
    if not isinstance(batch_size, int | np.integer) or batch_size < 2:
        raise ConfigError(
            f"batch_size: expected an int >= 2 (a variance needs 2 points), got {batch_size!r}"
        )
    if num_variance_estimate < 2:
        raise ConfigError("num_variance_estimate: expected at least 2 points")
    if not prune_threshold >= 0.0:
        raise ConfigError(f"prune_threshold: expected a value >= 0, got {prune_threshold}")
    rng = as_generator(random_state)
    _votable_factors(dataset)
    codes, _ = sample_codes(repr_fn, dataset, num_variance_estimate, rng, batch_size)
    global_var = codes.var(axis=0, ddof=1)
    active = np.sqrt(global_var) >= prune_threshold
    active &= global_var > 0.0  # a zero variance cannot normalise (0/0)
    if not active.any():
        return {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0}
    args = (repr_fn, dataset)
    train = _votes(*args, num_train, batch_size, rng, global_var, active, votes_per_call)
    classifier = np.argmax(train, axis=0)
    cols = np.arange(train.shape[1])
    ev = _votes(*args, num_eval, batch_size, rng, global_var, active, votes_per_call)
    return {
        "train_accuracy": float(train[classifier, cols].sum() / train.sum()),
        "eval_accuracy": float(ev[classifier, cols].sum() / ev.sum()),
        "num_active_dims": int(active.sum()),
    }
