"""The ground-truth dataset contract and the index arithmetic every dataset shares.

A *ground-truth dataset* is any object with the attributes and methods of
:class:`GroundTruthDataset` (a :class:`typing.Protocol`: no subclassing needed).
Factors are always handled as integer *indices* (level numbers), shape ``(N, F)``;
their physical values are ``dataset.factor_values[f][index]``.

For a factorial dataset with factor sizes ``(s_0, ..., s_{F-1})`` the flat index of a
factor vector ``c`` is ``sum_f c_f * prod_{g>f} s_g`` (last factor fastest), the order of
dSprites, 3DShapes and MPI3D files.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from vaelens.errors import DatasetError

__all__ = [
    "ArrayDataset",
    "GroundTruthDataset",
    "check_dataset",
    "factor_strides",
    "factors_to_index",
    "index_to_factors",
    "intervention_pairs",
    "resample_factor",
    "sample_factors_uniform",
    "sample_images",
    "validate_factors",
]


@runtime_checkable
class GroundTruthDataset(Protocol):
    """What vaelens needs of a dataset with known generative factors.

    Attributes
    ----------
    name: registry name, e.g. ``"dsprites"``.
    factor_names: one name a factor, e.g. ``("shape", "scale", ...)``.
    factor_sizes: number of levels of each factor.
    factor_values: physical value of each level, ``factor_values[f].shape == (factor_sizes[f],)``.
    image_shape: ``(C, H, W)`` of one image.
    """

    name: str
    factor_names: tuple[str, ...]
    factor_sizes: tuple[int, ...]
    factor_values: list[np.ndarray]
    image_shape: tuple[int, int, int]

    def images(self, factors: np.ndarray) -> np.ndarray:
        """Factor indices ``(N, F)`` -> float32 images ``(N, C, H, W)`` in ``[0, 1]``."""
        ...

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` factor index vectors ``(n, F)`` drawn from the dataset's distribution."""
        ...


# --------------------------------------------------------------------------- index arithmetic


def _sizes(factor_sizes: Sequence[int]) -> np.ndarray:
    sizes = np.asarray(factor_sizes, dtype=np.int64)
    if sizes.ndim != 1 or sizes.size == 0 or (sizes < 1).any():
        raise DatasetError(
            f"factor_sizes: expected a non-empty sequence of positive ints, got {list(factor_sizes)}"
        )
    return sizes


def factor_strides(factor_sizes: Sequence[int]) -> np.ndarray:
    """Strides of the flat index: ``stride_f = prod_{g > f} s_g`` (last factor fastest)."""
    sizes = _sizes(factor_sizes)
    strides = np.ones_like(sizes)
    strides[:-1] = np.cumprod(sizes[::-1])[::-1][1:]
    return strides


def validate_factors(
    factors: np.ndarray, factor_sizes: Sequence[int], *, argument: str = "factors"
) -> np.ndarray:
    """Check that ``factors`` is an integer ``(N, F)`` array with ``0 <= c_f < s_f``.

    Returns the array as ``int64``. Raises :class:`DatasetError` naming ``argument``,
    the offending factor and the valid range otherwise.
    """
    sizes = _sizes(factor_sizes)
    arr = np.asarray(factors)
    if arr.ndim == 1 and arr.shape[0] == sizes.size:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != sizes.size:
        raise DatasetError(
            f"{argument}: expected shape (N, {sizes.size}) of factor indices, got {arr.shape}"
        )
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise DatasetError(
                f"{argument}: expected integer factor indices, got non-integer floats"
            )
    elif arr.dtype.kind not in "iu":
        raise DatasetError(f"{argument}: expected integer factor indices, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    bad = (arr < 0) | (arr >= sizes[None, :])
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise DatasetError(
            f"{argument}: factor {col} index {arr[row, col]} (row {row}) is out of range "
            f"[0, {sizes[col] - 1}]"
        )
    return arr


def factors_to_index(factors: np.ndarray, factor_sizes: Sequence[int]) -> np.ndarray:
    """Flat indices ``(N,)`` of factor index vectors ``(N, F)`` (last factor fastest)."""
    arr = validate_factors(factors, factor_sizes)
    return arr @ factor_strides(factor_sizes)


def index_to_factors(index: np.ndarray | int, factor_sizes: Sequence[int]) -> np.ndarray:
    """Factor index vectors ``(N, F)`` of flat indices ``(N,)``; inverse of :func:`factors_to_index`."""
    sizes = _sizes(factor_sizes)
    idx = np.atleast_1d(np.asarray(index))
    if idx.dtype.kind not in "iu":
        raise DatasetError(f"index: expected integers, got dtype {idx.dtype}")
    total = int(np.prod(sizes))
    if idx.size and (idx.min() < 0 or idx.max() >= total):
        raise DatasetError(
            f"index: expected values in [0, {total - 1}], got {idx.min()}..{idx.max()}"
        )
    strides = factor_strides(sizes)
    return (idx.astype(np.int64)[:, None] // strides[None, :]) % sizes[None, :]


def sample_factors_uniform(
    n: int, factor_sizes: Sequence[int], rng: np.random.Generator
) -> np.ndarray:
    """``n`` factor vectors with every factor drawn uniformly and independently."""
    sizes = _sizes(factor_sizes)
    if not isinstance(n, int | np.integer) or n < 0:
        raise DatasetError(f"n: expected a non-negative int, got {n!r}")
    return rng.integers(0, sizes[None, :], size=(int(n), sizes.size), dtype=np.int64)


def resample_factor(
    factors: np.ndarray, factor: int, factor_sizes: Sequence[int], rng: np.random.Generator
) -> np.ndarray:
    """Copy of ``factors`` with factor ``factor`` redrawn to a *different* level in every row.

    This is the input intervention of Roy (2025) (section 3.2.1): the pair
    ``(factors, result)`` differs only in factor ``factor``. A factor with one level
    cannot be changed and raises :class:`DatasetError`.
    """
    sizes = _sizes(factor_sizes)
    arr = validate_factors(factors, sizes)
    if not 0 <= factor < sizes.size:
        raise DatasetError(f"factor: expected an index in [0, {sizes.size - 1}], got {factor}")
    s = int(sizes[factor])
    if s < 2:
        raise DatasetError(f"factor {factor} has a single level: it cannot be intervened on")
    out = arr.copy()
    shift = rng.integers(1, s, size=arr.shape[0])
    out[:, factor] = (arr[:, factor] + shift) % s
    return out


def intervention_pairs(
    dataset: GroundTruthDataset, factor: int | str, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` factor pairs ``(base, changed)`` that differ only in ``factor``.

    ``base`` comes from ``dataset.sample_factors``; ``changed`` has ``factor`` moved to a
    different level. A dataset that is not a full factorial grid (CelebA, say) may offer
    its own ``intervention_pairs(factor, n, rng)`` method, which is used instead.
    """
    k = factor_index(dataset, factor)
    own = getattr(dataset, "intervention_pairs", None)
    if callable(own):
        return own(k, n, rng)
    base = dataset.sample_factors(n, rng)
    return base, resample_factor(base, k, dataset.factor_sizes, rng)


def factor_index(dataset: GroundTruthDataset, factor: int | str) -> int:
    """Position of ``factor`` (a name or an index) in ``dataset.factor_names``."""
    names = tuple(dataset.factor_names)
    if isinstance(factor, str):
        if factor not in names:
            raise DatasetError(
                f"factor: {factor!r} is not a factor of {dataset.name}; expected one of {names}"
            )
        return names.index(factor)
    k = int(factor)
    if not 0 <= k < len(names):
        raise DatasetError(f"factor: expected an index in [0, {len(names) - 1}], got {factor}")
    return k


def sample_images(
    dataset: GroundTruthDataset, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` sampled ``(factors, images)`` from ``dataset``."""
    factors = dataset.sample_factors(n, rng)
    return factors, dataset.images(factors)


def _sequence(value: object, attr: str, label: str) -> Sequence:
    """``value`` as a sized sequence (a tuple, list or 1-D array); :class:`DatasetError` otherwise."""
    if isinstance(value, np.ndarray) and value.ndim >= 1:
        return list(value)
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise DatasetError(f"{label}: {attr} is a {type(value).__name__}; expected a tuple or list")
    return value


def check_dataset(dataset: object) -> GroundTruthDataset:
    """Validate that ``dataset`` meets the contract; return it or raise :class:`DatasetError`."""
    missing = [
        attr
        for attr in (
            "name",
            "factor_names",
            "factor_sizes",
            "factor_values",
            "image_shape",
            "images",
            "sample_factors",
        )
        if not hasattr(dataset, attr)
    ]
    if missing:
        raise DatasetError(
            f"dataset: {type(dataset).__name__} lacks {', '.join(missing)} of the ground-truth dataset contract"
        )
    ds: GroundTruthDataset = dataset  # type: ignore[assignment]
    label = f"dataset {getattr(ds, 'name', type(ds).__name__)}"
    for attr in ("images", "sample_factors"):
        if not callable(getattr(ds, attr)):
            raise DatasetError(
                f"{label}: {attr} must be a method, got {type(getattr(ds, attr)).__name__}"
            )
    sizes = _sequence(ds.factor_sizes, "factor_sizes", label)
    if not sizes:
        raise DatasetError(f"{label}: factor_sizes is empty; expected at least one factor")
    for f, size in enumerate(sizes):
        if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 1:
            raise DatasetError(
                f"{label}: factor_sizes[{f}] is {size!r}; expected a positive int (levels of the factor)"
            )
    for attr in ("factor_names", "factor_values"):
        got = len(_sequence(getattr(ds, attr), attr, label))
        if got != len(sizes):
            raise DatasetError(
                f"{label}: {attr} has {got} entries but factor_sizes has {len(sizes)}; "
                "expected one entry per factor"
            )
    for f, (size, values) in enumerate(zip(sizes, ds.factor_values, strict=True)):
        if np.asarray(values).shape != (size,):
            raise DatasetError(
                f"{label}: factor_values[{f}] has shape {np.asarray(values).shape}, expected ({size},)"
            )
    shape = ds.image_shape
    shape = tuple(shape.tolist()) if isinstance(shape, np.ndarray) else shape
    if (
        not isinstance(shape, Sequence)
        or len(shape) != 3
        or not all(
            isinstance(d, int | np.integer) and not isinstance(d, bool) and d >= 1 for d in shape
        )
    ):
        raise DatasetError(
            f"{label}: image_shape is {shape!r}; expected (C, H, W), 3 positive ints"
        )
    return ds


# --------------------------------------------------------------------------- array-backed datasets


class ArrayDataset:
    """A factorial dataset whose images are held as a uint8 array (in memory or memory-mapped).

    ``array`` has shape ``(N, H, W, C)`` (``channels_last=True``, the layout of the official
    files) or ``(N, C, H, W)``, with ``N = prod(factor_sizes)`` in flat-index order.
    ``pixel_max`` is the value of a white pixel (1 for dSprites, 255 for photographs);
    :meth:`images` divides by it so that images are float32 in ``[0, 1]``.
    """

    def __init__(
        self,
        name: str,
        array: np.ndarray,
        factor_names: Sequence[str],
        factor_sizes: Sequence[int],
        factor_values: Sequence[np.ndarray],
        *,
        channels_last: bool = True,
        pixel_max: float = 255.0,
        source: str = "array",
    ) -> None:
        sizes = tuple(int(s) for s in factor_sizes)
        total = int(np.prod(sizes))
        if array.ndim == 3:  # (N, H, W) single channel
            array = array[..., None] if channels_last else array[:, None]
        if array.ndim != 4:
            raise DatasetError(
                f"{name}: images array must have 4 dimensions, got shape {array.shape}"
            )
        if array.shape[0] != total:
            raise DatasetError(
                f"{name}: images array has {array.shape[0]} rows, expected {total} = prod{sizes}"
            )
        if array.dtype != np.uint8:
            raise DatasetError(f"{name}: images array must be uint8, got {array.dtype}")
        self.name = name
        self.array = array
        self.channels_last = channels_last
        self.pixel_max = float(pixel_max)
        self.source = source
        self.factor_names = tuple(factor_names)
        self.factor_sizes = sizes
        self.factor_values = [np.asarray(v) for v in factor_values]
        if channels_last:
            _, h, w, c = array.shape
        else:
            _, c, h, w = array.shape
        self.image_shape = (int(c), int(h), int(w))
        check_dataset(self)

    def __len__(self) -> int:
        return int(self.array.shape[0])

    def uint8_images(self, factors: np.ndarray) -> np.ndarray:
        """Raw uint8 images ``(N, C, H, W)`` (values ``0..pixel_max``) for factor indices."""
        idx = factors_to_index(factors, self.factor_sizes)
        return self.uint8_at(idx)

    def uint8_at(self, index: np.ndarray) -> np.ndarray:
        """Raw uint8 images ``(N, C, H, W)`` at flat indices (sorted reads for memory maps)."""
        idx = np.asarray(index, dtype=np.int64)
        order = np.argsort(idx, kind="stable")
        batch = np.empty((idx.size, *self.array.shape[1:]), dtype=np.uint8)
        batch[order] = self.array[idx[order]]
        if self.channels_last:
            batch = batch.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(batch)

    def images(self, factors: np.ndarray) -> np.ndarray:
        """Factor indices ``(N, F)`` -> float32 images ``(N, C, H, W)`` in ``[0, 1]``."""
        return self.uint8_images(factors).astype(np.float32) / np.float32(self.pixel_max)

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Uniform, independent factors (the datasets are full factorial grids)."""
        return sample_factors_uniform(n, self.factor_sizes, rng)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, n={len(self)}, factors={dict(zip(self.factor_names, self.factor_sizes, strict=True))}, source={self.source!r})"
