"""The latent -> factor causal graph from interchange interventions, and minimal latent sets.

:func:`interchange_matrix` draws ``n_pairs`` pairs ``(x, x')`` per factor ``f`` that differ
only in ``f`` (:func:`vaelens.lens.factor_pairs`, one ``seed`` stream, so a model and its
random twin see the same pairs) and patches each latent dim ``i`` of ``z(x)`` from
``z(x')`` (:func:`vaelens.lens.interchange`, all ``(latent, pair)`` variants stacked). With
``D = D(x)``, ``D' = D(x')``, ``D~`` the patched output (see :mod:`vaelens.lens.interchange`):

- ``share[i, f] = mean_n <D~_n - D_n, D'_n - D_n> / ||D'_n - D_n||^2`` over the pairs with
  ``D'_n != D_n`` (NaN when the factor never moves the output), ``share_ci[i, f]`` its
  bootstrap interval over pairs;
- ``accuracy[i, f] = sum_n (e0_n - e_n) / sum_n (e0_n - e1_n)`` against the real images
  ``x'``: ``e_n = ||D~_n - x'_n||^2``, ``e0_n = ||D_n - x'_n||^2``, ``e1_n = ||D'_n -
  x'_n||^2`` (1 = as good as the model's own reconstruction of ``x'``, 0 = no better than
  leaving ``x`` unchanged);
- ``isolation[i, f] = mean_n [1 - mean_{g != f} |<D~_n - D_n, u_g>| / ||D~_n - D_n||]``
  with ``u_g`` the leading singular direction of factor ``g``'s unit output changes
  (:func:`vaelens.lens.factor_direction`; factors that move nothing are left out);
- ``edges``: ``(latent, factor)`` with ``share_ci[i, f, 0] > threshold`` (the lower bound);
- ``min_sets[f]``: the smallest set of latents whose joint patch carries at least
  ``coverage`` (0.9) of the factor's effect, ``share(S) >= coverage * full_share[f]``, with
  ``full_share[f]`` the share of patching every latent (1 up to round-off: ``z~ = z(x')``).
  Found greedily: start from the empty set and add, each step, the latent whose addition
  gives the largest joint share (every candidate set of a step patched in one stacked
  decode). ``min_set_share[f]`` / ``min_set_share_ci[f]`` / ``min_set_accuracy[f]``: the
  confirming joint patch of the chosen set. Empty set and NaN for a factor that moves
  nothing. Greedy is exact for a factor carried by disjoint latents (shares add up) and an
  upper bound of the smallest set otherwise.
- ``pairs``: ``"exact"`` on a factorial grid (``x'`` is the real image of ``x`` with one
  factor changed), ``"matched"`` where the dataset draws its own pairs
  (``dataset.intervention_pairs``, e.g. CelebA: real images that differ in the attribute and
  agree on as many others as can be found); every score is then approximate, confounded by
  what the match does not hold fixed: ``other_differences[f]``, the mean number of other
  factors that differ within a pair (0 for exact pairs).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from vaelens.analysis.result import Interchange
from vaelens.data import check_dataset
from vaelens.errors import ArgumentError
from vaelens.lens import (
    Lens,
    factor_direction,
    factor_pairs,
    interchange,
    isolation,
    mean_share,
    share_and_accuracy,
)
from vaelens.lens.patching import resolve_max_batch

__all__ = ["INTERCHANGE_METHOD", "interchange_matrix"]

INTERCHANGE_METHOD = (
    "interchange interventions: z(x) with latent dims V set to z(x')[V] for pairs (x, x') "
    "differing in one factor, decoded; share = mean <D~ - D, D' - D> / ||D' - D||^2 over "
    "pairs with D' != D; accuracy = sum (e0 - e) / sum (e0 - e1) with e, e0, e1 the squared "
    "distances of D~, D(x), D(x') to the real x'; isolation = mean 1 - mean_{g != f} "
    "|cos(D~ - D, u_g)|; edges: share CI lower bound > threshold; min_sets: greedy smallest "
    "latent set whose joint share >= coverage * the share of patching every latent"
)


def _check(n_pairs: object, threshold: object, coverage: object) -> None:
    if isinstance(n_pairs, bool) or not isinstance(n_pairs, int) or n_pairs < 2:
        raise ArgumentError(f"n_pairs: expected an int >= 2, got {n_pairs!r}")
    if not isinstance(threshold, int | float) or not math.isfinite(threshold) or threshold < 0:
        raise ArgumentError(f"threshold: expected a finite number >= 0, got {threshold!r}")
    if not isinstance(coverage, int | float) or not 0 < coverage <= 1:
        raise ArgumentError(f"coverage: expected a number in (0, 1], got {coverage!r}")


def _greedy(
    lens: Lens,
    x: torch.Tensor,
    xp: torch.Tensor,
    single: np.ndarray,
    full: float,
    coverage: float,
    max_batch: int,
) -> list[int]:
    """The greedy smallest latent set with joint share ``>= coverage * full``."""
    latent = len(single)
    if not np.isfinite(full) or not np.isfinite(single).any():
        return []
    goal = coverage * full
    chosen = [int(np.nanargmax(single))]
    best = float(single[chosen[0]])
    while best < goal and len(chosen) < latent:
        rest = [i for i in range(latent) if i not in chosen]
        res = interchange(lens, x, xp, [[*chosen, i] for i in rest], max_batch=max_batch)
        shares = mean_share(res.share)
        k = int(np.nanargmax(shares))
        chosen.append(rest[k])
        best = float(shares[k])
    return sorted(chosen)


_Pair = tuple[torch.Tensor, torch.Tensor]


def _draw_pairs(lens: Lens, ds, n_pairs: int, seed: int) -> tuple[list[_Pair | None], int]:
    """One ``(x, x')`` batch per factor (``None`` for a single-level one) and the latent size."""
    pairs, latent, _ = _draw_pairs_and_gaps(lens, ds, n_pairs, seed)
    return pairs, latent


def _draw_pairs_and_gaps(
    lens: Lens, ds, n_pairs: int, seed: int
) -> tuple[list[_Pair | None], int, list[float | None]]:
    """:func:`_draw_pairs` and, per factor, the mean number of *other* factors that differ
    within a pair (0 on a factorial grid; a matched-pair dataset such as CelebA: its
    confounding)."""
    rng = np.random.default_rng(seed)
    pairs: list[_Pair | None] = []
    gaps: list[float | None] = []
    for f, size in enumerate(ds.factor_sizes):
        if int(size) < 2:
            pairs.append(None)
            gaps.append(None)
            continue
        x, xp, base, changed = factor_pairs(ds, f, n_pairs, seed=rng)
        pairs.append((x, xp))
        differ = np.asarray(base) != np.asarray(changed)
        gaps.append(float(np.delete(differ, f, axis=1).sum(axis=1).mean()))
    first = next((p for p in pairs if p is not None), None)
    if first is None:
        raise ArgumentError(f"dataset: every factor of {ds.name} has a single level")
    with torch.no_grad():
        latent = int(lens.encode_mean(first[0][:2]).shape[1])
    return pairs, latent, gaps


def _patch_singles(
    lens: Lens, pairs: list[_Pair | None], latent: int, mb: int
) -> tuple[dict[int, object], dict[int, torch.Tensor]]:
    """Per factor: every single latent and all of them patched, and the factor's direction."""
    results, dirs = {}, {}
    variables: list[object] = [*range(latent), list(range(latent))]
    for f, pair in enumerate(pairs):
        if pair is None:
            continue
        res = interchange(lens, *pair, variables, target_images=pair[1], max_batch=mb)
        results[f] = res
        u = factor_direction(res.base, res.source)
        if u is not None:
            dirs[f] = u
    return results, dirs


def _blank(latent: int, n_f: int) -> dict[str, object]:
    """The :class:`Interchange` measurement fields, all NaN (and empty sets)."""
    return {
        "share": np.full((latent, n_f), np.nan),
        "share_ci": np.full((latent, n_f, 2), np.nan),
        "accuracy": np.full((latent, n_f), np.nan),
        "isolation": np.full((latent, n_f), np.nan),
        "full_share": np.full(n_f, np.nan),
        "min_sets": [[] for _ in range(n_f)],
        "min_set_share": np.full(n_f, np.nan),
        "min_set_share_ci": np.full((n_f, 2), np.nan),
        "min_set_accuracy": np.full(n_f, np.nan),
    }


def _fill_singles(
    m: dict, f: int, res, others: list[torch.Tensor], latent: int, n_boot: int, seed: int
) -> None:
    """Factor ``f``'s single-latent share, CI, accuracy, isolation and full share into ``m``."""
    sh, acc = share_and_accuracy(res, n_boot=n_boot, seed=seed)
    m["share"][:, f], m["share_ci"][:, f] = sh[:latent, 0], sh[:latent, 1:]
    m["accuracy"][:, f] = acc[:latent, 0]
    m["full_share"][f] = sh[latent, 0]
    if others:
        m["isolation"][:, f] = isolation(
            res.patched[:latent], res.base, torch.stack(others), n_boot=n_boot, seed=seed
        )[:, 0]


def _fill_min_set(
    m: dict, f: int, lens: Lens, pair: _Pair, chosen: list[int], n_boot: int, seed: int, mb: int
) -> None:
    """The confirming joint patch of factor ``f``'s chosen set into ``m``."""
    x, xp = pair
    joint = interchange(lens, x, xp, [chosen], target_images=xp, max_batch=mb)
    jsh, jacc = share_and_accuracy(joint, n_boot=n_boot, seed=seed)
    m["min_sets"][f] = chosen
    m["min_set_share"][f], m["min_set_share_ci"][f] = jsh[0, 0], jsh[0, 1:]
    m["min_set_accuracy"][f] = jacc[0, 0]


def _measure(
    lens: Lens,
    pairs: list[_Pair | None],
    latent: int,
    n_f: int,
    coverage: float,
    n_boot: int,
    seed: int,
    mb: int,
) -> dict[str, object]:
    """Every measurement field of :class:`Interchange`, factor by factor."""
    results, dirs = _patch_singles(lens, pairs, latent, mb)
    m = _blank(latent, n_f)
    for f, res in results.items():
        x, xp = pairs[f]  # type: ignore[misc]
        others = [dirs[g] for g in sorted(dirs) if g != f]
        _fill_singles(m, f, res, others, latent, n_boot, seed)
        chosen = _greedy(lens, x, xp, m["share"][:, f], m["full_share"][f], coverage, mb)
        if chosen:
            _fill_min_set(m, f, lens, (x, xp), chosen, n_boot, seed, mb)
    return m


def interchange_matrix(
    lens: Lens,
    dataset: object,
    *,
    n_pairs: int = 64,
    seed: int = 0,
    threshold: float = 0.1,
    coverage: float = 0.9,
    n_boot: int = 1000,
    max_batch: int | None = None,
) -> Interchange:
    """Interchange shares, accuracies and isolation of every latent dim for every factor.

    ``n_pairs`` pairs per factor (a factor of one level gets NaN and no set), drawn from
    ``numpy.random.default_rng(seed)``; intervals: ``n_boot`` bootstrap resamples of the
    pairs; ``threshold``: the edge bound on the share's CI lower end; ``coverage``: the
    share of a factor's effect its minimal set must carry. See the module docstring for
    every formula. Returns an :class:`Interchange` block.
    """
    _check(n_pairs, threshold, coverage)
    ds = check_dataset(dataset)
    names = [str(n) for n in ds.factor_names]
    if not names:
        raise ArgumentError(f"dataset: {ds.name} has no factors to intervene on")
    mb = resolve_max_batch(max_batch, lens)
    pairs, latent, gaps = _draw_pairs_and_gaps(lens, ds, n_pairs, seed)
    m = _measure(lens, pairs, latent, len(names), coverage, n_boot, seed, mb)
    matched = callable(getattr(ds, "intervention_pairs", None))
    lower = np.where(np.isfinite(m["share_ci"][..., 0]), m["share_ci"][..., 0], -np.inf)
    return Interchange(
        factor_names=names,
        **m,
        edges=np.argwhere(lower > threshold).reshape(-1, 2),
        threshold=float(threshold),
        coverage=float(coverage),
        n_pairs=n_pairs,
        method=INTERCHANGE_METHOD,
        pairs="matched" if matched else "exact",
        other_differences=gaps,
    )
