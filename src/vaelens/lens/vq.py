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

__all__ = ["code_swap_effects", "codebook_size", "codebook_vectors", "encode_codes", "is_vq"]


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

    ``P = H' * W'`` positions in row-major order. ``replacement``: ``"random"`` draws a code
    different from the current one uniformly (``seed``); ``"nearest"`` takes the closest
    *other* codebook vector (the smallest discrete change; needs an exposed codebook); an
    int uses that code (positions already using it get effect 0).
    """
    model = lens.model
    if not is_vq(model):
        raise ModelContractError(f"{type(model).__name__} has no decode_codes: not a VQ model")
    gen = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(int(seed))
    max_batch = resolve_max_batch(max_batch, lens)
    codes = encode_codes(lens, x)
    n = codes.shape[0]
    grid = codes.shape[1:]
    flat = codes.reshape(n, -1)
    p = flat.shape[1]
    if replacement == "random":
        k = num_codes if num_codes is not None else codebook_size(model)
        if k < 2:
            raise ArgumentError(f"num_codes: a swap needs at least 2 codes, got {k}")
        shift = torch.randint(1, k, flat.shape, generator=gen).to(flat.device)
        new = (flat + shift) % k
    elif replacement == "nearest":
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
    fn = effect_metric(metric)
    effects = torch.empty(n, p)
    with torch.no_grad():
        clean = lens.output_map(model.decode_codes(codes))
        kb = max(1, max_batch // n)
        for p0 in range(0, p, kb):
            pos = torch.arange(p0, min(p, p0 + kb))
            variants = flat.unsqueeze(0).repeat(len(pos), 1, 1)  # (K, n, P)
            variants[torch.arange(len(pos)), :, pos] = new[:, pos].T
            outs = lens.output_map(model.decode_codes(variants.reshape(-1, *grid)))
            outs = outs.reshape(len(pos), n, *outs.shape[1:])
            effects[:, pos] = fn(outs, clean, clean).T.cpu()
    return effects, new.cpu()
