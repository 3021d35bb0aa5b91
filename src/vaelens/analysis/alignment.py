"""Distributed alignment search per factor: is a factor encoded on a rotated ``k``-subspace?

:func:`alignment_search` draws, for each factor ``f``, ``n_train`` training pairs and then
``n_pairs`` held-out pairs ``(x, x')`` that differ only in ``f`` (:func:`vaelens.lens.
factor_pairs`, both from one ``numpy.random.default_rng(seed)`` stream, factor by factor), and
learns an orthogonal ``R`` of the variable space (the latent, or the channel axis of hook
point ``layer``) on the training pairs (:func:`vaelens.lens.fit_alignment`, seed ``seed +
f``)::

    a~ = a + P (a' - a),   P = R_k R_k^T  (R_k: the first k columns of R)
    loss = sum_n ||D~_n - D'_n||^2 / sum_n ||D'_n - D_n||^2     (Adam on R = Q0 expm(S - S^T))

with ``a = z(x)`` (latent) or ``A_l(x)`` (layer ``l``, the same rotation at every position),
``D = D(x)``, ``D' = D(x')``, ``D~`` the output run on from ``a~``. Scores, on the held-out
pairs (see :mod:`vaelens.lens.interchange`):

- ``share[f] = mean_n <D~_n - D_n, D'_n - D_n> / ||D'_n - D_n||^2`` over pairs with
  ``D'_n != D_n``, ``share_ci[f]`` its bootstrap interval (``n_boot`` resamples of pairs);
- ``accuracy[f] = sum_n (e0_n - e_n) / sum_n (e0_n - e1_n)`` with ``e``, ``e0``, ``e1`` the
  squared distances of ``D~``, ``D``, ``D'`` to the real image ``x'``;
- ``train_share[f]``: the share on the training pairs; ``final_loss[f]``: the mean loss of
  the last ``min(10, steps)`` steps;
- ``axis_share[f]``, ``axis_share_ci[f]``, ``axis_accuracy[f]``: the same held-out scores of
  the axis-aligned interchange of the best ``k`` units ``axis_units[f]`` (chosen on the
  training pairs, :func:`vaelens.lens.best_axis_units`: exhaustive over the ``C(d, k)`` sets
  up to ``max_sets`` of them, else greedy).

``share`` high and ``axis_share`` low: the factor is carried by a ``k``-dimensional subspace
that is not spanned by ``k`` units. NaN for a factor of one level or one that moves no
output.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from vaelens.analysis.result import Alignment
from vaelens.data import check_dataset
from vaelens.data.base import factor_index
from vaelens.errors import ArgumentError, DatasetError
from vaelens.lens import (
    Lens,
    best_axis_units,
    factor_pairs,
    fit_alignment,
    interchange,
    rotated_interchange,
    share_and_accuracy,
)
from vaelens.lens.alignment import alignment_width
from vaelens.lens.patching import resolve_max_batch

__all__ = ["ALIGNMENT_METHOD", "alignment_search"]

ALIGNMENT_METHOD = (
    "distributed alignment search: per factor, an orthogonal R = Q0 expm(S - S^T) of the "
    "latent (or of a layer's channel axis) learned with Adam on training pairs (x, x') "
    "differing in that factor; interchange a~ = a + R_k R_k^T (a' - a) (R_k: first k columns); "
    "loss = sum ||D~ - D(x')||^2 / sum ||D(x') - D(x)||^2; scored on held-out pairs: share = "
    "mean <D~ - D, D' - D> / ||D' - D||^2, accuracy = sum (e0 - e) / sum (e0 - e1) against the "
    "real x'; axis_share: the same for the best k units chosen on the training pairs"
)


def _int_at_least(arg: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ArgumentError(f"{arg}: expected an int >= {low}, got {value!r}")
    return value


def _check(n_pairs, n_train, steps, lr, batch_size, seed, n_boot, max_sets) -> None:
    _int_at_least("n_pairs", n_pairs, 2)
    _int_at_least("n_train", n_train, 2)
    _int_at_least("steps", steps, 1)
    if isinstance(lr, bool) or not isinstance(lr, int | float) or not math.isfinite(lr) or lr <= 0:
        raise ArgumentError(f"lr: expected a finite number > 0, got {lr!r}")
    _int_at_least("batch_size", batch_size, 1)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ArgumentError(f"seed: expected an int, got {seed!r}")
    _int_at_least("n_boot", n_boot, 1)
    _int_at_least("max_sets", max_sets, 1)


def _factor_list(ds, factors: object) -> list[int]:
    """``factors`` (None: all) as indices; one-line :class:`ArgumentError` naming ``factors``."""
    if factors is None:
        return list(range(len(ds.factor_names)))
    items = [factors] if isinstance(factors, str | int) else factors
    if not isinstance(items, Sequence) or not items:
        raise ArgumentError(f"factors: expected factor names or indices, got {factors!r}")
    out = []
    for f in items:
        if isinstance(f, bool) or not isinstance(f, str | int | np.integer):
            raise ArgumentError(f"factors: expected factor names or indices, got {f!r}")
        try:
            i = factor_index(ds, f)
        except DatasetError as err:
            raise ArgumentError(f"factors: {str(err).removeprefix('factor: ')}") from None
        if i not in out:
            out.append(i)
    return out


def _blank(n_f: int, d: int, k: int) -> dict[str, object]:
    nan = np.full(n_f, np.nan)
    return {
        "share": nan.copy(),
        "share_ci": np.full((n_f, 2), np.nan),
        "accuracy": nan.copy(),
        "train_share": nan.copy(),
        "final_loss": nan.copy(),
        "axis_share": nan.copy(),
        "axis_share_ci": np.full((n_f, 2), np.nan),
        "axis_accuracy": nan.copy(),
        "axis_units": [[] for _ in range(n_f)],
        "basis": np.full((n_f, d, k), np.nan),
    }


def _scores(res, n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(share (3,), accuracy (3,))`` of a one-variable :class:`InterchangeResult`."""
    sh, acc = share_and_accuracy(res, n_boot=n_boot, seed=seed)
    return sh[0], acc[0]


def alignment_search(
    lens: Lens,
    dataset: object,
    *,
    factors: Sequence[str | int] | str | int | None = None,
    k: int = 1,
    layer: str | None = None,
    n_pairs: int = 64,
    n_train: int = 256,
    steps: int = 200,
    lr: float = 0.05,
    batch_size: int = 64,
    seed: int = 0,
    n_boot: int = 1000,
    max_sets: int = 128,
    max_batch: int | None = None,
) -> Alignment:
    """Learned-subspace (DAS) and best axis-aligned interchange shares of each factor.

    ``factors``: names or indices (default every factor); ``k``: the subspace dimension
    (``1 <= k <=`` the latent width, or the channels of ``layer``); ``layer``: a hook name
    (``None``: the latent). ``n_train`` training and ``n_pairs`` held-out pairs per factor;
    ``steps`` Adam steps of learning rate ``lr`` on blocks of ``batch_size`` pairs; ``seed``
    seeds the pairs (numpy) and the rotations (torch, ``seed + f``). See the module docstring
    for every formula. Returns an :class:`Alignment` block.
    """
    _check(n_pairs, n_train, steps, lr, batch_size, seed, n_boot, max_sets)
    names = getattr(dataset, "factor_names", None)
    if names is not None and not len(names):
        label = getattr(dataset, "name", type(dataset).__name__)
        raise ArgumentError(f"dataset: {label} has no factors to intervene on")
    ds = check_dataset(dataset)
    chosen = _factor_list(ds, factors)
    mb = resolve_max_batch(max_batch, lens)
    rng = np.random.default_rng(seed)
    live = [f for f in chosen if int(ds.factor_sizes[f]) > 1]
    if not live:
        raise ArgumentError(f"factors: every chosen factor of {ds.name} has a single level")
    probe = factor_pairs(ds, live[0], 2, seed=np.random.default_rng(seed))[0]
    name, d = alignment_width(lens, layer, probe)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= d:
        raise ArgumentError(f"k: expected an int in [1, {d}] (the width of {name}), got {k!r}")
    m = _blank(len(chosen), d, k)
    for j, f in enumerate(chosen):
        if int(ds.factor_sizes[f]) < 2:
            continue
        xt, xpt = factor_pairs(ds, f, n_train, seed=rng)[:2]
        x, xp = factor_pairs(ds, f, n_pairs, seed=rng)[:2]
        units = best_axis_units(lens, xt, xpt, k=k, layer=name, max_sets=max_sets, max_batch=mb)
        fit = fit_alignment(
            lens, xt, xpt, k=k, layer=name, steps=steps, lr=lr, batch_size=batch_size,
            seed=seed + f, max_batch=mb, init_units=units or None,
        )  # fmt: skip
        if not fit.moved:
            continue
        held = rotated_interchange(
            lens, x, xp, fit.basis, layer=name, target_images=xp, max_batch=mb
        )
        train = rotated_interchange(lens, xt, xpt, fit.basis, layer=name, max_batch=mb)
        sh, acc = _scores(held, n_boot, seed)
        m["share"][j], m["share_ci"][j], m["accuracy"][j] = sh[0], sh[1:], acc[0]
        tr = train.share.numpy()[0]
        m["train_share"][j] = float(tr[np.isfinite(tr)].mean()) if np.isfinite(tr).any() else np.nan
        tail = fit.losses[-min(10, steps) :]
        m["final_loss"][j] = float(np.nanmean(tail)) if np.isfinite(tail).any() else np.nan
        m["basis"][j] = fit.basis.double().numpy()
        if units:
            ax = interchange(lens, x, xp, [(name, units)], target_images=xp, max_batch=mb)
            ash, aacc = _scores(ax, n_boot, seed)
            m["axis_share"][j], m["axis_share_ci"][j], m["axis_accuracy"][j] = (
                ash[0],
                ash[1:],
                aacc[0],
            )
            m["axis_units"][j] = list(units)
    return Alignment(
        factor_names=[str(ds.factor_names[f]) for f in chosen],
        layer=name,
        k=k,
        width=d,
        **m,
        n_pairs=n_pairs,
        n_train=n_train,
        steps=steps,
        lr=float(lr),
        seed=seed,
        method=ALIGNMENT_METHOD,
    )
