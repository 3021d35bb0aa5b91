"""Distributed alignment search (DAS): interchange interventions on a learned rotated subspace.

An interchange intervention on a set of latent dims (:mod:`vaelens.lens.interchange`) asks
whether a factor lives on those *axes*. DAS asks whether it lives on any ``k``-dimensional
*subspace*: with an orthogonal ``R`` (``d x d``) of a variable space of width ``d``, ``R_k``
its first ``k`` columns and ``P = R_k R_k^T``, for a pair ``(x, x')`` that differs only in
factor ``f``::

    latent (d = L):           z~ = z + P (z' - z),              D~ = D(z~)
    layer l (d = channels):   A~_l = A_l + P (A'_l - A_l),      D~ = the rest of the network
                                                                      run from A~_l

with ``z = z(x)``, ``z' = z(x')`` the latent means and ``A_l``, ``A'_l`` the activations of
``x``, ``x'`` at hook point ``l``. ``P`` acts on axis 1 (the channel axis of ``(N, C, H,
W)``, the same rotation at every position; the features of ``(N, F)``). ``P = I`` restricted
to a coordinate set is the axis-aligned interchange of those units.

``R = Q0 expm(S - S^T)``: ``Q0`` a random orthogonal matrix drawn from
``torch.Generator().manual_seed(seed)`` (the QR of a Gaussian matrix, signs fixed), ``S``
(``d x d``) learned, starting at 0, so ``R`` stays exactly orthogonal. :func:`fit_alignment`
trains ``S`` with Adam for ``steps`` steps, one block of ``batch_size`` training pairs a step
(the blocks visited in seeded shuffled epochs), minimising the normalised counterfactual
error of the block::

    loss = sum_n ||D~_n - D'_n||^2 / sum_n ||D'_n - D_n||^2          (D' = D(x'), D = D(x))

It is 0 iff ``D~ = D'`` on every pair. Writing ``D~_n - D_n = s_n (D'_n - D_n) + r_n`` with
``r_n`` orthogonal to ``D'_n - D_n``, a pair's term is ``((1 - s_n)^2 ||D'_n - D_n||^2 +
||r_n||^2)``: it pushes the interchange share ``s_n`` to 1 and the off-target change
``r_n`` to 0. The score is not the loss but the interchange share on *held-out* pairs,
``share = mean_n <D~_n - D_n, D'_n - D_n> / ||D'_n - D_n||^2``
(:func:`vaelens.lens.pair_shares`), and the counterfactual accuracy against the real
images ``x'`` (:func:`vaelens.lens.counterfactual_accuracy`); :func:`rotated_interchange`
gives the patched outputs in the :class:`InterchangeResult` those functions read.

Axis-aligned comparison: :func:`best_axis_units` picks the ``k`` coordinates (latent dims or
channels) whose joint interchange has the largest mean share on the training pairs,
exhaustively over all ``C(d, k)`` sets when there are at most ``max_sets``, else greedily
(add, ``k`` times, the unit that most increases the joint share). A factor encoded on a
rotated subspace shows as a high learned share beside a low axis-aligned one.

Everything is stacked on the batch axis: each training step is one stacked forward (and
backward) of a block of pairs; evaluation runs blocks of ``max_batch`` pairs (latent:
stacked ``lens.decode_output``; layer: one :meth:`Lens.capture` of ``x`` per block and a
suffix run :meth:`Lens.run_variants` from ``l``), never one forward per pair.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import torch

from vaelens.errors import ArgumentError
from vaelens.lens.hooks import Capture, Lens
from vaelens.lens.interchange import (
    EPS,
    InterchangeResult,
    _target_for,
    interchange,
    mean_share,
    pair_shares,
)
from vaelens.lens.patching import resolve_max_batch

__all__ = [
    "AlignmentFit",
    "alignment_width",
    "best_axis_units",
    "fit_alignment",
    "random_orthogonal",
    "rotated_interchange",
    "rotation_matrix",
    "subspace_interchange",
]


@dataclass
class AlignmentFit:
    """A learned rotation: ``rotation`` ``R`` (``d x d``), ``basis = R[:, :k]`` (``d x k``).

    ``layer``: the hook name (``lens.latent_name`` for the latent); ``losses`` ``(steps,)``:
    the training loss of each step (NaN for a block the factor does not move); ``moved``:
    whether the factor moves the output on the training pairs at all (when it does not,
    nothing was trained and ``rotation`` is the random start ``Q0``).
    """

    layer: str
    k: int
    rotation: torch.Tensor
    basis: torch.Tensor
    losses: np.ndarray
    moved: bool


def random_orthogonal(d: int, generator: torch.Generator) -> torch.Tensor:
    """A random ``(d, d)`` orthogonal matrix (float64): ``Q`` of the QR of a Gaussian, signs fixed."""
    g = torch.randn(d, d, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(g)
    sign = torch.sign(torch.diagonal(r))
    return q * torch.where(sign == 0, 1.0, sign)


def rotation_matrix(base: torch.Tensor, skew: torch.Tensor) -> torch.Tensor:
    """``R = base expm(S - S^T)``: orthogonal for an orthogonal ``base`` and any square ``S``."""
    return base @ torch.linalg.matrix_exp(skew - skew.T)


def subspace_interchange(
    a: torch.Tensor, a_prime: torch.Tensor, basis: torch.Tensor
) -> torch.Tensor:
    """``a + P (a' - a)`` on axis 1, ``P = B B^T`` for a basis ``B`` ``(d, k)`` of orthonormal columns.

    ``a``, ``a_prime``: ``(N, d, ...)``; the same projection at every trailing position.
    """
    b = basis.to(a.dtype)
    delta = (a_prime - a).movedim(1, -1)
    return a + ((delta @ b) @ b.T).movedim(-1, 1)


def alignment_width(lens: Lens, layer: str | None, x: torch.Tensor) -> tuple[str, int]:
    """``(hook name, d)``: the variable space of ``layer`` (``None``: the latent) and its width.

    One-line :class:`ArgumentError` naming ``layer`` when it is not a hook point.
    """
    lens._ensure_traced(x[:2])
    if layer is None or layer == lens.latent_name:
        with torch.no_grad():
            return lens.latent_name, int(lens.encode_mean(x[:2]).shape[1])
    points = lens._ensure_traced()
    if not isinstance(layer, str) or layer not in points:
        names = [n for n in points if n != lens.latent_name]
        few = ", ".join(repr(n) for n in names[:6]) + (", ..." if len(names) > 6 else "")
        raise ArgumentError(
            f"layer: {layer!r} is not a hook point of {type(lens.model).__name__}; "
            f"expected None (the latent) or one of {few}"
        )
    return layer, points[layer].units


def _check_k(k: object, d: int, name: str) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= int(k) <= d:
        raise ArgumentError(f"k: expected an int in [1, {d}] (the width of {name}), got {k!r}")
    return int(k)


@dataclass
class _Pairs:
    """One block of pairs: the variables ``a``, ``a'`` (axis 1 = the rotated axis), outputs."""

    a: torch.Tensor
    ap: torch.Tensor
    base: torch.Tensor  # D(x)
    source: torch.Tensor  # D(x')
    capture: Capture | None  # the pass of x (layer variables only)
    scale: float  # sum_n ||D'_n - D_n||^2
    moved: bool


def _blocks(lens: Lens, x: torch.Tensor, xp: torch.Tensor, layer: str, rows: int) -> list[_Pairs]:
    """The pairs in blocks of ``rows``, each with its variables and outputs (no grad)."""
    out = []
    with torch.no_grad():
        for r in range(0, int(x.shape[0]), rows):
            xb, xpb = x[r : r + rows], xp[r : r + rows]
            if layer == lens.latent_name:
                a, ap = lens.encode_mean(xb), lens.encode_mean(xpb)
                base, source, cap = lens.decode_output(a), lens.decode_output(ap), None
            else:
                cap = lens.capture(xb)
                source, src = lens.run_with_cache(xpb, [layer])
                a, ap, base = cap.activations[layer], src[layer], cap.output
            b, s = base.reshape(len(base), -1).double(), source.reshape(len(base), -1).double()
            dd = ((s - b) ** 2).sum(-1)
            moved = dd > EPS * ((b * b).sum(-1) + (s * s).sum(-1))
            out.append(_Pairs(a, ap, base, source, cap, float(dd.sum()), bool(moved.any())))
    return out


def _outputs(lens: Lens, block: _Pairs, basis: torch.Tensor, layer: str) -> torch.Tensor:
    """``D~`` of the block (rows as ``block.base``): the rotated interchange run on."""
    mixed = subspace_interchange(block.a, block.ap, basis)
    if block.capture is None:
        return lens.decode_output(mixed)
    return lens.run_variants(layer, mixed.unsqueeze(0), block.capture, target="output")[0]


def _check_pairs(x: object, x_prime: object) -> tuple[torch.Tensor, torch.Tensor]:
    for arg, t in (("x", x), ("x_prime", x_prime)):
        if not isinstance(t, torch.Tensor) or t.ndim < 2 or t.shape[0] < 1:
            raise ArgumentError(f"{arg}: expected a batch tensor (N, ...), got {type(t).__name__}")
    assert isinstance(x, torch.Tensor) and isinstance(x_prime, torch.Tensor)
    if x.shape != x_prime.shape:
        raise ArgumentError(
            f"x_prime: expected the shape of x {tuple(x.shape)}, got {tuple(x_prime.shape)}"
        )
    return x, x_prime


def _check_fit_args(steps: object, lr: object, batch_size: object, seed: object) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ArgumentError(f"steps: expected an int >= 1, got {steps!r}")
    if isinstance(lr, bool) or not isinstance(lr, int | float) or not math.isfinite(lr) or lr <= 0:
        raise ArgumentError(f"lr: expected a finite number > 0, got {lr!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ArgumentError(f"batch_size: expected an int >= 1, got {batch_size!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ArgumentError(f"seed: expected an int, got {seed!r}")


def _axes_first(units: Sequence[int], d: int, k: int) -> torch.Tensor:
    """The permutation matrix ``(d, d)`` whose first ``k`` columns are the axes ``units``."""
    chosen = [int(u) for u in units]
    if len(chosen) != k or len(set(chosen)) != k or not all(0 <= u < d for u in chosen):
        raise ArgumentError(f"init_units: expected {k} distinct units in [0, {d}), got {units!r}")
    order = chosen + [u for u in range(d) if u not in chosen]
    return torch.eye(d, dtype=torch.float64)[:, order]


def fit_alignment(
    lens: Lens,
    x: torch.Tensor,
    x_prime: torch.Tensor,
    *,
    k: int = 1,
    layer: str | None = None,
    steps: int = 200,
    lr: float = 0.05,
    batch_size: int = 64,
    seed: int = 0,
    max_batch: int | None = None,
    init_units: Sequence[int] | None = None,
) -> AlignmentFit:
    """Learn ``R`` so that interchanging its first ``k`` coordinates carries ``x -> x'``.

    ``x``, ``x_prime`` ``(N, ...)``: the training pairs (one factor changed); ``layer``: a
    hook name, or ``None`` for the latent. Adam (``lr``) on ``S`` of ``R = Q0 expm(S -
    S^T)`` for ``steps`` steps of ``min(batch_size, max_batch)`` pairs each, minimising
    ``sum_n ||D~_n - D'_n||^2 / sum_n ||D'_n - D_n||^2`` (module docstring). ``seed`` seeds
    ``Q0`` and the block order (``torch.Generator``): the same arguments give the same
    rotation on the CPU. ``init_units`` (``k`` distinct units, e.g. the best axis-aligned
    set): start from the permutation ``Q0`` whose first ``k`` columns are those axes, so the
    search starts at the axis-aligned interchange and can only improve on it on the
    training pairs (default: a random orthogonal ``Q0``).
    """
    x, x_prime = _check_pairs(x, x_prime)
    _check_fit_args(steps, lr, batch_size, seed)
    max_batch = resolve_max_batch(max_batch, lens)
    name, d = alignment_width(lens, layer, x)
    k = _check_k(k, d, name)
    gen = torch.Generator().manual_seed(seed)
    q0 = random_orthogonal(d, gen) if init_units is None else _axes_first(init_units, d, k)
    losses = np.full(steps, np.nan)
    with lens.sweep_layout(probe=x[:2]):
        blocks = _blocks(lens, x, x_prime, name, min(batch_size, max_batch))
        moved = any(b.moved for b in blocks)
        dtype = blocks[0].a.dtype
        base = q0.to(dtype)
        skew = torch.zeros(d, d, dtype=dtype, requires_grad=True)
        if moved:
            opt = torch.optim.Adam([skew], lr=float(lr))
            order: list[int] = []
            for step in range(steps):
                if not order:
                    order = torch.randperm(len(blocks), generator=gen).tolist()
                block = blocks[order.pop()]
                if not block.moved:
                    continue
                with torch.enable_grad():
                    basis = rotation_matrix(base, skew)[:, :k]
                    out = _outputs(lens, block, basis, name)
                    loss = ((out - block.source) ** 2).sum() / block.scale
                    (grad,) = torch.autograd.grad(loss, [skew])
                skew.grad = grad
                opt.step()
                losses[step] = float(loss.detach())
    with torch.no_grad():
        rot = rotation_matrix(base, skew).detach()
    return AlignmentFit(name, k, rot, rot[:, :k].clone(), losses, moved)


def rotated_interchange(
    lens: Lens,
    x: torch.Tensor,
    x_prime: torch.Tensor,
    basis: torch.Tensor,
    *,
    layer: str | None = None,
    target_images: torch.Tensor | None = None,
    max_batch: int | None = None,
) -> InterchangeResult:
    """The interchange on the subspace of ``basis`` ``(d, k)`` for every pair, as one variable.

    ``D~_n`` = the output of ``x_n`` with ``a~ = a + B B^T (a' - a)`` at ``layer`` (``None``:
    the latent); ``basis`` needs orthonormal columns (:attr:`AlignmentFit.basis`). The result
    has ``K = 1``: ``variables = [(layer, (0, ..., k-1))]`` (the rotated coordinates),
    ``patched`` ``(1, N, ...)``, ``share`` ``(1, N)``; ``target`` the real images
    ``target_images`` (reshaped) or None. Pairs run in blocks of ``max_batch``.
    """
    x, x_prime = _check_pairs(x, x_prime)
    max_batch = resolve_max_batch(max_batch, lens)
    name, d = alignment_width(lens, layer, x)
    if not isinstance(basis, torch.Tensor) or basis.ndim != 2 or basis.shape[0] != d:
        got = tuple(basis.shape) if isinstance(basis, torch.Tensor) else type(basis).__name__
        raise ArgumentError(f"basis: expected a tensor ({d}, k) (the width of {name}), got {got}")
    if target_images is not None and (
        not isinstance(target_images, torch.Tensor) or target_images.shape[0] != x.shape[0]
    ):
        raise ArgumentError(f"target_images: expected {x.shape[0]} rows (one per pair)")
    with torch.no_grad(), lens.sweep_layout(probe=x[:2]):
        blocks = _blocks(lens, x, x_prime, name, max_batch)
        patched = torch.cat([_outputs(lens, b, basis, name) for b in blocks]).cpu()
    base = torch.cat([b.base for b in blocks]).cpu()
    source = torch.cat([b.source for b in blocks]).cpu()
    patched = patched.unsqueeze(0)
    target = None if target_images is None else _target_for(target_images, base)
    return InterchangeResult(
        variables=[(name, tuple(range(int(basis.shape[1]))))],
        patched=patched,
        base=base,
        source=source,
        target=target,
        share=pair_shares(patched, base, source),
        isolation=None,
    )


def best_axis_units(
    lens: Lens,
    x: torch.Tensor,
    x_prime: torch.Tensor,
    *,
    k: int = 1,
    layer: str | None = None,
    max_sets: int = 128,
    max_batch: int | None = None,
) -> tuple[int, ...]:
    """The ``k`` units (latent dims or channels of ``layer``) with the largest joint share.

    Mean interchange share over the pairs (:func:`vaelens.lens.interchange` of the set):
    every ``C(d, k)`` set when there are at most ``max_sets`` (exhaustive), else greedy
    (``k`` steps, each adding the unit that most increases the joint share). Empty when the
    factor moves no output.
    """
    x, x_prime = _check_pairs(x, x_prime)
    name, d = alignment_width(lens, layer, x)
    k = _check_k(k, d, name)
    if isinstance(max_sets, bool) or not isinstance(max_sets, int) or max_sets < 1:
        raise ArgumentError(f"max_sets: expected an int >= 1, got {max_sets!r}")

    def best(sets: list[tuple[int, ...]]) -> tuple[tuple[int, ...], float]:
        res = interchange(lens, x, x_prime, [(name, s) for s in sets], max_batch=max_batch)
        shares = mean_share(res.share)
        if not np.isfinite(shares).any():
            return (), math.nan
        i = int(np.nanargmax(shares))
        return sets[i], float(shares[i])

    if math.comb(d, k) <= max_sets:
        return best(list(combinations(range(d), k)))[0]
    chosen: tuple[int, ...] = ()
    for _ in range(k):
        rest = [u for u in range(d) if u not in chosen]
        chosen, _share = best([tuple(sorted((*chosen, u))) for u in rest])
        if not chosen:
            return ()
    return chosen
