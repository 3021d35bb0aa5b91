"""Interchange interventions: run ``x`` with one variable taken from ``x'`` and score it.

For a pair ``(x, x')`` that differs only in factor ``f`` (:func:`factor_pairs`), the
interchange intervention on a variable ``V`` runs ``x`` with ``V`` set to its value on
``x'`` and decodes::

    latent V (a set of latent dims):      z~ = z(x) with z~[V] = z(x')[V];   D~ = D(z~)
    layer V = (layer l, units U):         A~_l = A_l(x) with A~_l[:, U] = A_l(x')[:, U];
                                          D~ = the rest of the network run from A~_l

Every ``(variable, pair)`` variant is stacked on the batch axis: latent variables are decoded
in one stacked ``lens.decode_output`` of ``(K * N, L)`` rows (chunked to ``max_batch``), unit
variables of one layer in stacked suffix runs (:meth:`Lens.run_variants`) from one
:meth:`Lens.capture` of ``x`` per block of pairs, never one forward per pair.

Scores of ``V`` for factor ``f`` (pure functions of the decoded images; ``D = D(x)``,
``D' = D(x')``, ``D~`` the patched output, all flattened; each returns ``(K, 3)``:
estimate and a bootstrap CI over pairs, :func:`vaelens.stats.bootstrap_ci`):

- :func:`interchange_share`: ``s_n = <D~_n - D_n, D'_n - D_n> / ||D'_n - D_n||^2`` per pair,
  its mean over pairs with ``||D'_n - D_n||^2 > eps (||D_n||^2 + ||D'_n||^2)``
  (``eps = 1e-10``; NaN when no pair moves the output). 1: ``V`` carries the whole change
  the factor makes; 0: none of it.
- :func:`counterfactual_accuracy`, against the real image ``x'``: with ``e0_n = ||D_n -
  x'_n||^2`` (leave ``x`` unchanged), ``e1_n = ||D'_n - x'_n||^2`` (the model's own
  reconstruction of ``x'``) and ``e_n = ||D~_n - x'_n||^2``::

      acc = sum_n (e0_n - e_n) / sum_n (e0_n - e1_n)

  pooled over pairs (a ratio of sums, so that a pair whose two errors nearly tie cannot blow
  it up); 1: as close to ``x'`` as the model's reconstruction of ``x'``, 0: no closer than
  leaving ``x`` unchanged. NaN where ``sum_n (e0_n - e1_n) <= eps_acc sum_n e0_n`` with
  ``eps_acc = 1e-6`` (the factor does not show in the images or the model does not
  reconstruct it). The CI resamples whole pairs (numerator and denominator together).
- :func:`isolation` (RAVEL's cause/isolate idea): with ``u_g`` the unit direction of factor
  ``g``'s output change (:func:`factor_direction`: the leading right singular vector of the
  stacked unit changes ``(D'_n - D_n) / ||D'_n - D_n||`` of ``g``'s pairs, i.e. their mean
  direction up to sign) for every other factor ``g != f`` whose direction is defined::

      iso_n = 1 - mean_g |<D~_n - D_n, u_g>| / ||D~_n - D_n||

  (one minus the mean absolute cosine with the other factors' directions), averaged over
  pairs where the patch moves the output (``||D~_n - D_n||^2 > eps (||D_n||^2 +
  ||D~_n||^2)``); NaN when none does or
  no other direction is given. 1: patching ``V`` moves nothing along another factor's
  direction.

A *variable* is given as an ``int`` (one latent dim), a sequence of ints (a set of latent
dims), a hook name (every unit of that layer), or ``(hook_name, units)`` with ``units`` an
int or a sequence of ints (channels of a ``(N, C, H, W)`` map, features of ``(N, F)``);
``(lens.latent_name, dims)`` is a set of latent dims.

Encoder side (:class:`EncoderInterchange`, :func:`encoder_interchange`): the same patch of
units ``U`` of an encoder layer ``l``, read at the posterior mean instead of the output::

    A~_l = A_l(x) with A~_l[:, U] = A_l(x')[:, U];   mu~ = the rest of the encoder from A~_l

``(K, N, L)`` for ``K`` unit sets, in stacked suffix runs to ``target="latent"`` from one
cached capture of ``x`` (and one cached pass of ``x'``) per block of pairs, reused by every
later call; scored in latent space by :func:`pair_shares` on ``(mu~, mu(x), mu(x'))``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from vaelens.errors import ArgumentError
from vaelens.lens.hooks import Capture, Lens
from vaelens.lens.patching import resolve_max_batch
from vaelens.stats import bootstrap_ci

__all__ = [
    "EncoderInterchange",
    "InterchangeResult",
    "check_encoder_layers",
    "counterfactual_accuracy",
    "encoder_interchange",
    "factor_direction",
    "interchange",
    "interchange_share",
    "isolation",
    "mean_share",
    "pair_isolation",
    "pair_shares",
    "resolve_variables",
    "share_and_accuracy",
]

#: relative tolerance of "D(x') = D(x)": ``||D' - D||^2 <= EPS (||D||^2 + ||D'||^2)``
EPS = 1e-10
#: relative tolerance of the accuracy's denominator: ``sum (e0 - e1) <= EPS_ACC sum e0``
EPS_ACC = 1e-6

Variable = tuple[str, tuple[int, ...]]


@dataclass
class InterchangeResult:
    """The decoded interchange interventions of ``K`` variables on ``N`` pairs.

    ``variables[k] = (hook_name, units)`` (``hook_name == lens.latent_name`` for latent
    dims); ``patched`` ``(K, N, ...)``: ``D~`` of variable ``k`` on pair ``n``; ``base``
    ``(N, ...)``: ``D(x)``; ``source``: ``D(x')``; ``target``: the real images ``x'`` given
    as ``target_images`` (reshaped to the output's shape) or None; ``share`` ``(K, N)``:
    :func:`pair_shares`; ``isolation`` ``(K, N)``: :func:`pair_isolation` when
    ``other_directions`` were given, else None.
    """

    variables: list[Variable]
    patched: torch.Tensor
    base: torch.Tensor
    source: torch.Tensor
    target: torch.Tensor | None
    share: torch.Tensor
    isolation: torch.Tensor | None


def _units(arg: str, value: object, width: int) -> tuple[int, ...]:
    items = [value] if isinstance(value, int | np.integer) else value
    if isinstance(items, str) or not isinstance(items, Sequence | np.ndarray | torch.Tensor):
        raise ArgumentError(f"{arg}: expected an int or a sequence of ints, got {value!r}")
    out = []
    for u in items:
        if isinstance(u, torch.Tensor):
            u = u.item()
        if isinstance(u, bool) or not isinstance(u, int | np.integer):
            raise ArgumentError(f"{arg}: expected ints, got {u!r}")
        if not 0 <= int(u) < width:
            raise ArgumentError(f"{arg}: unit {int(u)} out of range [0, {width})")
        out.append(int(u))
    if not out:
        raise ArgumentError(f"{arg}: expected at least one unit, got none")
    return tuple(sorted(set(out)))


def resolve_variables(lens: Lens, variables: object, latent_dim: int) -> list[Variable]:
    """``variables`` as ``[(hook_name, units)]``; a one-line :class:`ArgumentError` otherwise."""
    if isinstance(variables, str | int) or not isinstance(variables, Sequence):
        raise ArgumentError(f"variables: expected a list of variables, got {variables!r}")
    if not variables:
        raise ArgumentError("variables: expected at least one variable, got none")
    out: list[Variable] = []
    for k, v in enumerate(variables):
        arg = f"variables[{k}]"
        if isinstance(v, str):
            layer, units = v, None
        elif isinstance(v, tuple) and len(v) == 2 and isinstance(v[0], str):
            layer, units = v
        else:
            layer, units = lens.latent_name, v
        if layer == lens.latent_name:
            width = latent_dim
        else:
            points = lens._ensure_traced()
            if layer not in points:
                raise ArgumentError(
                    f"{arg}: {layer!r} is not a hook point of {type(lens.model).__name__}"
                )
            width = points[layer].units
        dims = tuple(range(width)) if units is None else _units(arg, units, width)
        out.append((layer, dims))
    return out


def _flat(t: torch.Tensor, lead: int) -> torch.Tensor:
    return t.reshape(*t.shape[:lead], -1).double()


def pair_shares(patched: torch.Tensor, base: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """``(K, N)``: ``<D~ - D, D' - D> / ||D' - D||^2`` per pair; NaN where ``D' = D``.

    ``D' = D`` means ``||D' - D||^2 <= 1e-10 (||D||^2 + ||D'||^2)``.
    """
    p, b, s = _flat(patched, 2), _flat(base, 1), _flat(source, 1)
    d = s - b
    dd = (d * d).sum(-1)
    moved = dd > EPS * ((b * b).sum(-1) + (s * s).sum(-1))
    num = ((p - b.unsqueeze(0)) * d.unsqueeze(0)).sum(-1)
    return torch.where(moved, num / torch.where(moved, dd, 1.0), torch.nan)


def _mean_ci(per_pair: torch.Tensor | np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """``(K, 3)``: per row, the mean of the finite values and its bootstrap CI."""
    rows = np.asarray(per_pair, dtype=np.float64)
    return np.array(
        [bootstrap_ci(r[np.isfinite(r)], n_boot=n_boot, random_state=seed) for r in rows],
        dtype=np.float64,
    ).reshape(len(rows), 3)


def interchange_share(
    patched: torch.Tensor,
    base: torch.Tensor,
    source: torch.Tensor,
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> np.ndarray:
    """``(K, 3)``: mean interchange share over the pairs that move the output, and its CI.

    ``share = mean_n <D~_n - D_n, D'_n - D_n> / ||D'_n - D_n||^2`` over the pairs with
    ``D'_n != D_n`` (:func:`pair_shares`); NaN when there is none.
    """
    return _mean_ci(pair_shares(patched, base, source), n_boot, seed)


def mean_share(share: torch.Tensor) -> np.ndarray:
    """``(K,)``: the mean over the defined (finite) pairs of each row of a ``(K, N)`` share
    matrix, without a CI (NaN where no pair is defined): the score a greedy search ranks by."""
    s = share.numpy()
    ok = np.isfinite(s)
    count = ok.sum(1)
    return np.where(count > 0, np.where(ok, s, 0).sum(1) / np.maximum(count, 1), np.nan)


def share_and_accuracy(
    res: InterchangeResult, *, n_boot: int = 1000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``(share (K, 3), accuracy (K, 3))`` of an :class:`InterchangeResult` whose ``target``
    holds the real images: :func:`interchange_share` and :func:`counterfactual_accuracy`."""
    if res.target is None:
        raise ArgumentError("res: the interchange was run without target_images; no accuracy")
    sh = interchange_share(res.patched, res.base, res.source, n_boot=n_boot, seed=seed)
    acc = counterfactual_accuracy(
        res.patched, res.base, res.source, res.target, n_boot=n_boot, seed=seed
    )
    return sh, acc


def _errors(
    patched: torch.Tensor, base: torch.Tensor, source: torch.Tensor, target: torch.Tensor
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t = _flat(target.reshape(base.shape), 1)
    e = ((_flat(patched, 2) - t.unsqueeze(0)) ** 2).sum(-1)
    e0 = ((_flat(base, 1) - t) ** 2).sum(-1)
    e1 = ((_flat(source, 1) - t) ** 2).sum(-1)
    return e.numpy(), e0.numpy(), e1.numpy()


def _ratio_of_sums(num: np.ndarray, den: np.ndarray, e0: np.ndarray, axis: int = -1):
    top, bottom = np.sum(num, axis=axis), np.sum(den, axis=axis)
    ok = bottom > EPS_ACC * np.sum(e0, axis=axis)
    return np.where(ok, top / np.where(ok, bottom, 1.0), np.nan)


def counterfactual_accuracy(
    patched: torch.Tensor,
    base: torch.Tensor,
    source: torch.Tensor,
    target: torch.Tensor,
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> np.ndarray:
    """``(K, 3)``: ``acc = sum_n (e0_n - e_n) / sum_n (e0_n - e1_n)`` and its CI over pairs.

    ``e_n = ||D~_n - x'_n||^2``, ``e0_n = ||D_n - x'_n||^2``, ``e1_n = ||D'_n - x'_n||^2``
    with ``x'`` the real counterfactual images ``target``: 1 = as close to ``x'`` as the
    model's reconstruction of ``x'``, 0 = no closer than ``D(x)``; NaN where ``sum_n (e0_n -
    e1_n) <= 1e-6 sum_n e0_n``. The CI resamples whole pairs.
    """
    e, e0, e1 = _errors(patched, base, source, target)
    den = e0 - e1
    out = np.empty((e.shape[0], 3))
    for k in range(e.shape[0]):
        num = e0 - e[k]
        est = float(_ratio_of_sums(num, den, e0))
        if not np.isfinite(est):
            out[k] = np.nan
            continue
        _, lo, hi = bootstrap_ci(
            (num, den, e0),
            statistic=lambda a, b, c, axis=-1: _ratio_of_sums(a, b, c, axis),
            n_boot=n_boot,
            random_state=seed,
            paired=True,
            vectorized=True,
        )
        out[k] = (est, lo, hi)
    return out


def factor_direction(base: torch.Tensor, source: torch.Tensor) -> torch.Tensor | None:
    """Unit direction ``(D,)`` of a factor's output change; None when no pair moves the output.

    The leading right singular vector of the unit changes ``(D'_n - D_n) / ||D'_n - D_n||``
    of the pairs with ``D'_n != D_n`` (as :func:`pair_shares`): the unit ``u`` maximising
    ``sum_n <d_n, u>^2``, the mean direction up to sign (a factor's pairs change it both ways).
    """
    b, s = _flat(base, 1), _flat(source, 1)
    d = s - b
    dd = (d * d).sum(-1)
    moved = dd > EPS * ((b * b).sum(-1) + (s * s).sum(-1))
    if not moved.any():
        return None
    unit = d[moved] / dd[moved].sqrt().unsqueeze(1)
    return torch.linalg.svd(unit, full_matrices=False).Vh[0]


def pair_isolation(
    patched: torch.Tensor, base: torch.Tensor, directions: torch.Tensor
) -> torch.Tensor:
    """``(K, N)``: ``1 - mean_g |<D~ - D, u_g>| / ||D~ - D||`` per pair; NaN where ``D~ = D``.

    ``D~ = D`` means ``||D~ - D||^2 <= 1e-10 (||D||^2 + ||D~||^2)`` (round-off moves only).

    ``directions`` ``(G, ...)``: the other factors' unit directions ``u_g`` (normalised
    here); NaN everywhere when ``G = 0``.
    """
    delta = _flat(patched, 2) - _flat(base, 1).unsqueeze(0)
    u = directions.reshape(directions.shape[0], -1).double()
    if u.shape[0] == 0:
        return torch.full(delta.shape[:2], torch.nan, dtype=torch.float64)
    u = u / u.norm(dim=1, keepdim=True).clamp_min(1e-300)
    b = _flat(base, 1)
    norm = delta.norm(dim=-1)
    scale = (b * b).sum(-1).unsqueeze(0) + (_flat(patched, 2) ** 2).sum(-1)
    moved = norm**2 > EPS * scale
    cos = (delta @ u.T).abs() / torch.where(moved, norm, 1.0).unsqueeze(-1)
    return torch.where(moved, 1 - cos.mean(-1), torch.nan)


def isolation(
    patched: torch.Tensor,
    base: torch.Tensor,
    directions: torch.Tensor,
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> np.ndarray:
    """``(K, 3)``: mean :func:`pair_isolation` over the pairs the patch moves, and its CI."""
    return _mean_ci(pair_isolation(patched, base, directions), n_boot, seed)


def _check_images(arg: str, t: object, like: torch.Tensor | None = None) -> torch.Tensor:
    if not isinstance(t, torch.Tensor) or t.ndim < 2:
        raise ArgumentError(f"{arg}: expected a batch tensor (N, ...), got {type(t).__name__}")
    if like is not None and t.shape[0] != like.shape[0]:
        raise ArgumentError(
            f"{arg}: expected {like.shape[0]} rows (one per pair), got {t.shape[0]}"
        )
    return t


def _latent_variants(
    lens: Lens, z: torch.Tensor, zp: torch.Tensor, dims: list[tuple[int, ...]], max_batch: int
) -> torch.Tensor:
    """``(K, N, ...)``: ``D(z with z[V_k] = z'[V_k])`` in stacked decodes of ``max_batch`` rows."""
    n, width = z.shape[0], z.shape[1]
    mask = torch.zeros(len(dims), width, dtype=torch.bool)
    for k, d in enumerate(dims):
        mask[k, list(d)] = True
    mask = mask.reshape(len(dims), 1, width, *([1] * (z.ndim - 2))).to(z.device)
    stacked = torch.where(mask, zp.unsqueeze(0), z.unsqueeze(0)).reshape(-1, *z.shape[1:])
    outs = [
        lens.decode_output(stacked[r : r + max_batch]) for r in range(0, len(stacked), max_batch)
    ]
    out = torch.cat(outs)
    return out.reshape(len(dims), n, *out.shape[1:])


def _unit_variants(
    lens: Lens,
    x: torch.Tensor,
    xp: torch.Tensor,
    layer: str,
    units: list[tuple[int, ...]],
    max_batch: int,
) -> torch.Tensor:
    """``(K, N, ...)`` outputs with units ``U_k`` of ``layer`` from ``x'``: stacked suffix runs."""
    n_total = int(x.shape[0])
    block = max(1, min(n_total, max_batch))
    width = lens.units(layer)
    parts = []
    for b0 in range(0, n_total, block):
        sl = slice(b0, min(n_total, b0 + block))
        n = sl.stop - sl.start
        cap = lens.capture(x[sl])
        _, src = lens.run_with_cache(xp[sl], [layer])
        a1, a2 = cap.activations[layer], src[layer]
        kb = max(1, max_batch // n)
        outs = []
        for c0 in range(0, len(units), kb):
            chunk = units[c0 : c0 + kb]
            mask = torch.zeros(len(chunk), width, dtype=torch.bool)
            for k, u in enumerate(chunk):
                mask[k, list(u)] = True
            mask = mask.reshape(len(chunk), 1, width, *([1] * (a1.ndim - 2))).to(a1.device)
            variants = torch.where(mask, a2.unsqueeze(0), a1.unsqueeze(0))
            outs.append(lens.run_variants(layer, variants, cap, target="output"))
        parts.append(torch.cat(outs))
    return torch.cat(parts, dim=1)


def _check_interchange_args(
    x: torch.Tensor,
    x_prime: torch.Tensor,
    target_images: torch.Tensor | None,
    other_directions: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The checked ``x``, ``x_prime`` and ``target_images`` of :func:`interchange`."""
    x = _check_images("x", x)
    x_prime = _check_images("x_prime", x_prime)
    if x.shape != x_prime.shape:
        raise ArgumentError(
            f"x_prime: expected the shape of x {tuple(x.shape)}, got {tuple(x_prime.shape)}"
        )
    if target_images is not None:
        target_images = _check_images("target_images", target_images, x)
    if other_directions is not None and not isinstance(other_directions, torch.Tensor):
        raise ArgumentError(
            f"other_directions: expected a tensor (G, ...), got {type(other_directions).__name__}"
        )
    return x, x_prime, target_images


def _decode_batched(lens: Lens, z: torch.Tensor, max_batch: int) -> torch.Tensor:
    """``lens.decode_output(z)`` in runs of ``max_batch`` rows, concatenated."""
    return torch.cat(
        [lens.decode_output(z[r : r + max_batch]) for r in range(0, len(z), max_batch)]
    )


def _patch_variables(
    lens: Lens,
    x: torch.Tensor,
    x_prime: torch.Tensor,
    z: torch.Tensor,
    zp: torch.Tensor,
    resolved: Sequence[Variable],
    base: torch.Tensor,
    max_batch: int,
) -> torch.Tensor:
    """``(K, *base.shape)`` on the CPU: the patched outputs, one layer's variables at a time."""
    patched = torch.empty(len(resolved), *base.shape, dtype=base.dtype)
    groups: dict[str, list[int]] = {}
    for k, (layer, _) in enumerate(resolved):
        groups.setdefault(layer, []).append(k)
    for layer, ks in groups.items():
        sets = [resolved[k][1] for k in ks]
        if layer == lens.latent_name:
            out = _latent_variants(lens, z, zp, sets, max_batch)
        else:
            out = _unit_variants(lens, x, x_prime, layer, sets, max_batch)
        patched[ks] = out.reshape(len(ks), *base.shape).to(patched.dtype).cpu()
    return patched


def _target_for(target_images: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """``target_images`` on the CPU in the output's shape; an error unless it has its size."""
    if target_images.numel() != base.numel():
        raise ArgumentError(
            f"target_images: expected {base.numel()} values (the output's shape "
            f"{tuple(base.shape)}), got shape {tuple(target_images.shape)}"
        )
    return target_images.detach().cpu().reshape(base.shape)


def _isolation_for(
    other_directions: torch.Tensor, patched: torch.Tensor, base: torch.Tensor
) -> torch.Tensor:
    """:func:`pair_isolation` against ``other_directions``, checked against the output size."""
    dirs = other_directions.detach().cpu()
    if dirs.ndim < 1 or (len(dirs) and dirs[0].numel() != base[0].numel()):
        raise ArgumentError(
            f"other_directions: expected (G, {base[0].numel()} values), got shape "
            f"{tuple(other_directions.shape)}"
        )
    return pair_isolation(patched, base, dirs)


def interchange(
    lens: Lens,
    x: torch.Tensor,
    x_prime: torch.Tensor,
    variables: Sequence[object],
    *,
    target_images: torch.Tensor | None = None,
    other_directions: torch.Tensor | None = None,
    max_batch: int | None = None,
) -> InterchangeResult:
    """Interchange interventions of every variable on every pair ``(x_n, x'_n)``, batched.

    ``D~[k, n]`` is the output of ``x_n`` with variable ``k`` taken from ``x'_n`` (see the
    module docstring for the variable forms and the formulas). ``target_images``: the real
    counterfactual images (usually ``x'``) kept on the result for
    :func:`counterfactual_accuracy`; ``other_directions`` ``(G, ...)``: unit output
    directions of the other factors (:func:`factor_direction`) for :func:`pair_isolation`.
    Latent variables are decoded in stacked ``(K * N, L)`` batches, unit variables of one
    layer in stacked suffix runs; ``max_batch`` rows at most per forward (default: the
    lens's, :func:`vaelens.lens.patching.default_max_batch`).
    """
    x, x_prime, target_images = _check_interchange_args(x, x_prime, target_images, other_directions)
    max_batch = resolve_max_batch(max_batch, lens)
    lens._ensure_traced(x[:2])
    with torch.no_grad(), lens.sweep_layout(probe=x[:2]):
        z = lens.encode_mean(x)
        zp = lens.encode_mean(x_prime)
        resolved = resolve_variables(lens, variables, int(z.shape[1]))
        base = _decode_batched(lens, z, max_batch)
        source = _decode_batched(lens, zp, max_batch)
        patched = _patch_variables(lens, x, x_prime, z, zp, resolved, base, max_batch)
    base, source = base.cpu(), source.cpu()
    target = None if target_images is None else _target_for(target_images, base)
    iso = None
    if other_directions is not None:
        iso = _isolation_for(other_directions, patched, base)
    return InterchangeResult(
        variables=resolved,
        patched=patched,
        base=base,
        source=source,
        target=target,
        share=pair_shares(patched, base, source),
        isolation=iso,
    )


# --------------------------------------------------------------------------- encoder side


def check_encoder_layers(lens: Lens, layers: object) -> list[str]:
    """``layers`` checked: a list of encoder hook names (one-line error naming the entry)."""
    if isinstance(layers, str):
        layers = [layers]
    if not isinstance(layers, Sequence) or not layers:
        raise ArgumentError(f"layers: expected a non-empty list of hook names, got {layers!r}")
    points = lens._ensure_traced()
    out: list[str] = []
    for k, name in enumerate(layers):
        if not isinstance(name, str) or name not in points:
            raise ArgumentError(
                f"layers[{k}]: {name!r} is not a hook point of {type(lens.model).__name__}"
            )
        if points[name].phase != "encode":
            raise ArgumentError(
                f"layers[{k}]: {name!r} is not on the encoder side (it fires in "
                f"{points[name].phase}); expected one of {lens.encoder_hook_names}"
            )
        if name not in out:
            out.append(name)
    return out


class EncoderInterchange:
    """Encoder-side interchange interventions on the units of encoder layers, batched.

    For pairs ``(x_n, x'_n)`` and an encoder layer ``l`` with a unit set ``U``::

        A~_l = A_l(x) with A~_l[:, U] = A_l(x')[:, U]
        mu~  = the posterior mean of the rest of the encoder run from A~_l

    The passes are cached once at construction, per block of ``max_batch`` pairs: one
    :meth:`Lens.capture` of ``x`` (to ``target="latent"``) and one
    :meth:`Lens.run_with_cache` of ``x'`` at every layer. :meth:`latents` then runs ``K``
    unit sets of one layer as stacked suffix runs of ``K * N`` rows
    (:meth:`Lens.run_variants`, chunked to ``max_batch`` rows), never one forward per pair
    or per set, and can be called again (a greedy search) without repeating those passes.

    Attributes: ``layers``; ``base`` ``(N, L)``: ``mu(x)``; ``source`` ``(N, L)``:
    ``mu(x')`` (both on the CPU); ``max_batch``.
    """

    def __init__(
        self,
        lens: Lens,
        x: torch.Tensor,
        x_prime: torch.Tensor,
        layers: str | Sequence[str],
        *,
        max_batch: int | None = None,
    ) -> None:
        x, x_prime, _ = _check_interchange_args(x, x_prime, None, None)
        self.lens = lens
        self.max_batch = resolve_max_batch(max_batch, lens)
        lens._ensure_traced(x[:2])
        self.layers = check_encoder_layers(lens, layers)
        n = int(x.shape[0])
        block = max(1, min(n, self.max_batch))
        self._blocks: list[tuple[Capture, dict[str, torch.Tensor]]] = []
        base, source = [], []
        with torch.no_grad(), lens.sweep_layout(probe=x[:2]):
            for b0 in range(0, n, block):
                sl = slice(b0, min(n, b0 + block))
                cap = lens.capture(x[sl], target="latent")
                mup, src = lens.run_with_cache(x_prime[sl], self.layers, target="latent")
                self._blocks.append((cap, dict(src)))
                base.append(cap.latent.detach().cpu())
                source.append(mup.detach().cpu())
        self.base = torch.cat(base)
        self.source = torch.cat(source)

    def width(self, layer: str) -> int:
        """The number of units (channels or features) of ``layer``."""
        return self.lens.units(self._layer(layer))

    def _layer(self, layer: str) -> str:
        if layer not in self.layers:
            raise ArgumentError(f"layer: {layer!r} is not one of the cached layers {self.layers}")
        return layer

    def unit_change(self, layer: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(C,)`` change and scale of each unit of ``layer`` over the pairs (float64, CPU).

        ``change_u = sum_n ||A_l(x'_n)[u] - A_l(x_n)[u]||^2`` and ``scale_u = sum_n
        ||A_l(x_n)[u]||^2 + ||A_l(x'_n)[u]||^2``; unit ``u`` moves (:meth:`live_units`)
        where ``change_u > 1e-10 scale_u``.
        """
        layer = self._layer(layer)
        width = self.lens.units(layer)
        change = torch.zeros(width, dtype=torch.float64)
        scale = torch.zeros(width, dtype=torch.float64)
        for cap, src in self._blocks:
            a1 = cap.activations[layer].detach().double().cpu()
            a2 = src[layer].detach().double().cpu()
            a1, a2 = a1.reshape(*a1.shape[:2], -1), a2.reshape(*a2.shape[:2], -1)
            change = change + ((a2 - a1) ** 2).sum((0, 2))
            scale = scale + (a1**2).sum((0, 2)) + (a2**2).sum((0, 2))
        return change, scale

    def live_units(self, layer: str) -> list[int]:
        """Units of ``layer`` whose activation changes on some pair (``change > 1e-10 scale``).

        A unit that is dead on every pair, or constant, has ``A_l(x')[u] = A_l(x)[u]``: its
        patch is the identity, so it can carry nothing.
        """
        change, scale = self.unit_change(layer)
        return [int(u) for u in torch.nonzero((change > EPS * scale) & (change > 0)).flatten()]

    def latents(self, layer: str, units: Sequence[object]) -> torch.Tensor:
        """``(K, N, L)`` on the CPU: ``mu~`` of every pair with units ``units[k]`` of ``layer``
        taken from ``x'``, in stacked suffix runs of at most ``max_batch`` rows."""
        layer = self._layer(layer)
        width = self.width(layer)
        if isinstance(units, str) or not isinstance(units, Sequence) or not units:
            raise ArgumentError(f"units: expected a non-empty list of unit sets, got {units!r}")
        sets = [_units(f"units[{k}]", u, width) for k, u in enumerate(units)]
        parts = []
        with torch.no_grad(), self.lens.sweep_layout():
            for cap, src in self._blocks:
                a1, a2 = cap.activations[layer], src[layer]
                n = int(a1.shape[0])
                kb = max(1, self.max_batch // n)
                outs = []
                for c0 in range(0, len(sets), kb):
                    chunk = sets[c0 : c0 + kb]
                    mask = torch.zeros(len(chunk), width, dtype=torch.bool)
                    for k, u in enumerate(chunk):
                        mask[k, list(u)] = True
                    mask = mask.reshape(len(chunk), 1, width, *([1] * (a1.ndim - 2)))
                    variants = torch.where(mask.to(a1.device), a2.unsqueeze(0), a1.unsqueeze(0))
                    out = self.lens.run_variants(layer, variants, cap, target="latent")
                    outs.append(out.detach().cpu())
                parts.append(torch.cat(outs))
        return torch.cat(parts, dim=1)

    def outputs(self, z: torch.Tensor) -> torch.Tensor:
        """``(K, N, ...)`` on the CPU: ``lens.decode_output`` of latents ``(K, N, L)``, in
        stacked decodes of at most ``max_batch`` rows."""
        k, n = int(z.shape[0]), int(z.shape[1])
        p = next(self.lens.model.parameters(), None)
        with torch.no_grad(), self.lens.sweep_layout():
            flat = z.reshape(k * n, *z.shape[2:]).to(p.device if p is not None else "cpu")
            out = _decode_batched(self.lens, flat, self.max_batch).detach().cpu()
        return out.reshape(k, n, *out.shape[1:])


def encoder_interchange(
    lens: Lens,
    x: torch.Tensor,
    x_prime: torch.Tensor,
    layer: str,
    units: Sequence[object],
    *,
    max_batch: int | None = None,
) -> torch.Tensor:
    """``(K, N, L)``: the posterior mean ``mu~`` of each ``x_n`` with units ``units[k]`` of the
    encoder layer ``layer`` taken from ``x'_n`` (see :class:`EncoderInterchange`).

    Score it in latent space with :func:`pair_shares` / :func:`interchange_share`:
    ``<mu~ - mu, mu' - mu> / ||mu' - mu||^2`` per pair, ``mu = mu(x)``, ``mu' = mu(x')``.
    """
    enc = EncoderInterchange(lens, x, x_prime, [layer], max_batch=max_batch)
    return enc.latents(layer, units)
