"""MPI3D (Gondal et al., NeurIPS 2019): a robot arm photographed or rendered, 64x64x3.

Files (key ``images``, ``(N, 64, 64, 3)`` uint8, flat index with the last factor fastest):

=================  ===================================  =========  ==========================
variant            file                                 N          factor sizes
=================  ===================================  =========  ==========================
``toy``            ``mpi3d_toy.npz``                    1,036,800  ``[6, 6, 2, 3, 3, 40, 40]``
``realistic``      ``mpi3d_realistic.npz``              1,036,800  ``[6, 6, 2, 3, 3, 40, 40]``
``real``           ``mpi3d_real.npz``                   1,036,800  ``[6, 6, 2, 3, 3, 40, 40]``
``real_complex``   ``real3d_complicated_shapes_ordered  460,800    ``[4, 4, 2, 3, 3, 40, 40]``
                   .npz`` (registered as
                   ``mpi3d_real_complex``)
=================  ===================================  =========  ==========================

Factors: object_color, object_shape, object_size, camera_height, background_color,
horizontal_axis, vertical_axis. (disentanglement_lib reshapes the toy file to
``[4, 4, 2, 3, 3, 40, 40]``, the size of an older challenge file: wrong for the final files.)

An ``.npz`` cannot be memory-mapped, and the images take 12.7 GB. On first use the
``images.npy`` member is streamed out of the zip into ``<stem>.images.npy`` next to the
``.npz`` (written atomically, never held in memory), and that file is memory-mapped
from then on. The member's ``.npy`` header is checked first (uint8 ``(N, H, W, 3)`` with
``N`` from the factor grid and ``H, W <= MAX_IMAGE_SIDE``), so a crafted header cannot make
the conversion inflate more than the official size; a member holding more data than its
header declares is refused.
"""

from __future__ import annotations

import contextlib
import math
import os
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np

from vaelens.data.base import ArrayDataset
from vaelens.data.download import cache_dir, find_file
from vaelens.data.registry import DatasetSpec, RemoteFile, register_dataset
from vaelens.errors import DatasetError
from vaelens.io import atomic_open

__all__ = [
    "MAX_IMAGE_SIDE",
    "MPI3D",
    "MPI3D_FACTOR_NAMES",
    "MPI3D_VARIANTS",
    "convert_npz_member_to_npy",
    "load_mpi3d",
    "load_mpi3d_real_complex",
    "read_npz_member_header",
]

MPI3D_FACTOR_NAMES: tuple[str, ...] = (
    "object_color",
    "object_shape",
    "object_size",
    "camera_height",
    "background_color",
    "horizontal_axis",
    "vertical_axis",
)

_SIZES = (6, 6, 2, 3, 3, 40, 40)
#: largest image side accepted (every MPI3D variant is 64x64): with the image count fixed
#: by the factor grid it bounds what a header can make the conversion decompress
MAX_IMAGE_SIDE = 64
_COMPLEX_SIZES = (4, 4, 2, 3, 3, 40, 40)
_AXIS = tuple(str(i) for i in range(40))
_COMMON_LEVELS = (
    ("small", "large"),
    ("top", "center", "bottom"),
    ("purple", "sea green", "salmon"),
    _AXIS,
    _AXIS,
)
_LEVELS: dict[str, tuple[tuple[str, ...], ...]] = {
    "simple": (
        ("white", "green", "red", "blue", "brown", "olive"),
        ("cone", "cube", "cylinder", "hexagonal", "pyramid", "sphere"),
        *_COMMON_LEVELS,
    ),
    "complex": (
        ("yellow", "green", "olive", "red"),
        ("coffee-cup", "tennis-ball", "croissant", "beer-cup"),
        *_COMMON_LEVELS,
    ),
}

_HF = "https://huggingface.co/datasets/waleedgondal/mpi3d/resolve/main/"
_GCS = "https://storage.googleapis.com/mpi3d_disentanglement_dataset/data/"
_GCS_OLD = "https://storage.googleapis.com/disentanglement_dataset/Final_Dataset/"


def _remote(name: str, md5: str | None, variant: str | None = None) -> RemoteFile:
    return RemoteFile(
        name=name, urls=(_HF + name, _GCS + name, _GCS_OLD + name), md5=md5, variant=variant
    )


#: variant -> (file name, md5, official factor sizes, level-name table)
MPI3D_VARIANTS: dict[str, tuple[str, str | None, tuple[int, ...], str]] = {
    "toy": ("mpi3d_toy.npz", "55889cb7c7dfc655d6e0277beee88868", _SIZES, "simple"),
    "realistic": ("mpi3d_realistic.npz", "59a6225b88b635365f70c91b3e52f70f", _SIZES, "simple"),
    "real": ("mpi3d_real.npz", "0f33f609918fb5c97996692f91129802", _SIZES, "simple"),
    # Only on Google Drive (file id 1Tp8eTdHxgUMtsZv5uAoYAbJR1BOa_OQm); no checksum published.
    "real_complex": ("real3d_complicated_shapes_ordered.npz", None, _COMPLEX_SIZES, "complex"),
}


class MPI3D(ArrayDataset):
    """An MPI3D variant backed by a memory-mapped uint8 array ``(N, 64, 64, 3)``.

    ``factor_values[f]`` are the level numbers ``0..s_f-1`` (as float64); the names of the
    levels (``"white"``, ``"cone"``, ``"top"``, ...) are in ``level_names[f]``.
    """

    def __init__(
        self,
        array: np.ndarray,
        *,
        variant: str,
        factor_sizes: Sequence[int],
        path: Path | None = None,
        name: str = "mpi3d",
    ) -> None:
        sizes = tuple(int(s) for s in factor_sizes)
        super().__init__(
            name,
            array,
            MPI3D_FACTOR_NAMES,
            sizes,
            [np.arange(s, dtype=np.float64) for s in sizes],
            channels_last=True,
            pixel_max=255.0,
            source="file",
        )
        self.variant = variant
        self.path = path
        table = _LEVELS[MPI3D_VARIANTS[variant][3]]
        self.level_names: list[tuple[str, ...]] = [
            names if len(names) == s else tuple(str(i) for i in range(s))
            for names, s in zip(table, sizes, strict=True)
        ]


# --------------------------------------------------------------------------- npz -> npy streaming


def read_npz_member_header(
    path: str | os.PathLike[str], key: str
) -> tuple[tuple[int, ...], np.dtype, bool]:
    """``(shape, dtype, fortran_order)`` of array ``key`` in the ``.npz`` at ``path``.

    Only the ``.npy`` header of the zip member ``key + ".npy"`` is read (cheap even for
    a 12 GB archive). Raises :class:`DatasetError` naming the file if it is not a zip
    archive or lacks the key.
    """
    with _open_member(Path(path), key) as fh:
        return _read_header(fh, Path(path), key)


@contextlib.contextmanager
def _open_member(path: Path, key: str) -> Iterator[BinaryIO]:
    """The zip member ``key + ".npy"`` of the ``.npz`` at ``path``, opened for streaming."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DatasetError(f"{path}: not a readable .npz (zip) archive ({exc})") from None
    with zf:
        member = f"{key}.npy"
        if member not in zf.namelist():
            keys = sorted(n.removesuffix(".npy") for n in zf.namelist())
            raise DatasetError(
                f"{path}: expected an array named {key!r} in the .npz, found keys {keys}"
            )
        with zf.open(member) as fh:
            yield fh  # type: ignore[misc]


def _read_header(fh: BinaryIO, path: Path, key: str) -> tuple[tuple[int, ...], np.dtype, bool]:
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(fh)
        else:
            raise ValueError(f"unsupported .npy format version {version}")
    except (ValueError, EOFError, OSError, zipfile.BadZipFile, zlib.error) as exc:
        raise DatasetError(f"{path}: member {key}.npy is not a valid .npy array ({exc})") from None
    return tuple(int(s) for s in shape), np.dtype(dtype), bool(fortran)


def convert_npz_member_to_npy(
    npz_path: str | os.PathLike[str],
    key: str,
    npy_path: str | os.PathLike[str],
    *,
    chunk_bytes: int = 1 << 24,
    max_bytes: int | None = None,
) -> tuple[int, ...]:
    """Stream array ``key`` of an ``.npz`` into a standalone ``.npy`` file; return its shape.

    The member is decompressed chunk by chunk (``chunk_bytes`` at a time) and written
    through :func:`vaelens.io.atomic_open`, so the array is never held in memory and a
    reader never sees a half-written ``npy_path``. The result loads with
    ``np.load(npy_path, mmap_mode="r")`` and equals ``np.load(npz_path)[key]``.
    Fortran-ordered or object arrays raise :class:`DatasetError`; so do a header declaring
    more than ``max_bytes`` data bytes (when given), a member shorter or longer than its
    header declares (a truncated download, a crafted file) and a bad CRC-32. Nothing is
    ever decompressed past the declared size plus one byte.
    """
    src = Path(npz_path)
    with _open_member(src, key) as fh:
        shape, dtype, fortran = _read_header(fh, src, key)
        if fortran or dtype.hasobject:
            raise DatasetError(
                f"{src}: member {key}.npy is {'Fortran-ordered' if fortran else 'an object array'}; "
                "expected a C-ordered numeric array"
            )
        if any(d < 0 for d in shape):
            raise DatasetError(f"{src}: member {key}.npy declares a negative dimension {shape}")
        nbytes = math.prod(shape) * dtype.itemsize  # exact: no int64 overflow
        if max_bytes is not None and nbytes > max_bytes:
            raise DatasetError(
                f"{src}: member {key}.npy declares {dtype} {shape} ({nbytes} bytes), over the "
                f"{max_bytes}-byte limit"
            )
        header = {
            "descr": np.lib.format.dtype_to_descr(dtype),
            "fortran_order": False,
            "shape": shape,
        }
        try:
            with atomic_open(npy_path, "wb") as out:
                np.lib.format.write_array_header_1_0(out, header)
                left = nbytes
                while left > 0:
                    block = fh.read(min(chunk_bytes, left))
                    if not block:
                        raise DatasetError(
                            f"{src}: member {key}.npy is truncated: expected {nbytes} data "
                            f"bytes, got {nbytes - left}"
                        )
                    out.write(block)
                    left -= len(block)
                if fh.read(1):  # reading to the end also checks the member's CRC-32
                    raise DatasetError(
                        f"{src}: member {key}.npy holds more data than the {nbytes} bytes its "
                        f"header declares for {dtype} {shape}"
                    )
        except (EOFError, zipfile.BadZipFile, zlib.error) as exc:
            raise DatasetError(
                f"{src}: member {key}.npy is corrupt ({type(exc).__name__}: {exc})"
            ) from None
    return shape


# --------------------------------------------------------------------------- loaders


def _mapped_images(npz: Path | None, npy: Path, total: int, what: str) -> np.ndarray:
    """Memory-map ``npy``, converting it from ``npz`` first when absent or stale.

    The shape in the npz header is checked (``(total, H, W, 3)`` uint8) *before* a
    conversion, so a wrong file fails at once instead of after copying 12 GB.
    """
    if npz is not None:
        shape, dtype, _ = read_npz_member_header(npz, "images")
        _check_shape(npz, shape, dtype, total, what)
        fresh = npy.is_file() and npy.stat().st_mtime >= npz.stat().st_mtime
        if fresh:
            try:
                cached = np.load(npy, mmap_mode="r", allow_pickle=False)
                fresh = cached.shape == shape and cached.dtype == dtype
            except (ValueError, OSError):
                fresh = False
        if not fresh:
            limit = total * MAX_IMAGE_SIDE * MAX_IMAGE_SIDE * 3
            convert_npz_member_to_npy(npz, "images", npy, max_bytes=limit)
    try:
        array = np.load(npy, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise DatasetError(f"{npy}: cannot memory-map the cached images ({exc})") from None
    _check_shape(npy, array.shape, array.dtype, total, what)
    return array


def _check_shape(
    path: Path, shape: tuple[int, ...], dtype: np.dtype, total: int, what: str
) -> None:
    if len(shape) != 4 or shape[3] != 3 or dtype != np.uint8:
        raise DatasetError(
            f"{path}: expected 'images' of shape (N, H, W, 3) and dtype uint8, "
            f"got shape {shape} and dtype {dtype}"
        )
    if not (1 <= shape[1] <= MAX_IMAGE_SIDE and 1 <= shape[2] <= MAX_IMAGE_SIDE):
        raise DatasetError(
            f"{path}: 'images' are {shape[1]}x{shape[2]}, expected sides in "
            f"[1, {MAX_IMAGE_SIDE}] (MPI3D images are 64x64)"
        )
    if shape[0] != total:
        raise DatasetError(f"{path}: holds {shape[0]} images, expected {total} = {what}")


def _find(filename: str, root: str | os.PathLike[str] | None) -> Path | None:
    for folder in ("mpi3d", "mpi3d_real_complex"):
        path = find_file(folder, filename, root)
        if path is not None:
            return path
    return None


def load_mpi3d(
    source: str = "file",
    root: str | os.PathLike[str] | None = None,
    *,
    variant: str = "toy",
    factor_sizes: Sequence[int] | None = None,
    cache: str | os.PathLike[str] | None = None,
) -> MPI3D:
    """Load an MPI3D variant from its official ``.npz`` under ``root`` (or ``root/mpi3d``).

    Parameters
    ----------
    source: ``"file"`` or ``"auto"`` (MPI3D has no procedural renderer).
    root: data directory (default :func:`vaelens.data.download.cache_dir`).
    variant: ``"toy"``, ``"realistic"``, ``"real"`` or ``"real_complex"``.
    factor_sizes: override the official grid (tests use tiny grids); the file must hold
        exactly ``prod(factor_sizes)`` images in flat-index order.
    cache: directory of the memory-mappable ``<stem>.images.npy`` (default: beside the npz).

    A ``<stem>.images.npy`` already converted is used even when the ``.npz`` was deleted.
    """
    if source not in ("file", "auto"):
        raise DatasetError(
            f"source: mpi3d is read from files only ('file' or 'auto'), got {source!r}"
        )
    if variant not in MPI3D_VARIANTS:
        raise DatasetError(f"variant: expected one of {tuple(MPI3D_VARIANTS)}, got {variant!r}")
    filename, _, official, _ = MPI3D_VARIANTS[variant]
    try:
        sizes = tuple(official if factor_sizes is None else (int(s) for s in factor_sizes))
    except (TypeError, ValueError):
        sizes = ()
    if len(sizes) != len(MPI3D_FACTOR_NAMES) or any(s < 1 for s in sizes):
        raise DatasetError(
            f"factor_sizes: expected {len(MPI3D_FACTOR_NAMES)} positive ints "
            f"({', '.join(MPI3D_FACTOR_NAMES)}), got {factor_sizes!r}"
        )
    name = "mpi3d_real_complex" if variant == "real_complex" else "mpi3d"
    stem = filename.removesuffix(".npz")
    npz = _find(filename, root)
    if npz is None:
        npy = _find(f"{stem}.images.npy", root if cache is None else cache)
        if npy is None:
            base = cache_dir(root)
            raise DatasetError(
                f"{name} ({variant}): {filename} not found in {base}, {base / 'mpi3d'} or "
                f"{base / 'mpi3d_real_complex'}; run `vaelens data download {name}` or place "
                "the file there by hand"
            )
    else:
        npy = (npz.parent if cache is None else Path(cache)) / f"{stem}.images.npy"
    what = f"prod{list(sizes)} for mpi3d variant {variant!r}"
    array = _mapped_images(npz, npy, int(np.prod(sizes)), what)
    where = npz if npz is not None else npy
    return MPI3D(array, variant=variant, factor_sizes=sizes, path=where, name=name)


def load_mpi3d_real_complex(
    source: str = "file",
    root: str | os.PathLike[str] | None = None,
    *,
    factor_sizes: Sequence[int] | None = None,
    cache: str | os.PathLike[str] | None = None,
) -> MPI3D:
    """:func:`load_mpi3d` with ``variant="real_complex"`` (sizes ``[4, 4, 2, 3, 3, 40, 40]``)."""
    return load_mpi3d(source, root, variant="real_complex", factor_sizes=factor_sizes, cache=cache)


register_dataset(
    DatasetSpec(
        name="mpi3d",
        description=(
            "MPI3D robot-arm images (Gondal et al. 2019), 1,036,800 64x64x3 images; "
            "variants toy (default), realistic, real"
        ),
        factor_names=MPI3D_FACTOR_NAMES,
        factor_sizes=_SIZES,
        image_shape=(3, 64, 64),
        loader=load_mpi3d,
        sources=("file",),
        files=tuple(
            _remote(MPI3D_VARIANTS[v][0], MPI3D_VARIANTS[v][1], v)
            for v in ("toy", "realistic", "real")
        ),
        variants=("toy", "realistic", "real"),
    )
)

register_dataset(
    DatasetSpec(
        name="mpi3d_real_complex",
        description=(
            "MPI3D real-world complex shapes, 460,800 64x64x3 photographs; distributed on "
            "Google Drive only (file id 1Tp8eTdHxgUMtsZv5uAoYAbJR1BOa_OQm): download "
            "real3d_complicated_shapes_ordered.npz by hand"
        ),
        factor_names=MPI3D_FACTOR_NAMES,
        factor_sizes=_COMPLEX_SIZES,
        image_shape=(3, 64, 64),
        loader=load_mpi3d_real_complex,
        sources=("file",),
        files=(
            RemoteFile(
                name=MPI3D_VARIANTS["real_complex"][0],
                urls=(),
                md5=None,
                manual="Google Drive (file id 1Tp8eTdHxgUMtsZv5uAoYAbJR1BOa_OQm, see the MPI3D README)",
            ),
        ),
    )
)
