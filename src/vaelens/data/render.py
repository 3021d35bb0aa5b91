"""Image grids and PNG files for batches of dataset images or reconstructions.

``image_grid`` tiles a batch ``(N, C, H, W)`` into one RGB picture (as ``torchvision``'s
``make_grid``, without torchvision); ``save_png`` writes an array as a PNG file atomically;
``write_sample_grids`` writes a grid of random samples of each of some datasets (``vaelens
data render``, the demo), telling a ``progress(stage, done, total)`` callback as it goes.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from vaelens.errors import DatasetError
from vaelens.io import atomic_open
from vaelens.progress import Progress

__all__ = ["SampleGrid", "image_grid", "save_png", "to_uint8", "write_sample_grids"]


def to_uint8(array: np.ndarray, *, argument: str = "array") -> np.ndarray:
    """Float values in ``[0, 1]`` -> uint8 ``round(255 * clip(x, 0, 1))``; uint8 passes through.

    Raises :class:`DatasetError` naming ``argument`` for non-finite values or a dtype that
    is neither uint8, bool nor floating point.
    """
    arr = np.asarray(array)
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * np.uint8(255)
    if arr.dtype.kind not in "f":
        raise DatasetError(
            f"{argument}: expected uint8, bool or float values, got dtype {arr.dtype}"
        )
    if not np.all(np.isfinite(arr)):
        raise DatasetError(f"{argument}: contains NaN or infinite values")
    return np.rint(np.clip(arr, 0.0, 1.0) * 255.0).astype(np.uint8)


def image_grid(
    images: np.ndarray, nrow: int, pad: int = 2, *, pad_value: float = 1.0
) -> np.ndarray:
    """Tile ``N`` images ``(N, C, H, W)`` (float in ``[0, 1]``, C = 1 or 3) into one RGB grid.

    ``nrow`` images go in each row (the ``torchvision.utils.make_grid`` convention), with
    ``ceil(N / nrow)`` rows. Every image is framed by ``pad`` pixels of ``pad_value``, so
    the grid has shape ``(rows * (H + pad) + pad, ncol * (W + pad) + pad, 3)``, uint8, with
    ``ncol = min(nrow, N)``; empty cells of the last row are filled with ``pad_value``.
    Image ``k`` occupies rows ``pad + (k // ncol) * (H + pad)`` onwards and columns
    ``pad + (k % ncol) * (W + pad)`` onwards. Grayscale images are repeated over RGB.
    Values outside ``[0, 1]`` are clipped. Accepts anything ``np.asarray`` converts (a CPU
    torch tensor without grad, say).

    Raises :class:`DatasetError` naming ``images``, ``nrow``, ``pad`` or ``pad_value``
    for bad input.
    """
    arr = np.asarray(images)
    if arr.ndim != 4 or arr.shape[0] == 0 or arr.shape[1] not in (1, 3):
        raise DatasetError(
            f"images: expected a non-empty (N, C, H, W) array with C = 1 or 3, got shape {arr.shape}"
        )
    if not isinstance(nrow, int | np.integer) or nrow < 1:
        raise DatasetError(f"nrow: expected a positive int, got {nrow!r}")
    if not isinstance(pad, int | np.integer) or pad < 0:
        raise DatasetError(f"pad: expected a non-negative int, got {pad!r}")
    if not 0.0 <= float(pad_value) <= 1.0:
        raise DatasetError(f"pad_value: expected a value in [0, 1], got {pad_value!r}")
    img = to_uint8(arr, argument="images")
    n, c, h, w = img.shape
    if c == 1:
        img = np.repeat(img, 3, axis=1)
    ncol = min(int(nrow), n)
    rows = -(-n // ncol)
    fill = np.uint8(round(float(pad_value) * 255))
    # each image padded below and to the right, then cells laid out by one reshape
    cells = np.full((rows * ncol, h + pad, w + pad, 3), fill, dtype=np.uint8)
    cells[:n, :h, :w] = img.transpose(0, 2, 3, 1)
    body = cells.reshape(rows, ncol, h + pad, w + pad, 3).transpose(0, 2, 1, 3, 4)
    body = body.reshape(rows * (h + pad), ncol * (w + pad), 3)
    grid = np.full((body.shape[0] + pad, body.shape[1] + pad, 3), fill, dtype=np.uint8)
    grid[pad:, pad:] = body
    return grid


def save_png(array: np.ndarray, path: str | os.PathLike[str]) -> Path:
    """Write ``array`` as a PNG file at ``path`` atomically; return the path.

    ``array`` is ``(H, W)`` gray, ``(H, W, 3)`` RGB or ``(H, W, 4)`` RGBA (``(H, W, 1)`` is
    taken as gray), uint8 or float in ``[0, 1]`` (converted by :func:`to_uint8`). Parent
    directories are created. A reader never sees a half-written file
    (:func:`vaelens.io.atomic_open`). Raises :class:`DatasetError` naming ``array``.
    """
    arr = np.asarray(array)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))) or 0 in arr.shape:
        raise DatasetError(
            f"array: expected a non-empty (H, W), (H, W, 3) or (H, W, 4) image, got shape {arr.shape}"
        )
    data = np.ascontiguousarray(to_uint8(arr, argument="array"))
    dest = Path(path)
    with atomic_open(dest, "wb") as fh:
        Image.fromarray(data).save(fh, format="PNG")
    return dest


class SampleGrid(NamedTuple):
    """One grid written by :func:`write_sample_grids`: the dataset, the PNG, the source used."""

    name: str
    path: Path
    source: str


def write_sample_grids(
    targets: Sequence[tuple[str, str | os.PathLike[str]]],
    *,
    n: int = 64,
    nrow: int = 8,
    seed: int = 0,
    source: str = "auto",
    root: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
) -> list[SampleGrid]:
    """Write a PNG grid of ``n`` random samples (``nrow`` a row) of each dataset of ``targets``.

    ``targets`` is a sequence of ``(dataset name, PNG path)``; each dataset is loaded with
    ``source`` and ``root`` (:func:`vaelens.data.load_dataset`) and sampled in turn from one
    ``np.random.default_rng(seed)``. The names, sources and paths are checked before
    anything is loaded. ``progress(stage, done, total)`` is called as each dataset starts
    (its name, the number of grids written, ``len(targets)``) and with ``("done", total,
    total)`` at the end. Returns one :class:`SampleGrid` a target, in order.
    """
    from vaelens.data.registry import check_source, load_dataset

    checked: list[tuple[str, Path]] = []
    for name, path in targets:
        check_source(name, source)
        dest = Path(path)
        if dest.is_dir():  # fail now rather than after loading and rendering
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(dest))
        checked.append((name, dest))

    tell = progress or (lambda *_: None)
    rng = np.random.default_rng(seed)
    total = len(checked)
    out = []
    for i, (name, dest) in enumerate(checked):
        tell(name, i, total)
        ds = load_dataset(name, source=source, root=root)
        save_png(image_grid(ds.images(ds.sample_factors(n, rng)), nrow=nrow), dest)
        out.append(SampleGrid(name, dest, str(getattr(ds, "source", source))))
    tell("done", total, total)
    return out
