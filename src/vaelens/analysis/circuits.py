"""Unit-level circuits: the smallest channel set of each encoder layer that carries a factor.

For each factor ``f`` the pairs ``(x, x')`` differ only in ``f`` (the pair stream of
:func:`vaelens.analysis.interchange_matrix` for the same ``seed``, so the results line up).
For an encoder layer ``l`` and a set ``S`` of its channels (units of ``(N, F)`` features),
the encoder-side interchange patch (:class:`vaelens.lens.EncoderInterchange`) is::

    A~_l = A_l(x) with A~_l[:, S] = A_l(x')[:, S];   mu~(S) = the rest of the encoder from A~_l

scored in latent space, with ``mu = mu(x)``, ``mu' = mu(x')`` (posterior means)::

    latent_share(S) = mean_n <mu~_n - mu_n, mu'_n - mu_n> / ||mu'_n - mu_n||^2

over the pairs with ``||mu'_n - mu_n||^2 > 1e-10 (||mu_n||^2 + ||mu'_n||^2)`` (the latent
moves; NaN when none does). ``full_share = latent_share(all channels of l)`` is 1 up to
round-off when ``l`` is a cut of the encoder, smaller when a skip path goes around it.

- Candidates: the live channels of ``l`` for ``f``, those with ``sum_n ||A_l(x'_n)[u] -
  A_l(x_n)[u]||^2 > 1e-10 sum_n (||A_l(x_n)[u]||^2 + ||A_l(x'_n)[u]||^2)`` (a channel that is
  dead or constant on every pair has a patch that changes nothing).
- ``sets[f][l]``: greedy, as the minimal latent sets: first every live channel alone (and
  the full patch), then each step the channel whose addition gives the largest joint latent
  share, until ``latent_share(S) >= coverage * full_share`` (``covered``) or ``max_set``
  channels or no candidate is left; every candidate set of a step is patched in ONE stacked
  suffix run of ``(candidates * pairs)`` rows (chunked to ``max_batch``) from the cached
  captures. Exact when the channels' shares add up, an upper bound on the smallest set
  otherwise. Empty (and NaN) when the factor does not move the latent or ``full_share <=
  1e-6`` (the layer carries none of it: ``logvar``, a side branch).
- The confirming joint patch of ``S``: ``latent_share`` with a bootstrap CI over pairs
  (:func:`vaelens.stats.bootstrap_ci`).

Path patching from ``S`` through the latent to the output (``D = D(mu)``, ``D' = D(mu')``,
shares as :func:`vaelens.lens.pair_shares`, over the pairs with ``D'_n != D_n``)::

    output_share = mean_n <D(mu~_n) - D_n, D'_n - D_n> / ||D'_n - D_n||^2
    path_share   = the same of D(z_n),  z_n = mu_n with z_n[M] = mu~_n[M]

with ``M = latent_sets[f]`` the factor's minimal latent set (``Interchange.min_sets[f]`` if
an ``interchange`` block is given, else found here the same way on the same pairs):
``path_share`` is the part of the factor's output effect that flows ``S -> M -> output``;
``path_share = output_share`` when ``S`` feeds only ``M``, about 0 when ``S`` bypasses ``M``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from vaelens.analysis.interchange import _draw_pairs, _greedy
from vaelens.analysis.result import Circuits, Interchange
from vaelens.data import check_dataset
from vaelens.errors import ArgumentError, DatasetError
from vaelens.lens import EncoderInterchange, Lens, interchange_share, mean_share, pair_shares
from vaelens.lens import interchange as lens_interchange
from vaelens.lens.interchange import check_encoder_layers
from vaelens.lens.patching import resolve_max_batch

__all__ = ["CIRCUITS_METHOD", "unit_circuits"]

CIRCUITS_METHOD = (
    "unit circuits: per factor and encoder layer, the greedy smallest set S of live channels "
    "whose joint interchange patch (A_l(x) with channels S from x', the encoder run on) gives "
    "latent share mean <mu~ - mu, mu' - mu> / ||mu' - mu||^2 >= coverage * the share of "
    "patching every channel; output_share: the share of D(x') - D(x) of D(mu~); path_share: "
    "of D(mu with dims M from mu~), M the factor's minimal latent set"
)

#: a layer whose full patch carries at most this latent share carries none of the factor
MIN_FULL_SHARE = 1e-6


def _check(n_pairs: object, coverage: object, max_set: object, interchange_block: object) -> None:
    if isinstance(n_pairs, bool) or not isinstance(n_pairs, int) or n_pairs < 2:
        raise ArgumentError(f"n_pairs: expected an int >= 2, got {n_pairs!r}")
    if isinstance(coverage, bool) or not isinstance(coverage, int | float) or not 0 < coverage <= 1:
        raise ArgumentError(f"coverage: expected a number in (0, 1], got {coverage!r}")
    if max_set is not None and (
        isinstance(max_set, bool) or not isinstance(max_set, int) or max_set < 1
    ):
        raise ArgumentError(f"max_set: expected a positive int or None, got {max_set!r}")
    if interchange_block is not None and not isinstance(interchange_block, Interchange):
        raise ArgumentError(
            f"interchange: expected an Interchange block or None, got "
            f"{type(interchange_block).__name__}"
        )


def _layers(lens: Lens, layers: object, probe: torch.Tensor) -> list[str]:
    """The encoder layers to search (default every encoder hook point), checked."""
    lens._ensure_traced(probe)
    if layers is None:
        return list(lens.encoder_hook_names)
    return check_encoder_layers(lens, layers)


def _latent_sets(
    lens: Lens, pairs: list, latent: int, coverage: float, mb: int, block: Interchange | None
) -> list[list[int]]:
    """Each factor's minimal latent set: from ``block``, else greedy on the same pairs."""
    if block is not None:
        return [list(m) for m in block.min_sets]
    out: list[list[int]] = []
    for pair in pairs:
        if pair is None:
            out.append([])
            continue
        x, xp = pair
        res = lens_interchange(lens, x, xp, [*range(latent), list(range(latent))], max_batch=mb)
        shares = mean_share(res.share)
        out.append(_greedy(lens, x, xp, shares[:latent], float(shares[latent]), coverage, mb))
    return out


def _shares(enc: EncoderInterchange, layer: str, sets: list[list[int]]) -> np.ndarray:
    """``(K,)``: the mean latent share of each unit set (one stacked suffix run)."""
    return mean_share(pair_shares(enc.latents(layer, sets), enc.base, enc.source))


def _search(
    enc: EncoderInterchange, layer: str, live: list[int], coverage: float, max_set: int | None
) -> tuple[list[int], float, bool]:
    """The greedy channel set of ``layer``, the full patch's share and whether it covered."""
    width = enc.width(layer)
    first = _shares(enc, layer, [*([u] for u in live), list(range(width))])
    full = float(first[-1])
    if not live or not math.isfinite(full) or full <= MIN_FULL_SHARE:
        return [], full, False
    goal = coverage * full
    cap = len(live) if max_set is None else min(max_set, len(live))
    singles = first[:-1]
    if not np.isfinite(singles).any():
        return [], full, False
    chosen = [live[int(np.nanargmax(singles))]]
    best = float(np.nanmax(singles))
    while best < goal and len(chosen) < cap:
        rest = [u for u in live if u not in chosen]
        shares = _shares(enc, layer, [[*chosen, u] for u in rest])
        if not np.isfinite(shares).any():
            break
        k = int(np.nanargmax(shares))
        chosen.append(rest[k])
        best = float(shares[k])
    return sorted(chosen), full, bool(best >= goal)


def _confirm(
    enc: EncoderInterchange,
    layer: str,
    chosen: list[int],
    m_set: list[int],
    out_base: torch.Tensor,
    out_source: torch.Tensor,
    n_boot: int,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(3,)`` each: latent, output and via-``M`` output share (estimate, CI) of ``chosen``."""
    mu_t = enc.latents(layer, [chosen])  # (1, N, L)
    lat = interchange_share(mu_t, enc.base, enc.source, n_boot=n_boot, seed=seed)[0]
    mask = torch.zeros(mu_t.shape[-1], dtype=torch.bool)
    mask[list(m_set)] = True
    z_m = torch.where(mask, mu_t, enc.base.unsqueeze(0))
    outs = enc.outputs(torch.cat([mu_t, z_m]))
    sh = interchange_share(outs, out_base, out_source, n_boot=n_boot, seed=seed)
    path = sh[1] if m_set else np.full(3, np.nan)
    return lat, sh[0], path


def _blank(n_f: int, n_l: int) -> dict[str, object]:
    """The measurement fields of :class:`Circuits`, all NaN (and empty sets)."""
    nan2, nan3 = np.full((n_f, n_l), np.nan), np.full((n_f, n_l, 2), np.nan)
    return {
        "n_live": np.zeros((n_f, n_l), dtype=np.int64),
        "full_share": nan2.copy(),
        "sets": [[[] for _ in range(n_l)] for _ in range(n_f)],
        "covered": np.zeros((n_f, n_l), dtype=bool),
        "latent_share": nan2.copy(),
        "latent_share_ci": nan3.copy(),
        "output_share": nan2.copy(),
        "output_share_ci": nan3.copy(),
        "path_share": nan2.copy(),
        "path_share_ci": nan3.copy(),
    }


def _factor(
    m: dict,
    f: int,
    enc: EncoderInterchange,
    m_set: list[int],
    coverage: float,
    max_set: int | None,
    n_boot: int,
    seed: int,
) -> None:
    """Factor ``f``'s circuit in every layer of ``enc`` into ``m``."""
    out_base, out_source = enc.outputs(torch.stack([enc.base, enc.source]))
    for j, layer in enumerate(enc.layers):
        live = enc.live_units(layer)
        m["n_live"][f, j] = len(live)
        chosen, full, covered = _search(enc, layer, live, coverage, max_set)
        m["full_share"][f, j] = full
        if not chosen:
            continue
        lat, out, path = _confirm(enc, layer, chosen, m_set, out_base, out_source, n_boot, seed)
        m["sets"][f][j] = chosen
        m["covered"][f, j] = covered
        m["latent_share"][f, j], m["latent_share_ci"][f, j] = lat[0], lat[1:]
        m["output_share"][f, j], m["output_share_ci"][f, j] = out[0], out[1:]
        m["path_share"][f, j], m["path_share_ci"][f, j] = path[0], path[1:]


def unit_circuits(
    lens: Lens,
    dataset: object,
    *,
    interchange: Interchange | None = None,
    layers: Sequence[str] | None = None,
    n_pairs: int = 64,
    coverage: float = 0.9,
    seed: int = 0,
    n_boot: int = 1000,
    max_batch: int | None = None,
    max_set: int | None = None,
) -> Circuits:
    """The smallest channel set of each encoder layer carrying each factor, and its paths.

    ``layers``: encoder hook names (default ``lens.encoder_hook_names``); ``n_pairs`` pairs
    per factor from ``numpy.random.default_rng(seed)`` (the stream of
    :func:`~vaelens.analysis.interchange_matrix`; a factor of one level gets NaN);
    ``coverage``: the part of the full patch's latent share the set must carry;
    ``interchange``: an :class:`Interchange` block of the same model, dataset and seed whose
    ``min_sets`` are the latent sets ``M`` of the path share (default: found here);
    ``n_boot``: bootstrap resamples of the pairs; ``max_batch``: rows per stacked forward;
    ``max_set``: the largest set the greedy search may return. See the module docstring for
    every formula. Returns a :class:`Circuits` block.
    """
    _check(n_pairs, coverage, max_set, interchange)
    try:
        ds = check_dataset(dataset)
    except DatasetError as err:  # a dataset without ground-truth factors
        text = str(err).splitlines()[0]
        raise ArgumentError(text if text.startswith("dataset") else f"dataset: {text}") from None
    names = [str(n) for n in ds.factor_names]
    if not names:
        raise ArgumentError(f"dataset: {ds.name} has no factors to intervene on")
    if interchange is not None and list(interchange.factor_names) != names:
        raise ArgumentError(
            f"interchange: its factors {interchange.factor_names} are not the dataset's {names}"
        )
    mb = resolve_max_batch(max_batch, lens)
    pairs, latent = _draw_pairs(lens, ds, n_pairs, seed)
    probe = next(p for p in pairs if p is not None)[0][:2]
    chosen_layers = _layers(lens, layers, probe)
    m_sets = _latent_sets(lens, pairs, latent, float(coverage), mb, interchange)
    m = _blank(len(names), len(chosen_layers))
    for f, pair in enumerate(pairs):
        if pair is None:
            continue
        enc = EncoderInterchange(lens, *pair, chosen_layers, max_batch=mb)
        _factor(m, f, enc, m_sets[f], float(coverage), max_set, n_boot, seed)
    return Circuits(
        factor_names=names,
        layers=chosen_layers,
        width=np.array([lens.units(n) for n in chosen_layers], dtype=np.int64),
        **m,
        latent_sets=m_sets,
        coverage=float(coverage),
        n_pairs=n_pairs,
        method=CIRCUITS_METHOD,
    )
