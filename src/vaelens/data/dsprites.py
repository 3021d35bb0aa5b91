"""dSprites: 737,280 binary 64x64 sprites (square, ellipse, heart) on a full factorial grid.

Factors (indices into ``factor_values``; the constant colour factor of the file is dropped):

=============  =====  ==============================================================
shape          3      square, ellipse, heart (file values 1, 2, 3)
scale          6      ``linspace(0.5, 1, 6)``
orientation    40     ``linspace(0, 2*pi, 40)`` (index 0 and 39 draw the same image)
posX           32     ``linspace(0, 1, 32)``
posY           32     ``linspace(0, 1, 32)``
=============  =====  ==============================================================

Flat index ``= shape*245760 + scale*40960 + orientation*1024 + posX*32 + posY``.

Three sources serve the same images as ``uint8`` (values 0/1, ``pixel_max = 1``):

* ``"file"``: the official ``dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz`` (or its
  ``.hdf5`` twin) from the data cache, validated on load (:func:`read_dsprites_file`).
* ``"procedural"``: :func:`render_dsprites` draws any batch on demand (no files).
* ``"cache"``: all 737,280 rendered images stored once as ``np.packbits`` rows (512 bytes
  an image, 377 MB in all) by :func:`build_dsprites_cache`, memory-mapped and unpacked
  per batch.

``"auto"`` uses the official file when it is in the data cache, else the renderer.

Renderer geometry (pixel ``(i, j)`` is on iff its centre ``(j + 0.5, i + 0.5)`` lies in
the shape), fitted to the 320 real frames of the dataset's ``dsprites.gif``: centre
``cx = 16 + 32 posX``, ``cy = 16 + 32 posY`` (y down); shape frame
``u = (dx cos t - dy sin t) / s``, ``v = (dx sin t + dy cos t) / s`` (growing ``t`` turns
the sprite counter-clockwise on screen); square ``|u|, |v| <= 9.6``; ellipse
``(u / 12.77)^2 + (v / 7.21)^2 <= 1``; heart the classic curve
``u = 0.59966 * 16 sin^3 a``,
``v = -0.66216 * (13 cos a - 5 cos 2a - 2 cos 3a - cos 4a) - 1.43675``
(lobes up, tip down). Mismatch against the real frames is reported by the test suite
(``tests/test_data_dsprites.py``).
"""

from __future__ import annotations

import functools
import os
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vaelens.data._raster import in_box, in_ellipse, pixel_centres, to_shape_frame
from vaelens.data.base import (
    ArrayDataset,
    factors_to_index,
    index_to_factors,
    sample_factors_uniform,
    validate_factors,
)
from vaelens.data.download import dataset_dir, find_file
from vaelens.data.registry import DatasetSpec, RemoteFile, register_dataset
from vaelens.errors import DatasetError
from vaelens.io import atomic_open
from vaelens.progress import Progress

__all__ = [
    "CACHE_NAME",
    "FACTOR_NAMES",
    "FACTOR_SIZES",
    "FACTOR_VALUES",
    "HDF5_NAME",
    "IMAGE_SIZE",
    "NPZ_NAME",
    "N_IMAGES",
    "PACKED_ROW_BYTES",
    "SHAPE_NAMES",
    "DSpritesArray",
    "DSpritesPacked",
    "DSpritesProcedural",
    "build_dsprites_cache",
    "load_dsprites",
    "open_dsprites_cache",
    "read_dsprites_file",
    "render_dsprites",
]

NAME = "dsprites"
FACTOR_NAMES: tuple[str, ...] = ("shape", "scale", "orientation", "posX", "posY")
FACTOR_SIZES: tuple[int, ...] = (3, 6, 40, 32, 32)
SHAPE_NAMES: tuple[str, ...] = ("square", "ellipse", "heart")
FACTOR_VALUES: tuple[np.ndarray, ...] = (
    np.array([1.0, 2.0, 3.0]),
    np.linspace(0.5, 1.0, 6),
    np.linspace(0.0, 2.0 * np.pi, 40),
    np.linspace(0.0, 1.0, 32),
    np.linspace(0.0, 1.0, 32),
)
N_IMAGES = int(np.prod(FACTOR_SIZES))  # 737280
IMAGE_SIZE = 64
IMAGE_SHAPE = (1, IMAGE_SIZE, IMAGE_SIZE)
PACKED_ROW_BYTES = IMAGE_SIZE * IMAGE_SIZE // 8  # 512 bytes an image

NPZ_NAME = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
HDF5_NAME = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.hdf5"
NPZ_MD5 = "7da33b31b13a06f4b04a70402ce90c2e"
_REPO = "google-deepmind/dsprites-dataset"
NPZ_URLS = (
    f"https://raw.githubusercontent.com/{_REPO}/master/{NPZ_NAME}",
    f"https://github.com/{_REPO}/raw/master/{NPZ_NAME}",
)
# Bump the version when the renderer's geometry changes: old caches are then ignored.
CACHE_NAME = "dsprites_rendered_v1_packbits.npy"
_KEYS = ("imgs", "latents_classes", "latents_values")

# --------------------------------------------------------------------------- geometry
# All lengths in pixels at scale 1; fitted to the real frames of dsprites.gif.
SQUARE_HALF_SIDE = 9.6
ELLIPSE_SEMI_AXES = (12.77, 7.21)
HEART_SCALE_U = 0.59966
HEART_SCALE_V = 0.66216
HEART_OFFSET_V = -1.43675
# Each image is rendered in a WINDOW x WINDOW tile around its centre: with
# cx in [ox + 16, ox + 17) the tile holds every point within 14.5 px of the centre,
# and no shape reaches further than _MAX_RADIUS (the square's corner).
_WINDOW = 32
_MAX_RADIUS = float(np.hypot(SQUARE_HALF_SIDE, SQUARE_HALF_SIDE))
assert _MAX_RADIUS < _WINDOW / 2 - 1.5
_RENDER_CHUNK = 4096  # images a vectorised step (bounds temporary memory to ~50 MB)


_HEART_TABLE = 16384  # angles of the heart's radial lookup table


@functools.lru_cache(maxsize=1)
def _heart_profile(n: int = 8192) -> np.ndarray:
    """The heart outline as radii ``r(theta_k)`` on a uniform angle grid (closed: last = first).

    The curve is star-shaped about the origin (its polar angle grows monotonically along
    it), so a point is inside iff ``|q| <= r(angle(q))``. The curve is sampled at ``n``
    parameter values, ``r(theta)`` interpolated onto ``theta_k = -pi + 2 pi k / M``
    (``M = _HEART_TABLE``).
    """
    a = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    cu = HEART_SCALE_U * 16.0 * np.sin(a) ** 3
    cv = (
        -HEART_SCALE_V * (13 * np.cos(a) - 5 * np.cos(2 * a) - 2 * np.cos(3 * a) - np.cos(4 * a))
        + HEART_OFFSET_V
    )
    theta = np.arctan2(cv, cu)
    order = np.argsort(theta)
    theta, radius = theta[order], np.hypot(cu, cv)[order]
    theta = np.concatenate([theta[-1:] - 2 * np.pi, theta, theta[:1] + 2 * np.pi])
    radius = np.concatenate([radius[-1:], radius, radius[:1]])
    grid = np.linspace(-np.pi, np.pi, _HEART_TABLE + 1)
    return np.interp(grid, theta, radius)


def _in_heart(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    table = _heart_profile()
    pos = (np.arctan2(v, u) + np.pi) * (_HEART_TABLE / (2.0 * np.pi))
    k = np.minimum(pos.astype(np.int64), _HEART_TABLE - 1)
    frac = pos - k
    r = table[k] * (1.0 - frac) + table[k + 1] * frac
    return u * u + v * v <= r * r


def _render_chunk(factors: np.ndarray, window: int) -> np.ndarray:
    """Render validated factor indices ``(n, 5)`` -> bool ``(n, 64, 64)``."""
    n = factors.shape[0]
    out = np.zeros((n, IMAGE_SIZE, IMAGE_SIZE), dtype=bool)
    if n == 0:
        return out
    cx = 16.0 + 32.0 * FACTOR_VALUES[3][factors[:, 3]]
    cy = 16.0 + 32.0 * FACTOR_VALUES[4][factors[:, 4]]
    ox = np.clip(np.floor(cx).astype(np.int64) - window // 2, 0, IMAGE_SIZE - window)
    oy = np.clip(np.floor(cy).astype(np.int64) - window // 2, 0, IMAGE_SIZE - window)
    x, y = pixel_centres(window, window, np.float64)
    col = x[None] + ox[:, None, None]  # (n, 1, W)
    row = y[None] + oy[:, None, None]  # (n, W, 1)
    angle = FACTOR_VALUES[2][factors[:, 2]][:, None, None]
    scale = FACTOR_VALUES[1][factors[:, 1]][:, None, None]
    u, v = to_shape_frame(col, row, cx[:, None, None], cy[:, None, None], angle, scale)
    tile = np.zeros((n, window, window), dtype=bool)
    shape = factors[:, 0]
    for k, inside in enumerate(
        (
            lambda uu, vv: in_box(uu, vv, SQUARE_HALF_SIDE, SQUARE_HALF_SIDE),
            lambda uu, vv: in_ellipse(uu, vv, *ELLIPSE_SEMI_AXES),
            _in_heart,
        )
    ):
        sel = shape == k
        if sel.any():
            tile[sel] = inside(u[sel], v[sel])
    ar = np.arange(window)
    out[
        np.arange(n)[:, None, None],
        oy[:, None, None] + ar[None, :, None],
        ox[:, None, None] + ar[None, None, :],
    ] = tile
    return out


def render_dsprites(factors: np.ndarray, *, window: int = _WINDOW) -> np.ndarray:
    """Draw dSprites images from factor indices.

    Parameters
    ----------
    factors: integer array ``(N, 5)`` of (shape, scale, orientation, posX, posY) indices,
        ranges ``(3, 6, 40, 32, 32)``.
    window: side of the tile each sprite is rasterised in (32 by default; 64 rasterises the
        whole image and gives the same result, only slower).

    Returns
    -------
    ``uint8`` array ``(N, 1, 64, 64)`` with values 0/1: pixel ``(i, j)`` is 1 iff its centre
    ``(j + 0.5, i + 0.5)`` lies in the sprite (see the module docstring for the geometry).
    Vectorised over the batch (in steps of 4096 images); 256 images take milliseconds.
    """
    arr = validate_factors(factors, FACTOR_SIZES, argument="factors")
    if window not in (_WINDOW, IMAGE_SIZE):
        raise DatasetError(f"window: expected {_WINDOW} or {IMAGE_SIZE}, got {window!r}")
    out = np.empty((arr.shape[0], 1, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    for start in range(0, arr.shape[0], _RENDER_CHUNK):
        stop = min(start + _RENDER_CHUNK, arr.shape[0])
        out[start:stop, 0] = _render_chunk(arr[start:stop], window)
    return out


# --------------------------------------------------------------------------- datasets


class _DSpritesMeta:
    """Attributes every dSprites dataset shares."""

    name = NAME
    factor_names = FACTOR_NAMES
    factor_sizes = FACTOR_SIZES
    shape_names = SHAPE_NAMES
    image_shape = IMAGE_SHAPE


class DSpritesProcedural(_DSpritesMeta):
    """dSprites rendered on demand by :func:`render_dsprites` (no files, no memory)."""

    pixel_max = 1
    source = "procedural"

    def __init__(self) -> None:
        self.factor_values = [v.copy() for v in FACTOR_VALUES]

    def __len__(self) -> int:
        return N_IMAGES

    def uint8_images(self, factors: np.ndarray) -> np.ndarray:
        """Factor indices ``(N, 5)`` -> ``uint8`` images ``(N, 1, 64, 64)`` with values 0/1."""
        return render_dsprites(factors)

    def uint8_at(self, index: np.ndarray) -> np.ndarray:
        """``uint8`` images ``(N, 1, 64, 64)`` at flat indices (file order)."""
        return render_dsprites(index_to_factors(np.asarray(index), FACTOR_SIZES))

    def images(self, factors: np.ndarray) -> np.ndarray:
        """Factor indices ``(N, 5)`` -> float32 images ``(N, 1, 64, 64)`` in ``{0, 1}``."""
        return self.uint8_images(factors).astype(np.float32)

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` factor vectors, every factor uniform and independent (the full grid)."""
        return sample_factors_uniform(n, FACTOR_SIZES, rng)

    def __repr__(self) -> str:
        return f"DSpritesProcedural(n={N_IMAGES}, source='procedural')"


class DSpritesArray(_DSpritesMeta, ArrayDataset):
    """dSprites held as the official ``uint8`` array ``(737280, 64, 64)`` (values 0/1)."""

    def __init__(self, imgs: np.ndarray, *, source: str = "file") -> None:
        ArrayDataset.__init__(
            self,
            NAME,
            imgs,
            FACTOR_NAMES,
            FACTOR_SIZES,
            [v.copy() for v in FACTOR_VALUES],
            channels_last=True,
            pixel_max=1,
            source=source,
        )
        self.pixel_max = 1


class DSpritesPacked(_DSpritesMeta, ArrayDataset):
    """dSprites held as ``np.packbits`` rows ``(737280, 512)`` (usually a memory map).

    Row ``k`` is ``np.packbits(image_k.reshape(4096))`` for flat index ``k``; a batch is
    read in sorted index order and unpacked to ``uint8`` 0/1 on the fly.
    """

    def __init__(self, packed: np.ndarray, *, source: str = "cache") -> None:
        if packed.ndim != 2 or packed.shape[1] != PACKED_ROW_BYTES or packed.dtype != np.uint8:
            raise DatasetError(
                f"packed: expected uint8 rows of shape (N, {PACKED_ROW_BYTES}), "
                f"got {packed.dtype} {packed.shape}"
            )
        # ArrayDataset checks the row count and dtype; the (N, 64, 8, 1) view is never read
        # as images: uint8_at below unpacks the rows.
        ArrayDataset.__init__(
            self,
            NAME,
            packed.reshape(packed.shape[0], IMAGE_SIZE, IMAGE_SIZE // 8, 1),
            FACTOR_NAMES,
            FACTOR_SIZES,
            [v.copy() for v in FACTOR_VALUES],
            channels_last=True,
            pixel_max=1,
            source=source,
        )
        self.packed = packed
        self.image_shape = IMAGE_SHAPE
        self.pixel_max = 1

    def uint8_at(self, index: np.ndarray) -> np.ndarray:
        """``uint8`` images ``(N, 1, 64, 64)`` (0/1) at flat indices, read in sorted order."""
        idx = np.asarray(index, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= self.packed.shape[0]):
            raise DatasetError(
                f"index: expected values in [0, {self.packed.shape[0] - 1}], "
                f"got {idx.min()}..{idx.max()}"
            )
        order = np.argsort(idx, kind="stable")
        rows = np.empty((idx.size, PACKED_ROW_BYTES), dtype=np.uint8)
        rows[order] = self.packed[idx[order]]
        return np.unpackbits(rows, axis=1).reshape(idx.size, *IMAGE_SHAPE)

    def uint8_images(self, factors: np.ndarray) -> np.ndarray:
        """Factor indices ``(N, 5)`` -> ``uint8`` images ``(N, 1, 64, 64)`` with values 0/1."""
        return self.uint8_at(factors_to_index(factors, FACTOR_SIZES))


# --------------------------------------------------------------------------- official files


def _npy_header(zf: zipfile.ZipFile, member: str) -> tuple[tuple[int, ...], np.dtype]:
    """``(shape, dtype)`` from the ``.npy`` header of a zip member (its data left unread)."""
    fmt = np.lib.format
    with zf.open(member) as fh:
        version = fmt.read_magic(fh)
        if version == (1, 0):
            shape, _, dtype = fmt.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, _, dtype = fmt.read_array_header_2_0(fh)
        else:
            raise ValueError(f"member {member}: unsupported .npy format version {version}")
    return tuple(int(d) for d in shape), np.dtype(dtype)


def _read_npz(path: Path, n: int) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {}
    # allow_pickle=False: the pickled `metadata` entry is never unpickled (never read).
    with np.load(path, allow_pickle=False) as npz:
        for key in _KEYS:
            if key not in npz.files or f"{key}.npy" not in npz.zip.namelist():
                raise KeyError(key)
            # the header's shape and dtype are checked before the data is read: a crafted
            # header cannot make np.load allocate (or inflate) more than the official layout
            shape, dtype = _npy_header(npz.zip, f"{key}.npy")
            _check_declared(path, key, dtype, shape, n)
            arrays[key] = npz[key]
    return arrays


def _read_hdf5(path: Path, n: int) -> dict[str, np.ndarray]:
    import h5py

    arrays: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as fh:
        for key in _KEYS:
            if key not in fh:
                raise KeyError(key)
            link = fh.get(key, getlink=True)
            node = fh[key]
            if not isinstance(link, h5py.HardLink) or not isinstance(node, h5py.Dataset):
                raise DatasetError(
                    f"{path}: {key!r} is a {type(link).__name__} to a {type(node).__name__}, "
                    "expected a dataset stored in this file"
                )
            if node.external or node.is_virtual:
                raise DatasetError(
                    f"{path}: dataset {key!r} keeps its data in other files "
                    f"({'external storage' if node.external else 'a virtual dataset'}); "
                    "expected a dataset stored in this file"
                )
            _check_declared(path, key, node.dtype, tuple(node.shape), n)
            arrays[key] = np.asarray(node[()])
    return arrays


def _check_declared(path: Path, key: str, dtype: np.dtype, shape: tuple[int, ...], n: int) -> None:
    """The official dtype and shape of array ``key`` (``imgs``, ``latents_*``) for ``n`` rows."""
    if key == "imgs" and (dtype != np.uint8 or shape != (n, IMAGE_SIZE, IMAGE_SIZE)):
        raise DatasetError(
            f"{path}: 'imgs' is {dtype} {shape}, expected uint8 ({n}, {IMAGE_SIZE}, {IMAGE_SIZE})"
        )
    if key == "latents_classes" and (dtype.kind not in "iu" or shape != (n, 6)):
        raise DatasetError(
            f"{path}: 'latents_classes' is {dtype} {shape}, expected integers ({n}, 6)"
        )
    if key == "latents_values" and (dtype.kind != "f" or shape != (n, 6)):
        raise DatasetError(f"{path}: 'latents_values' is {dtype} {shape}, expected floats ({n}, 6)")


def read_dsprites_file(
    path: str | os.PathLike[str], *, factor_sizes: Sequence[int] = FACTOR_SIZES
) -> tuple[np.ndarray, np.ndarray]:
    """Read and validate an official dSprites file (``.npz``, or its ``.hdf5``/``.h5`` twin).

    Expected content: ``imgs`` ``(N, 64, 64)`` uint8 with values 0/1; ``latents_classes``
    ``(N, 6)`` integers in flat-index order (colour column all 0, then shape, scale,
    orientation, posX, posY with posY fastest); ``latents_values`` ``(N, 6)`` floats;
    ``N = prod(factor_sizes)`` (``factor_sizes`` is there for small test files). The
    pickled ``metadata`` entry is skipped. Each array's declared dtype and shape (the
    ``.npy`` header of an npz member, the dataset's metadata in HDF5) are checked before
    its data is read, so a crafted header cannot make the reader allocate or inflate more
    than the official layout; an HDF5 array must be stored in the file itself (no external
    link, external storage or virtual dataset, which would read other files).

    Returns ``(imgs, classes)``: ``imgs`` as stored and ``classes`` ``(N, 5)`` int64 with
    the constant colour factor dropped. Any unreadable, truncated or malformed file raises
    one :class:`DatasetError` naming ``path`` and what was expected.
    """
    p = Path(path)
    sizes = tuple(int(s) for s in factor_sizes)
    if len(sizes) != 5:
        raise DatasetError(f"factor_sizes: expected 5 sizes (shape..posY), got {sizes}")
    n = int(np.prod(sizes))
    suffix = p.suffix.lower()
    if suffix not in (".npz", ".hdf5", ".h5"):
        raise DatasetError(f"{p}: expected a .npz or .hdf5 dSprites file, got suffix {suffix!r}")
    if not p.is_file():
        raise DatasetError(f"{p}: file not found")
    kind = "npz" if suffix == ".npz" else "hdf5"
    try:
        arrays = _read_npz(p, n) if kind == "npz" else _read_hdf5(p, n)
    except KeyError as exc:
        raise DatasetError(
            f"{p}: missing array {exc.args[0]!r}; expected the official dSprites keys "
            f"{', '.join(_KEYS)}"
        ) from None
    except DatasetError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, RuntimeError) as exc:
        raise DatasetError(
            f"{p}: cannot read this dSprites {kind} file ({type(exc).__name__}: {exc}); "
            f"it is truncated or corrupted, expected the official {NPZ_NAME} layout "
            f"(re-download it with `vaelens data download {NAME}`)"
        ) from None

    imgs, classes = arrays["imgs"], arrays["latents_classes"]
    for key, arr in arrays.items():  # as declared (checked before reading), re-checked as read
        _check_declared(p, key, arr.dtype, arr.shape, n)
    if n and imgs.max() > 1:
        raise DatasetError(f"{p}: 'imgs' has values up to {imgs.max()}, expected 0/1")
    if n and np.any(classes[:, 0] != 0):
        raise DatasetError(f"{p}: 'latents_classes' column 0 (colour) must be all 0")
    expected = index_to_factors(np.arange(n, dtype=np.int64), sizes)
    bad = np.nonzero(np.any(classes[:, 1:] != expected, axis=1))[0]
    if bad.size:
        k = int(bad[0])
        raise DatasetError(
            f"{p}: 'latents_classes' row {k} is {classes[k, 1:].tolist()}, expected "
            f"{expected[k].tolist()}: rows must be in flat-index order (posY fastest)"
        )
    return imgs, classes[:, 1:].astype(np.int64)


def _find_official(root: Path | None) -> Path | None:
    for filename in (NPZ_NAME, HDF5_NAME):
        found = find_file(NAME, filename, root)
        if found is not None:
            return found
    return None


# --------------------------------------------------------------------------- packed cache


def _write_cache_header(fh: Any, n: int) -> None:
    """Write the ``.npy`` (version 1.0) header of a ``uint8`` ``(n, 512)`` array to ``fh``."""
    header = {
        "descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)),
        "fortran_order": False,
        "shape": (int(n), PACKED_ROW_BYTES),
    }
    np.lib.format.write_array_header_1_0(fh, header)


def build_dsprites_cache(
    root: str | os.PathLike[str] | None = None,
    *,
    chunk: int = 16384,
    n_limit: int | None = None,
    force: bool = False,
    progress: Progress | None = None,
) -> Path:
    """Render dSprites once and store it as ``np.packbits`` rows in a ``.npy`` file.

    The file ``dataset_dir("dsprites", root) / CACHE_NAME`` holds a ``uint8`` array
    ``(737280, 512)``: row ``k`` is ``np.packbits(render(k).reshape(4096))``
    (128-byte header + 377,487,360 bytes). Images are rendered ``chunk`` at a time and
    streamed into a temporary file renamed into place at the end (atomic: a reader never
    sees a partial cache), so memory stays at one chunk.

    ``n_limit`` renders only the first ``n_limit`` flat indices into
    ``...packbits_first{n_limit}.npy`` (a partial cache, for tests; not used by the
    ``"cache"`` source). An existing complete file is reused unless ``force``.
    ``progress(stage, done, total)`` is called with ``("render", images written, n)`` as
    each chunk starts and with ``("done", n, n)`` at the end (only the latter when the file
    is reused). Returns the path of the file.
    """
    if not isinstance(chunk, int | np.integer) or chunk < 1:
        raise DatasetError(f"chunk: expected a positive int, got {chunk!r}")
    n = N_IMAGES
    path = dataset_dir(NAME, root) / CACHE_NAME
    if n_limit is not None:
        if not isinstance(n_limit, int | np.integer) or not 1 <= n_limit <= N_IMAGES:
            raise DatasetError(f"n_limit: expected an int in [1, {N_IMAGES}], got {n_limit!r}")
        n = int(n_limit)
        path = path.with_name(f"{path.stem}_first{n}.npy")
    tell = progress or (lambda *_: None)
    if path.is_file() and not force:
        try:
            existing = np.load(path, mmap_mode="r", allow_pickle=False)
            if existing.shape == (n, PACKED_ROW_BYTES) and existing.dtype == np.uint8:
                tell("done", n, n)
                return path
        except (OSError, ValueError):
            pass  # unreadable: rebuild it
    with atomic_open(path, "wb") as fh:
        _write_cache_header(fh, n)
        for start in range(0, n, int(chunk)):
            tell("render", start, n)
            stop = min(start + int(chunk), n)
            imgs = render_dsprites(index_to_factors(np.arange(start, stop), FACTOR_SIZES))
            fh.write(np.packbits(imgs.reshape(stop - start, -1), axis=1).tobytes())
    tell("done", n, n)
    return path


# Rows re-rendered when a cache is opened, to catch a stale or damaged file cheaply.
_CACHE_CHECK_INDEX = np.array([0, 1234, 250_000, 400_001, 555_555, N_IMAGES - 1])


def open_dsprites_cache(path: str | os.PathLike[str], *, check: bool = True) -> DSpritesPacked:
    """Memory-map a cache written by :func:`build_dsprites_cache` as a dataset.

    Validates the array (``uint8``, shape ``(737280, 512)``) and, with ``check``,
    re-renders a few fixed rows and compares them, so that a cache from another renderer
    version or a damaged file raises :class:`DatasetError` naming the file.
    """
    p = Path(path)
    try:
        packed = np.load(p, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise DatasetError(
            f"{p}: cannot read the dSprites cache ({type(exc).__name__}: {exc}); delete it and "
            "rebuild it with build_dsprites_cache"
        ) from None
    if packed.dtype != np.uint8 or packed.shape != (N_IMAGES, PACKED_ROW_BYTES):
        raise DatasetError(
            f"{p}: cache array is {packed.dtype} {packed.shape}, expected uint8 "
            f"({N_IMAGES}, {PACKED_ROW_BYTES}) packbits rows"
        )
    if check:
        want = render_dsprites(index_to_factors(_CACHE_CHECK_INDEX, FACTOR_SIZES))
        got = np.unpackbits(packed[_CACHE_CHECK_INDEX], axis=1).reshape(want.shape)
        if not np.array_equal(got, want):
            raise DatasetError(
                f"{p}: cache rows differ from the renderer (stale or damaged cache); delete it "
                "and rebuild it with build_dsprites_cache"
            )
    return DSpritesPacked(packed, source="cache")


# --------------------------------------------------------------------------- registry loader

_SOURCES = ("auto", "procedural", "file", "cache")


def load_dsprites(
    source: str = "auto",
    root: str | os.PathLike[str] | None = None,
    *,
    build_cache: bool = True,
    **kwargs: Any,
) -> DSpritesProcedural | DSpritesArray | DSpritesPacked:
    """Build the dSprites dataset from ``source``.

    * ``"procedural"``: :class:`DSpritesProcedural` (rendered on demand).
    * ``"file"``: the official npz (or hdf5) under the data cache, read by
      :func:`read_dsprites_file` into a :class:`DSpritesArray` (uint8, 302 MB).
    * ``"cache"``: the packed render cache (:func:`open_dsprites_cache`), built first
      when missing and ``build_cache`` is true (about a minute, 377 MB on disk).
    * ``"auto"``: ``"file"`` when the official file is present, else ``"procedural"``.
    """
    if kwargs:
        raise DatasetError(f"dsprites: unknown options {sorted(kwargs)}; expected build_cache")
    if source not in _SOURCES:
        raise DatasetError(f"source: dsprites supports {_SOURCES}, got {source!r}")
    base = None if root is None else Path(root)
    if source == "procedural":
        return DSpritesProcedural()
    if source == "cache":
        path = dataset_dir(NAME, base) / CACHE_NAME
        if not path.is_file():
            if not build_cache:
                raise DatasetError(
                    f"{path}: dSprites cache not found; build it with build_dsprites_cache"
                )
            path = build_dsprites_cache(base)
        return open_dsprites_cache(path)
    official = _find_official(base)
    if official is None:
        if source == "auto":
            return DSpritesProcedural()
        raise DatasetError(
            f"dsprites: neither {NPZ_NAME} nor {HDF5_NAME} found in {dataset_dir(NAME, base)}; "
            f"run `vaelens data download {NAME}` or use source='procedural'"
        )
    imgs, _ = read_dsprites_file(official)
    return DSpritesArray(imgs, source="file")


register_dataset(
    DatasetSpec(
        name=NAME,
        description=(
            "dSprites: 737,280 binary 64x64 sprites (square, ellipse, heart) over shape, "
            "scale, orientation, posX, posY; official npz or a procedural renderer"
        ),
        factor_names=FACTOR_NAMES,
        factor_sizes=FACTOR_SIZES,
        image_shape=IMAGE_SHAPE,
        loader=load_dsprites,
        sources=("procedural", "file", "cache"),
        files=(RemoteFile(name=NPZ_NAME, urls=NPZ_URLS, md5=NPZ_MD5),),
    )
)
