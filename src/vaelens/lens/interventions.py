"""Input and latent interventions (Roy (2025) sections 3.2.1 and 3.2.2).

Input intervention: pairs ``(x, x~)`` that differ only in factor ``k``
(:func:`factor_pairs`); :func:`input_intervention` gives the latent shift
``dz = E(x~) - E(x)`` (Roy (2025) eq. 2) and the activation difference ``A_l(x~) - A_l(x)`` at
every hook point.

Latent intervention: ``z~_i = z`` with dimension ``i`` set to ``v`` (eq. 3), decoded
(eq. 4). :func:`latent_traversal` does every dimension and every value of a grid
(default 7 values over ``[-3, 3]``) in stacked decoder passes; :func:`traversal_grid` tiles
the result as an image.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from vaelens.data import check_dataset, intervention_pairs
from vaelens.data.base import GroundTruthDataset, factor_index
from vaelens.errors import ArgumentError, DatasetError
from vaelens.lens.hooks import Lens
from vaelens.lens.patching import Metric, effect_metric, resolve_max_batch

__all__ = [
    "DEFAULT_VALUES",
    "InputInterventionResult",
    "factor_pairs",
    "input_intervention",
    "latent_shift_effects",
    "latent_traversal",
    "set_latent",
    "traversal_grid",
]

#: The latent sweep of Roy (2025): 7 values over [-3, 3].
DEFAULT_VALUES = tuple(np.linspace(-3.0, 3.0, 7).tolist())


def factor_pairs(
    dataset: object, factor: int | str, n: int, *, seed: int | np.random.Generator = 0
) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray]:
    """``n`` image pairs ``(x, x~)`` differing only in ``factor``, with their factor indices.

    Uses :func:`vaelens.data.intervention_pairs` and ``dataset.images``; returns float32
    tensors ``(n, C, H, W)`` and the factor arrays ``(n, F)`` of ``x`` and ``x~``.
    """
    ds = check_dataset(dataset)
    factor_index(ds, factor)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    base, changed = intervention_pairs(ds, factor, int(n), rng)
    x = _dataset_images(ds, base)
    xt = _dataset_images(ds, changed)
    return x, xt, base, changed


def _dataset_images(ds: GroundTruthDataset, factors: np.ndarray) -> torch.Tensor:
    """``ds.images(factors)`` as float32 ``(N, *image_shape)``; :class:`DatasetError` otherwise."""
    images = ds.images(factors)
    arr = np.asarray(images) if isinstance(images, np.ndarray | torch.Tensor) else None
    expected = (len(factors), *(int(d) for d in ds.image_shape))
    if arr is None or arr.dtype.kind != "f" or arr.shape != expected:
        got = (
            f"shape {arr.shape} and dtype {arr.dtype}" if arr is not None else type(images).__name__
        )
        raise DatasetError(
            f"dataset {ds.name}: images(factors) returned {got}; expected floats of shape "
            f"{expected} (N factor rows, image_shape {tuple(ds.image_shape)})"
        )
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))


@dataclass
class InputInterventionResult:
    """``delta_z``: ``E(x~) - E(x)`` ``(N, L)``; ``deltas[layer]``: reduced activation differences.

    With ``reduce="mean_abs"`` each ``deltas[layer]`` is ``(N, units)``, the mean over the
    unit's positions of ``|A(x~) - A(x)|`` (averaged over examples it is Roy (2025)'s unit
    response ``R(n, f)``); ``"mean"``: the signed mean; ``"none"``: the full difference.
    """

    delta_z: torch.Tensor
    deltas: dict[str, torch.Tensor]
    reduce: str


def _reduce_units(d: torch.Tensor, reduce: str) -> torch.Tensor:
    if reduce == "none":
        return d
    flat = d.reshape(d.shape[0], d.shape[1], -1) if d.ndim > 1 else d[:, None, None]
    return flat.abs().mean(-1) if reduce == "mean_abs" else flat.mean(-1)


def input_intervention(
    lens: Lens,
    x: torch.Tensor,
    x_tilde: torch.Tensor,
    names: str | Sequence[str] | None = None,
    *,
    reduce: Literal["mean_abs", "mean", "none"] = "mean_abs",
    max_batch: int | None = None,
) -> InputInterventionResult:
    """Latent shift and activation differences at every hook point in ``names`` (default all)."""
    if reduce not in ("mean_abs", "mean", "none"):
        raise ArgumentError(f"reduce: expected 'mean_abs', 'mean' or 'none', got {reduce!r}")
    x = lens._traced_input(x)
    x_tilde = lens._traced_input(x_tilde, "x_tilde")
    if x.shape != x_tilde.shape:
        raise ArgumentError(
            f"x and x_tilde: expected the same shape, got {tuple(x.shape)} and {tuple(x_tilde.shape)}"
        )
    max_batch = resolve_max_batch(max_batch, lens)
    layer_names = lens._resolve_names(names)
    keep = list(dict.fromkeys([*layer_names, lens.latent_name]))
    parts: dict[str, list[torch.Tensor]] = {n: [] for n in keep}
    with torch.no_grad():
        for b0 in range(0, x.shape[0], max_batch):
            sl = slice(b0, b0 + max_batch)
            _, c0 = lens.run_with_cache(x[sl], keep)
            _, c1 = lens.run_with_cache(x_tilde[sl], keep)
            for n in keep:
                parts[n].append(c1[n] - c0[n])
    full = {n: torch.cat(v) for n, v in parts.items()}
    return InputInterventionResult(
        delta_z=full[lens.latent_name],
        deltas={n: _reduce_units(full[n], reduce) for n in layer_names},
        reduce=reduce,
    )


def set_latent(z: torch.Tensor, dim: int, value: float | torch.Tensor) -> torch.Tensor:
    """Copy of ``z`` ``(N, L)`` with dimension ``dim`` set to ``value`` (Roy (2025) eq. 3).

    ``value``: a number, or a tensor of shape ``()`` or ``(N,)`` (one value per row).
    """
    if not isinstance(z, torch.Tensor) or z.ndim != 2 or not z.is_floating_point():
        got = (
            f"shape {tuple(z.shape)}, dtype {z.dtype}"
            if isinstance(z, torch.Tensor)
            else type(z).__name__
        )
        raise ArgumentError(f"z: expected a floating tensor (N, L), got {got}")
    try:
        index = operator.index(dim)
    except TypeError:
        index = -1
    if not 0 <= index < z.shape[1]:
        raise ArgumentError(f"dim: expected an index in [0, {z.shape[1] - 1}], got {dim!r}")
    if isinstance(value, torch.Tensor) and value.shape not in ((), (z.shape[0],)):
        raise ArgumentError(
            f"value: expected a number or a tensor of shape () or ({z.shape[0]},), got shape "
            f"{tuple(value.shape)}"
        )
    out = z.clone()
    out[:, index] = value
    return out


def _values(values: Sequence[float] | torch.Tensor | None) -> torch.Tensor:
    v = torch.as_tensor(DEFAULT_VALUES if values is None else values, dtype=torch.float32)
    if v.ndim != 1 or v.numel() == 0 or not torch.isfinite(v).all():
        raise ArgumentError(
            f"values: expected a non-empty 1-D sequence of finite floats, got {values!r}"
        )
    return v


def _latent_codes(lens: Lens, z: object) -> torch.Tensor:
    """``z`` checked as latent codes ``(N, L)`` of the lens's latent width."""
    if not isinstance(z, torch.Tensor) or z.ndim != 2:
        raise ArgumentError(f"z: expected a tensor (N, L), got {getattr(z, 'shape', type(z))}")
    lens._ensure_traced()
    return lens._check_latent(z)


def _dims(dims: Sequence[int] | None, width: int) -> list[int]:
    """The latent dimensions ``dims`` (default all ``width``), each checked in range."""
    d = list(range(width)) if dims is None else [int(i) for i in dims]
    for i in d:
        if not 0 <= i < width:
            raise ArgumentError(f"dims: {i} is not in [0, {width - 1}]")
    return d


def latent_traversal(
    lens: Lens,
    z: torch.Tensor,
    dims: Sequence[int] | None = None,
    values: Sequence[float] | torch.Tensor | None = None,
    *,
    max_batch: int | None = None,
) -> torch.Tensor:
    """Decoded traversals ``(N, len(dims), len(values), *out_shape)``.

    ``out[n, i, j] = output_map(decode(z_n with dimension dims[i] set to values[j]))``;
    ``dims`` default all latent dimensions, ``values`` default 7 points over ``[-3, 3]``.
    All variants run as stacked decoder passes of at most ``max_batch`` rows.
    """
    z = _latent_codes(lens, z)
    d = _dims(dims, z.shape[1])
    v = _values(values).to(device=z.device, dtype=z.dtype)
    max_batch = resolve_max_batch(max_batch, lens)
    n, nd, nv = z.shape[0], len(d), v.numel()
    variants = z[:, None, None, :].expand(n, nd, nv, z.shape[1]).clone()
    for a, i in enumerate(d):
        variants[:, a, :, i] = v
    flat = variants.reshape(-1, z.shape[1])
    with torch.no_grad():
        outs = [
            lens.decode_output(flat[s : s + max_batch]) for s in range(0, flat.shape[0], max_batch)
        ]
    out = torch.cat(outs)
    return out.reshape(n, nd, nv, *out.shape[1:])


def latent_shift_effects(
    lens: Lens,
    z: torch.Tensor,
    delta: float,
    dims: Sequence[int] | None = None,
    *,
    metric: Metric = "l2",
    max_batch: int | None = None,
) -> torch.Tensor:
    """Effect ``(N, len(dims))`` of shifting each latent dimension by ``delta``.

    ``metric(output_map(decode(z + delta e_i)), output_map(decode(z)), same)``: with the
    default ``"l2"``, ``||D(z + delta e_i) - D(z)||_2``. A continuous perturbation; for a
    VQ-VAE it snaps back to the same code when ``delta`` is small (see :mod:`vaelens.lens.vq`).
    """
    fn = effect_metric(metric)
    max_batch = resolve_max_batch(max_batch, lens)
    z = _latent_codes(lens, z)
    d = _dims(dims, z.shape[1])
    try:
        finite = math.isfinite(float(delta))
    except (TypeError, ValueError):
        finite = False
    if not finite:
        raise ArgumentError(f"delta: expected a finite number, got {delta!r}")
    with torch.no_grad():
        clean = lens.decode_output(z)
        shifted = z.unsqueeze(0).repeat(len(d), 1, 1)
        for a, i in enumerate(d):
            shifted[a, :, i] += delta
        flat = shifted.reshape(-1, z.shape[1])
        outs = torch.cat(
            [
                lens.decode_output(flat[s : s + max_batch])
                for s in range(0, flat.shape[0], max_batch)
            ]
        )
    outs = outs.reshape(len(d), z.shape[0], *outs.shape[1:])
    return fn(outs, clean, clean).T.cpu()


def traversal_grid(
    images: torch.Tensor | np.ndarray, *, pad: int = 1, pad_value: float = 1.0
) -> np.ndarray:
    """Tile traversals ``(rows, cols, C, H, W)`` into one float image ``(rows*(H+pad)-pad, cols*(W+pad)-pad, C)``.

    Pass one example of :func:`latent_traversal` (``out[n]``: rows = dimensions, columns =
    values). Values are clipped to ``[0, 1]``; ``pad`` pixels of ``pad_value`` separate tiles.
    """
    arr = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if arr.ndim != 5:
        raise ArgumentError(f"images: expected (rows, cols, C, H, W), got shape {arr.shape}")
    rows, cols, c, h, w = arr.shape
    grid = np.full((rows * (h + pad) - pad, cols * (w + pad) - pad, c), pad_value, dtype=np.float32)
    for r in range(rows):
        for k in range(cols):
            grid[r * (h + pad) : r * (h + pad) + h, k * (w + pad) : k * (w + pad) + w] = np.clip(
                arr[r, k].transpose(1, 2, 0), 0.0, 1.0
            )
    return grid
