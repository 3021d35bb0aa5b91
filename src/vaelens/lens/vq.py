"""Discrete interventions on a VQ-VAE's code grid.

A VQ-VAE's latent is discrete: ``decode(z)`` quantises ``z`` to the nearest codebook entry
at each position first, so a small continuous perturbation of ``z_e`` usually snaps back to
the same code and reads as zero effect. The discrete intervention swaps the code used at
one position for another codebook entry and decodes::

    codes~ = codes with codes~[n, p] = c'          (p a position of the (H', W') grid)
    effect[n, p] = metric(output_map(decode_codes(codes~)), output_map(decode_codes(codes)))

Duck-typed contract (no base class): ``model.decode_codes(codes (N, H', W')) -> decoded``
and ``encode(x)`` returning an object with ``.codes`` (``(N, H', W')`` long); the codebook
size from ``num_codes=``, or the model's ``num_codes`` / ``codebook_size`` / ``n_codes``
attribute, or the first axis of a ``codebook`` / ``embedding`` weight.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from vaelens.errors import ArgumentError, ModelContractError
from vaelens.lens.hooks import Lens
from vaelens.lens.patching import Metric, effect_metric, resolve_max_batch

__all__ = [
    "code_swap_effects",
    "code_swap_outputs",
    "codebook_size",
    "codebook_vectors",
    "encode_codes",
    "is_vq",
]


def is_vq(model: nn.Module) -> bool:
    """Whether ``model`` offers discrete interventions (``decode_codes``)."""
    return callable(getattr(model, "decode_codes", None))


def codebook_vectors(model: nn.Module) -> torch.Tensor | None:
    """The codebook ``(K, D)`` if the model exposes one (``codebook``/``embedding``), else ``None``."""
    for owner in (model, getattr(model, "quantizer", None), getattr(model, "vq", None)):
        if owner is None:
            continue
        for attr in ("codebook", "embedding", "embeddings"):
            obj = getattr(owner, attr, None)
            if isinstance(obj, nn.Embedding):
                return obj.weight.detach()
            if isinstance(obj, torch.Tensor) and obj.ndim == 2:
                return obj.detach()
    return None


def codebook_size(model: nn.Module) -> int:
    """Codebook size from ``num_codes``/``codebook_size``/``n_codes`` or the codebook's rows."""
    for owner in (model, getattr(model, "quantizer", None), getattr(model, "vq", None)):
        for attr in ("num_codes", "codebook_size", "n_codes", "num_embeddings"):
            v = getattr(owner, attr, None) if owner is not None else None
            if isinstance(v, int) and v > 0:
                return v
    book = codebook_vectors(model)
    if book is not None:
        return int(book.shape[0])
    raise ModelContractError(
        f"{type(model).__name__}: cannot find the codebook size; pass num_codes= or give the "
        "model a num_codes attribute or a codebook nn.Embedding"
    )


def encode_codes(lens: Lens, x: torch.Tensor) -> torch.Tensor:
    """Codebook indices ``(N, H', W')`` (long) that ``encode(x).codes`` selects."""
    with torch.no_grad():
        enc = lens.model.encode(x)
    codes = getattr(enc, "codes", None)
    if not isinstance(codes, torch.Tensor):
        raise ModelContractError(
            f"{type(lens.model).__name__}.encode(x) has no .codes tensor: not a VQ model"
        )
    return codes.long()


def _replacement_codes(
    model: nn.Module,
    flat: torch.Tensor,
    replacement: Literal["random", "nearest"] | int,
    num_codes: int | None,
    swaps: int,
    gen: torch.Generator,
) -> torch.Tensor:
    """New codes ``(swaps, N, P)`` for the current codes ``flat`` ``(N, P)``."""
    if replacement == "random":
        k = num_codes if num_codes is not None else codebook_size(model)
        if k < 2:
            raise ArgumentError(f"num_codes: a swap needs at least 2 codes, got {k}")
        shift = torch.randint(1, k, (swaps, *flat.shape), generator=gen).to(flat.device)
        return (flat.unsqueeze(0) + shift) % k
    if replacement == "nearest":
        book = codebook_vectors(model)
        if book is None:
            raise ModelContractError(
                f"{type(model).__name__}: replacement='nearest' needs a codebook"
            )
        dist = torch.cdist(book, book)
        dist.fill_diagonal_(float("inf"))
        new = dist.argmin(1).to(flat.device)[flat]
    elif isinstance(replacement, int):
        new = torch.full_like(flat, replacement)
    else:
        raise ArgumentError(
            f"replacement: expected 'random', 'nearest' or a code index, got {replacement!r}"
        )
    return new.unsqueeze(0).expand(swaps, *flat.shape)


def code_swap_outputs(
    lens: Lens,
    x: torch.Tensor,
    *,
    swaps: int = 1,
    replacement: Literal["random", "nearest"] | int = "random",
    num_codes: int | None = None,
    seed: int | torch.Generator = 0,
    max_batch: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Decoded outputs of every single-position code swap: ``(clean, swapped, new_codes)``.

    ``clean``: ``output_map(decode_codes(codes))`` ``(N, *out)``; ``swapped[p, s]``: the
    output with the code at position ``p`` (row-major over ``(H', W')``) replaced by its
    ``s``-th replacement, ``(P, swaps, N, *out)``; ``new_codes``: ``(swaps, N, P)``.
    ``replacement``: ``"random"`` draws a code different from the current one uniformly
    (``seed``; ``swaps`` independent draws); ``"nearest"`` takes the closest *other*
    codebook vector (needs an exposed codebook); an int uses that code. All
    ``P * swaps`` variants run stacked on the batch axis, ``max_batch`` rows at a time.
    """
    model = lens.model
    if not is_vq(model):
        raise ModelContractError(f"{type(model).__name__} has no decode_codes: not a VQ model")
    if not isinstance(swaps, int) or swaps < 1:
        raise ArgumentError(f"swaps: expected a positive int, got {swaps!r}")
    gen = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(int(seed))
    max_batch = resolve_max_batch(max_batch, lens)
    codes = encode_codes(lens, x)
    n, grid = codes.shape[0], codes.shape[1:]
    flat = codes.reshape(n, -1)
    p = flat.shape[1]
    new = _replacement_codes(model, flat, replacement, num_codes, swaps, gen)  # (S, N, P)
    combos = [(pos, s) for pos in range(p) for s in range(swaps)]
    chunk = max(1, max_batch // n)
    outs: list[torch.Tensor] = []
    with torch.no_grad():
        clean = lens.output_map(model.decode_codes(codes))
        for c0 in range(0, len(combos), chunk):
            part = combos[c0 : c0 + chunk]
            pos = torch.tensor([c[0] for c in part])
            sw = torch.tensor([c[1] for c in part])
            variants = flat.unsqueeze(0).repeat(len(part), 1, 1)  # (K, N, P)
            variants[torch.arange(len(part)), :, pos] = new[sw, :, pos]
            out = lens.output_map(model.decode_codes(variants.reshape(-1, *grid)))
            outs.append(out.reshape(len(part), n, *out.shape[1:]).cpu())
    swapped = torch.cat(outs).reshape(p, swaps, n, *clean.shape[1:])
    return clean.cpu(), swapped, new.cpu()


def code_swap_effects(
    lens: Lens,
    x: torch.Tensor,
    *,
    replacement: Literal["random", "nearest"] | int = "random",
    num_codes: int | None = None,
    metric: Metric = "l2",
    seed: int | torch.Generator = 0,
    max_batch: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Effect of swapping the code at each position: ``(effects (N, P), new_codes (N, P))``.

    ``effects[n, p] = metric(swapped, clean)`` over the outputs of :func:`code_swap_outputs`
    with one swap per position (an int ``replacement`` equal to the current code gives 0).
    """
    fn = effect_metric(metric)
    clean, swapped, new = code_swap_outputs(
        lens, x, replacement=replacement, num_codes=num_codes, seed=seed, max_batch=max_batch
    )
    effects = fn(swapped[:, 0], clean, clean).T.contiguous()
    return effects, new[0]
