"""SmallNORB (LeCun et al., 2004): 50 toys photographed under controlled pose and lighting.

Files (``.mat`` or gzipped ``.mat.gz``), for each split ``training`` / ``testing``::

    smallnorb-5x46789x9x18x6x2x96x96-training-{dat,cat,info}.mat
    smallnorb-5x01235x9x18x6x2x96x96-testing-{dat,cat,info}.mat

Binary ``.mat`` format (all little-endian int32): ``magic, ndim, dim_0 .. dim_{k-1}`` with
``k = max(3, ndim)`` (unused dims are 1); the data follow at byte ``8 + 4*k``, last index
fastest. Magic numbers: ``0x1E3D4C55`` uint8, ``0x1E3D4C54`` int32, ``0x1E3D4C56`` int16,
``0x1E3D4C51`` float32, ``0x1E3D4C53`` float64 (``0x1E3D4C52``, a packed matrix, is not
used by SmallNORB and not supported). disentanglement_lib wrongly reads the byte type
as int8. A header declaring more than :data:`MAX_MAT_BYTES` is refused, and a gzipped
file is decompressed as a stream no further than its header declares.

``dat`` is ``(24300, 2, 96, 96)`` uint8 (left/right stereo pair), ``cat`` ``(24300,)``
int32 (0 animal, 1 human, 2 airplane, 3 truck, 4 car), ``info`` ``(24300, 4)`` int32:
instance (0-9), elevation (0-8: 30 to 70 degrees in steps of 5), azimuth (0, 2, ..., 34:
times 10 for degrees), lighting (0-5).

The usual disentanglement set-up, followed here: both splits joined (48,600 images), the
left image kept, resized 96 -> 64 with PIL's antialiasing Lanczos filter and stored as
uint8 (cached once as ``.npy``, memory-mapped afterwards). Factors: category (5),
elevation (9), azimuth (18, index ``azimuth // 2``), lighting (6). The object *instance*
is a nuisance: every factor combination has one image per instance (10 over the joined
set), and :meth:`SmallNORB.images` picks one by a documented rule.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np

from vaelens.data.base import factor_strides, validate_factors
from vaelens.data.download import cache_dir, find_file
from vaelens.data.registry import DatasetSpec, RemoteFile, register_dataset
from vaelens.errors import DatasetError
from vaelens.io import atomic_open, atomic_save_npy

__all__ = [
    "MAX_MAT_BYTES",
    "NORB_MAGIC",
    "SMALLNORB_FACTOR_NAMES",
    "SMALLNORB_FILES",
    "SmallNORB",
    "load_smallnorb",
    "read_norb_mat",
    "read_norb_split",
    "write_norb_mat",
]

#: magic number -> element dtype (little-endian) of the NORB binary matrix format
NORB_MAGIC: dict[int, np.dtype] = {
    0x1E3D4C55: np.dtype("u1"),
    0x1E3D4C54: np.dtype("<i4"),
    0x1E3D4C56: np.dtype("<i2"),
    0x1E3D4C51: np.dtype("<f4"),
    0x1E3D4C53: np.dtype("<f8"),
}
_PACKED_MAGIC = 0x1E3D4C52

SMALLNORB_FACTOR_NAMES: tuple[str, ...] = ("category", "elevation", "azimuth", "lighting")
_SIZES = (5, 9, 18, 6)
_CATEGORIES = ("animal", "human", "airplane", "truck", "car")
_SPLITS = ("training", "testing")

#: split -> file stem; files are ``<stem>-{dat,cat,info}.mat[.gz]``
SMALLNORB_FILES: dict[str, str] = {
    "training": "smallnorb-5x46789x9x18x6x2x96x96-training",
    "testing": "smallnorb-5x01235x9x18x6x2x96x96-testing",
}
_URLS = (
    "https://cs.nyu.edu/~ylclab/data/norb-v1.0-small/",
    "https://cs.nyu.edu/~yann/data/norb-v1.0-small/",
)

# --------------------------------------------------------------------------- the .mat format


#: largest matrix read (bytes, header included): the biggest official file, a ``dat``
#: ``(24300, 2, 96, 96)`` uint8, is 447,897,624 bytes; a header declaring more is refused
#: before any data is read or decompressed
MAX_MAT_BYTES = 512 << 20


def _header_len(ndim: int) -> int:
    return 8 + 4 * max(3, ndim)


def _read_upto(fh: BinaryIO, n: int) -> bytearray:
    """Up to ``n`` bytes of ``fh`` (fewer only at its end), read in 16 MiB pieces into one
    buffer (no second copy of a large matrix)."""
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = fh.readinto(view[got : got + (1 << 24)])  # type: ignore[attr-defined]
        if not k:
            break
        got += k
    view.release()
    if got < n:
        del buf[got:]
    return buf


def read_norb_mat(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a NORB binary matrix (``.mat``, plain or gzipped; detected by content).

    Layout: little-endian int32 ``magic, ndim`` then ``max(3, ndim)`` int32 dims, then
    ``prod(dims[:ndim])`` elements of the magic's type (see :data:`NORB_MAGIC`), C order.
    Returns a native-endian array of shape ``dims[:ndim]``. Raises :class:`DatasetError`
    naming ``path`` for an unknown magic, a bad header, a corrupt gzip stream, a header
    declaring more than :data:`MAX_MAT_BYTES`, or a file whose (decompressed) size differs
    from ``8 + 4*max(3, ndim) + prod(dims)*itemsize`` bytes. A gzipped file is
    decompressed as a stream and never past the size its header declares (plus one byte,
    to detect trailing data), so a small file that inflates to gigabytes is refused
    without holding them.
    """
    p = Path(path)
    try:
        with open(p, "rb") as raw:
            gzipped = raw.read(2) == b"\x1f\x8b"
            raw.seek(0)
            fh: BinaryIO = gzip.GzipFile(fileobj=raw, mode="rb") if gzipped else raw  # type: ignore[assignment]
            return _read_mat_stream(p, fh, None if gzipped else os.fstat(raw.fileno()).st_size)
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise DatasetError(f"{p}: truncated or corrupt gzip stream ({exc})") from None
    except OSError as exc:
        raise DatasetError(f"{p}: cannot read ({exc})") from None


def _read_mat_stream(p: Path, fh: BinaryIO, file_size: int | None) -> np.ndarray:
    """The matrix of the (decompressed) stream ``fh``; ``file_size`` of a plain file."""
    head = _read_upto(fh, 8)
    if len(head) < 8:
        raise DatasetError(f"{p}: truncated: expected at least 8 header bytes, got {len(head)}")
    magic, ndim = (int(v) for v in np.frombuffer(head, "<i4", count=2))
    magic &= 0xFFFFFFFF
    if magic == _PACKED_MAGIC:
        raise DatasetError(f"{p}: packed matrices (magic 0x1E3D4C52) are not supported")
    if magic not in NORB_MAGIC:
        known = ", ".join(f"0x{m:08X}" for m in NORB_MAGIC)
        raise DatasetError(f"{p}: unknown magic 0x{magic:08X}; expected one of {known}")
    if not 0 <= ndim <= 32:
        raise DatasetError(f"{p}: header ndim {ndim} is not in [0, 32]")
    start = _header_len(ndim)
    rest = _read_upto(fh, start - 8)
    if len(rest) < start - 8:
        raise DatasetError(
            f"{p}: truncated: expected at least {start} header bytes, got {8 + len(rest)}"
        )
    dims = tuple(int(v) for v in np.frombuffer(rest, "<i4", count=max(3, ndim)))
    shape = dims[:ndim]
    if any(d < 0 for d in shape):
        raise DatasetError(f"{p}: negative dimension in header {shape}")
    dtype = NORB_MAGIC[magic]
    count = math.prod(shape)  # exact: no int64 overflow for a hostile header
    expected = start + count * dtype.itemsize
    if expected > MAX_MAT_BYTES:
        raise DatasetError(
            f"{p}: header declares a {dtype} matrix of shape {shape} ({expected} bytes), over "
            f"the {MAX_MAT_BYTES}-byte limit of a SmallNORB file"
        )
    if file_size is not None and file_size != expected:  # a plain file: its size is known
        what = "truncated" if file_size < expected else "has trailing bytes"
        raise DatasetError(
            f"{p}: {what}: expected {expected} bytes for a {dtype} matrix of shape {shape}, "
            f"got {file_size}"
        )
    data = _read_upto(fh, expected - start)
    if len(data) < expected - start:
        raise DatasetError(
            f"{p}: truncated: expected {expected} bytes for a {dtype} matrix of shape {shape}, "
            f"got {start + len(data)}"
        )
    if fh.read(1):
        raise DatasetError(
            f"{p}: has trailing bytes: decompresses to more than the {expected} bytes its "
            f"header declares for a {dtype} matrix of shape {shape}"
        )
    arr = np.frombuffer(data, dtype=dtype, count=count).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=False)


def write_norb_mat(
    path: str | os.PathLike[str], array: np.ndarray, *, compress: bool | None = None
) -> None:
    """Write ``array`` in the NORB binary matrix format (inverse of :func:`read_norb_mat`).

    The dtype picks the magic (uint8, int32, int16, float32, float64); ``compress``
    gzips the file (default: when ``path`` ends in ``.gz``). Written atomically.
    """
    arr = np.asarray(array)
    code = {dt.newbyteorder("="): m for m, dt in NORB_MAGIC.items()}.get(
        arr.dtype.newbyteorder("=")
    )
    if code is None:
        raise DatasetError(
            f"array: dtype {arr.dtype} has no NORB magic; expected uint8, int32, int16, float32 or float64"
        )
    dims = [*arr.shape, *([1] * max(0, 3 - arr.ndim))]
    header = np.array([code, arr.ndim, *dims], dtype="<i4")
    payload = header.tobytes() + np.ascontiguousarray(arr, dtype=NORB_MAGIC[code]).tobytes()
    if compress is None:
        compress = str(path).endswith(".gz")
    if compress:
        payload = gzip.compress(payload, mtime=0)
    with atomic_open(path, "wb") as fh:
        fh.write(payload)


# --------------------------------------------------------------------------- split files


def _find_split_file(stem: str, kind: str, root: str | os.PathLike[str] | None) -> Path:
    for name in (f"{stem}-{kind}.mat", f"{stem}-{kind}.mat.gz"):
        path = find_file("smallnorb", name, root)
        if path is not None:
            return path
    base = cache_dir(root)
    raise DatasetError(
        f"smallnorb: {stem}-{kind}.mat(.gz) not found in {base} or {base / 'smallnorb'}; "
        "run `vaelens data download smallnorb` or place the file there by hand"
    )


def _check_range(path: Path, column: str, values: np.ndarray, allowed: np.ndarray) -> None:
    bad = ~np.isin(values, allowed)
    if bad.any():
        row = int(np.argmax(bad))
        raise DatasetError(
            f"{path}: {column} of row {row} is {int(values[row])}, expected one of "
            f"{allowed.min()}..{allowed.max()}" + (" (even numbers)" if column == "azimuth" else "")
        )


def read_norb_split(
    split: str, root: str | os.PathLike[str] | None = None
) -> tuple[dict[str, Path], np.ndarray, np.ndarray]:
    """Locate and validate one split's label files.

    Returns ``(paths, cat, info)`` where ``paths`` maps ``dat``/``cat``/``info`` to files,
    ``cat`` is ``(N,)`` and ``info`` ``(N, 4)`` = instance, elevation, azimuth, lighting.
    The image file is only checked for its header here (see :func:`_read_left_images`).
    """
    if split not in SMALLNORB_FILES:
        raise DatasetError(f"splits: expected entries from {_SPLITS}, got {split!r}")
    stem = SMALLNORB_FILES[split]
    paths = {kind: _find_split_file(stem, kind, root) for kind in ("dat", "cat", "info")}
    cat = read_norb_mat(paths["cat"])
    info = read_norb_mat(paths["info"])
    if cat.ndim != 1 or cat.dtype.kind not in "iu":
        raise DatasetError(
            f"{paths['cat']}: expected an integer vector (N,), got {cat.dtype} {cat.shape}"
        )
    if info.ndim != 2 or info.shape[1] != 4 or info.dtype.kind not in "iu":
        raise DatasetError(
            f"{paths['info']}: expected an integer matrix (N, 4), got {info.dtype} {info.shape}"
        )
    if info.shape[0] != cat.shape[0]:
        raise DatasetError(
            f"{paths['info']}: has {info.shape[0]} rows, but {paths['cat']} has {cat.shape[0]}"
        )
    _check_range(paths["cat"], "category", cat, np.arange(5))
    for j, (col, allowed) in enumerate(
        (
            ("instance", np.arange(10)),
            ("elevation", np.arange(9)),
            ("azimuth", np.arange(0, 35, 2)),
            ("lighting", np.arange(6)),
        )
    ):
        _check_range(paths["info"], col, info[:, j], allowed)
    return paths, cat.astype(np.int64), info.astype(np.int64)


def _read_left_images(path: Path, n: int, size: int) -> np.ndarray:
    """Left images of a ``dat`` file, resized to ``size`` x ``size`` uint8 ``(n, size, size)``."""
    dat = read_norb_mat(path)
    if dat.ndim != 4 or dat.shape[1] != 2 or dat.dtype != np.uint8:
        raise DatasetError(
            f"{path}: expected a uint8 matrix (N, 2, H, W), got {dat.dtype} {dat.shape}"
        )
    if dat.shape[0] != n:
        raise DatasetError(
            f"{path}: has {dat.shape[0]} image pairs, but the label files have {n} rows"
        )
    left = dat[:, 0]
    if left.shape[1:] == (size, size):
        return np.ascontiguousarray(left)
    from PIL import Image

    out = np.empty((n, size, size), dtype=np.uint8)
    for i in range(n):
        img = Image.fromarray(left[i])
        out[i] = np.asarray(img.resize((size, size), Image.Resampling.LANCZOS))
    return out


# --------------------------------------------------------------------------- the dataset


class SmallNORB:
    """SmallNORB as a ground-truth dataset over category, elevation, azimuth, lighting.

    ``array`` is ``(N, S, S)`` uint8 (left images), ``labels`` ``(N, 4)`` factor indices,
    ``instance`` ``(N,)`` the nuisance object instance, ``split`` ``(N,)`` 0 training /
    1 testing. ``factor_values``: category 0..4 (names in ``level_names[0]``), elevation
    in degrees (30..70), azimuth in degrees (0..340), lighting 0..5.

    Instance rule of :meth:`images` (``instance_rule``): ``"first"`` (default) takes the
    lowest instance number that has the requested factors, so two factor vectors that
    differ only in elevation, azimuth or lighting show the *same* toy; ``"random"``
    draws the instance uniformly from the dataset's own generator (``seed``), treating
    the instance as noise. ``images(factors, instance=...)`` pins instances explicitly.
    """

    name = "smallnorb"
    factor_names = SMALLNORB_FACTOR_NAMES
    factor_sizes = _SIZES
    interventions = (
        "exact factor pairs over the joined splits; the object instance is a nuisance chosen "
        "by instance_rule ('first': the same toy in both images unless category changes)"
    )

    def __init__(
        self,
        array: np.ndarray,
        labels: np.ndarray,
        instance: np.ndarray,
        split: np.ndarray | None = None,
        *,
        instance_rule: str = "first",
        seed: int = 0,
        source: str = "file",
    ) -> None:
        if array.ndim != 3 or array.dtype != np.uint8 or array.shape[1] != array.shape[2]:
            raise DatasetError(
                f"smallnorb: images must be uint8 (N, S, S), got {array.dtype} {array.shape}"
            )
        n = array.shape[0]
        labels = validate_factors(labels, _SIZES, argument="labels")
        instance = np.asarray(instance, dtype=np.int64)
        if labels.shape[0] != n or instance.shape != (n,):
            raise DatasetError(
                f"smallnorb: {n} images but labels {labels.shape} and instance {instance.shape}"
            )
        if n == 0:
            raise DatasetError("smallnorb: no images")
        if instance_rule not in ("first", "random"):
            raise DatasetError(
                f"instance_rule: expected 'first' or 'random', got {instance_rule!r}"
            )
        self.array = array
        self.labels = labels
        self.instance = instance
        self.split = np.zeros(n, np.int8) if split is None else np.asarray(split, dtype=np.int8)
        self.instance_rule = instance_rule
        self.source = source
        self._rng = np.random.default_rng(seed)
        self.image_shape = (1, int(array.shape[1]), int(array.shape[2]))
        self.factor_values = [
            np.arange(5, dtype=np.float64),
            30.0 + 5.0 * np.arange(9),
            20.0 * np.arange(18),
            np.arange(6, dtype=np.float64),
        ]
        self.level_names: list[tuple[str, ...]] = [
            _CATEGORIES,
            tuple(f"{v:g} deg" for v in self.factor_values[1]),
            tuple(f"{v:g} deg" for v in self.factor_values[2]),
            tuple(str(i) for i in range(6)),
        ]
        # rows sorted by (factor key, instance, row): the first of a key has the lowest instance
        self._keys = labels @ factor_strides(_SIZES)
        order = np.lexsort((np.arange(n), instance, self._keys))
        self._order = order
        self._sorted_keys = self._keys[order]
        self._sorted_keys_inst = (self._keys * 10 + instance)[order]

    def __len__(self) -> int:
        return int(self.array.shape[0])

    def index_of(self, factors: np.ndarray, instance: np.ndarray | None = None) -> np.ndarray:
        """Row numbers ``(N,)`` of images with the given factors, chosen by the instance rule.

        With ``instance`` (``(N,)`` ints) the row with exactly that instance is returned.
        Raises :class:`DatasetError` naming the first factor row with no image.
        """
        arr = validate_factors(factors, _SIZES)
        key = arr @ factor_strides(_SIZES)
        if instance is not None:
            inst = np.asarray(instance, dtype=np.int64).reshape(-1)
            if inst.shape != key.shape:
                raise DatasetError(f"instance: expected shape {key.shape}, got {inst.shape}")
            key, table = key * 10 + inst, self._sorted_keys_inst
        else:
            table = self._sorted_keys
        lo = np.searchsorted(table, key, side="left")
        hi = np.searchsorted(table, key, side="right")
        missing = hi == lo
        if missing.any():
            row = int(np.argmax(missing))
            what = "" if instance is None else f" and instance {int(inst[row])}"
            raise DatasetError(
                f"factors: row {row} {arr[row].tolist()}{what} matches no SmallNORB image in the "
                "loaded splits"
            )
        if instance is None and self.instance_rule == "random":
            lo = lo + self._rng.integers(0, hi - lo)
        return self._order[lo]

    def uint8_at(self, index: np.ndarray) -> np.ndarray:
        """Raw uint8 images ``(N, 1, S, S)`` at row numbers (sorted reads for memory maps)."""
        idx = np.asarray(index, dtype=np.int64).reshape(-1)
        order = np.argsort(idx, kind="stable")
        out = np.empty((idx.size, *self.array.shape[1:]), dtype=np.uint8)
        out[order] = self.array[idx[order]]
        return out[:, None]

    def images(self, factors: np.ndarray, instance: np.ndarray | None = None) -> np.ndarray:
        """Factor indices ``(N, 4)`` -> float32 images ``(N, 1, S, S)`` in ``[0, 1]``."""
        return self.uint8_at(self.index_of(factors, instance)).astype(np.float32) / np.float32(255)

    def sample_indices(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` row numbers drawn uniformly over the real images."""
        if not isinstance(n, int | np.integer) or n < 0:
            raise DatasetError(f"n: expected a non-negative int, got {n!r}")
        return rng.integers(0, len(self), size=int(n))

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Factors ``(n, 4)`` of ``n`` real images drawn uniformly (every combination exists)."""
        return self.labels[self.sample_indices(n, rng)].copy()

    def __repr__(self) -> str:
        return f"SmallNORB(n={len(self)}, image_shape={self.image_shape}, instance_rule={self.instance_rule!r})"


def load_smallnorb(
    source: str = "file",
    root: str | os.PathLike[str] | None = None,
    *,
    splits: Sequence[str] = _SPLITS,
    image_size: int = 64,
    instance_rule: str = "first",
    seed: int = 0,
    cache: str | os.PathLike[str] | None = None,
) -> SmallNORB:
    """Load SmallNORB from the official ``.mat``/``.mat.gz`` files under ``root`` (or ``root/smallnorb``).

    Parameters
    ----------
    source: ``"file"`` or ``"auto"`` (no procedural renderer).
    splits: which splits to join, in order (default both: 48,600 images).
    image_size: side of the resized left image (PIL Lanczos, antialiased); 96 keeps the original.
    instance_rule, seed: see :class:`SmallNORB`.
    cache: directory for ``smallnorb_<splits>_<size>.npy`` (default: beside the ``dat`` file).
        The cache is rebuilt when older than any source file or of the wrong shape.
    """
    if source not in ("file", "auto"):
        raise DatasetError(
            f"source: smallnorb is read from files only ('file' or 'auto'), got {source!r}"
        )
    splits = tuple(splits)
    if (
        not splits
        or len(set(splits)) != len(splits)
        or any(s not in SMALLNORB_FILES for s in splits)
    ):
        raise DatasetError(f"splits: expected distinct entries from {_SPLITS}, got {list(splits)}")
    if not isinstance(image_size, int | np.integer) or not 1 <= image_size <= 96:
        raise DatasetError(f"image_size: expected an int in [1, 96], got {image_size!r}")
    parts = [read_norb_split(s, root) for s in splits]
    n = sum(cat.shape[0] for _, cat, _ in parts)
    first_dat = parts[0][0]["dat"]
    folder = first_dat.parent if cache is None else Path(cache)
    npy = folder / f"smallnorb_{'+'.join(splits)}_{int(image_size)}.npy"
    sources = [p for paths, _, _ in parts for p in paths.values()]
    array = _load_cache(npy, (n, int(image_size), int(image_size)), sources)
    if array is None:
        images = np.concatenate(
            [
                _read_left_images(paths["dat"], cat.shape[0], int(image_size))
                for paths, cat, _ in parts
            ]
        )
        atomic_save_npy(npy, images)
        array = np.load(npy, mmap_mode="r", allow_pickle=False)
    cat = np.concatenate([c for _, c, _ in parts])
    info = np.concatenate([i for _, _, i in parts])
    labels = np.stack([cat, info[:, 1], info[:, 2] // 2, info[:, 3]], axis=1)
    split = np.concatenate(
        [
            np.full(c.shape[0], _SPLITS.index(s), np.int8)
            for s, (_, c, _) in zip(splits, parts, strict=True)
        ]
    )
    return SmallNORB(array, labels, info[:, 0], split, instance_rule=instance_rule, seed=seed)


def _load_cache(npy: Path, shape: tuple[int, ...], sources: list[Path]) -> np.ndarray | None:
    if not npy.is_file() or npy.stat().st_mtime < max(p.stat().st_mtime for p in sources):
        return None
    try:
        arr = np.load(npy, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError):
        return None
    return arr if arr.shape == shape and arr.dtype == np.uint8 else None


register_dataset(
    DatasetSpec(
        name="smallnorb",
        description=(
            "SmallNORB toys (LeCun et al. 2004), both splits joined: 48,600 left images "
            "resized to 64x64 grey; instance is a nuisance"
        ),
        factor_names=SMALLNORB_FACTOR_NAMES,
        factor_sizes=_SIZES,
        image_shape=(1, 64, 64),
        loader=load_smallnorb,
        sources=("file",),
        files=tuple(
            RemoteFile(
                name=f"{stem}-{kind}.mat.gz", urls=tuple(u + f"{stem}-{kind}.mat.gz" for u in _URLS)
            )
            for stem in SMALLNORB_FILES.values()
            for kind in ("dat", "cat", "info")
        ),
        factorial=True,
        interventions=SmallNORB.interventions,
    )
)
