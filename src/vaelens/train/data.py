"""The training set as uint8 images, and the seeded order in which the trainer visits it.

:func:`build_training_set` renders a dataset once, in chunks, into a uint8 tensor
``(N, C, H, W)`` (never a float32 copy of the whole set), or -- for a file-backed dataset
trained on in full -- reads batches straight from its (possibly memory-mapped) array.
:class:`EpochOrder` draws one ``torch.randperm`` per epoch from a seeded
``torch.Generator``; a batch is assembled by one tensor index and converted to float on
the fly: ``x = images[idx].float() / pixel_max``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from vaelens.data.base import check_dataset, index_to_factors, validate_factors
from vaelens.errors import ArgumentError, CheckpointError, DatasetError

__all__ = ["DEFAULT_MAX_BYTES", "EpochOrder", "TrainingSet", "build_training_set"]

#: largest training set (bytes of uint8 pixels) rendered into memory
DEFAULT_MAX_BYTES = 8 * 1024**3


class TrainingSet:
    """uint8 training images with their factor indices.

    Either ``images`` (a uint8 tensor ``(N, C, H, W)``, on any device) or ``gather`` (a
    function from a numpy index array to uint8 ``(n, C, H, W)``, e.g. a memory map's
    :meth:`~vaelens.data.base.ArrayDataset.uint8_at`) provides the pixels; a pixel value
    ``v`` means intensity ``v / pixel_max``.
    """

    def __init__(
        self,
        *,
        factors: np.ndarray,
        image_shape: tuple[int, int, int],
        pixel_max: float,
        images: torch.Tensor | None = None,
        gather: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        if (images is None) == (gather is None):
            raise ArgumentError("TrainingSet: give exactly one of images and gather")
        if images is not None:
            if (
                images.dtype != torch.uint8
                or images.ndim != 4
                or tuple(images.shape[1:]) != tuple(image_shape)
            ):
                raise DatasetError(
                    f"training set: expected uint8 images (N, {', '.join(map(str, image_shape))}), "
                    f"got {images.dtype} {tuple(images.shape)}"
                )
            if images.shape[0] != factors.shape[0]:
                raise DatasetError("training set: images and factors differ in length")
        self.images = images
        self.gather = gather
        self.factors = factors
        self.image_shape = tuple(int(s) for s in image_shape)
        self.pixel_max = float(pixel_max)

    def __len__(self) -> int:
        return int(self.factors.shape[0])

    @property
    def nbytes(self) -> int:
        """Bytes of uint8 pixels."""
        return len(self) * int(np.prod(self.image_shape))

    def to(self, device: torch.device | str) -> TrainingSet:
        """Move in-memory images to ``device`` (a no-op for a gathered set)."""
        if self.images is not None:
            self.images = self.images.to(device)
        return self

    def batch(
        self,
        index: torch.Tensor,
        *,
        device: torch.device | str = "cpu",
        channels_last: bool = False,
    ) -> torch.Tensor:
        """Float32 images ``(n, C, H, W)`` in ``[0, 1]`` at positions ``index`` (int64, 1-D)."""
        if self.images is not None:
            idx = index.to(self.images.device)
            raw = self.images.index_select(0, idx)
        else:
            assert self.gather is not None
            raw = torch.from_numpy(np.ascontiguousarray(self.gather(index.cpu().numpy())))
        dev = torch.device(device)
        if raw.device != dev:
            if dev.type == "cuda":
                raw = raw.pin_memory()
            raw = raw.to(dev, non_blocking=True)
        x = raw.to(torch.float32).mul_(1.0 / self.pixel_max)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x


def _uint8_chunk(dataset: Any, factors: np.ndarray) -> tuple[np.ndarray, float]:
    """uint8 images of ``factors`` and the pixel value of white."""
    if callable(getattr(dataset, "uint8_images", None)):
        raw = np.asarray(dataset.uint8_images(factors))
        pixel_max = float(getattr(dataset, "pixel_max", 255.0))
        if raw.dtype != np.uint8:
            raise DatasetError(
                f"dataset {dataset.name}: uint8_images returned dtype {raw.dtype}, expected uint8"
            )
        return raw, pixel_max
    img = np.asarray(dataset.images(factors))
    if img.dtype.kind != "f":
        raise DatasetError(
            f"dataset {dataset.name}: images returned dtype {img.dtype}, expected float32"
        )
    lo, hi = (float(img.min()), float(img.max())) if img.size else (0.0, 1.0)
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo < -1e-6 or hi > 1 + 1e-6:
        raise DatasetError(
            f"dataset {dataset.name}: images must lie in [0, 1], got values in [{lo}, {hi}]"
        )
    # 8-bit quantisation: the error is at most 1/510 of the intensity range.
    return np.rint(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8), 255.0


def build_training_set(
    dataset: Any,
    n_train: int | None = None,
    *,
    seed: int = 0,
    chunk_size: int = 4096,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> TrainingSet:
    """The training images of ``dataset`` as uint8, rendered once in chunks of ``chunk_size``.

    ``n_train=None`` takes every image of the factorial grid (flat-index order); a file-backed
    dataset exposing ``array`` and ``uint8_at`` is then read batch by batch without a copy.
    ``n_train=n`` draws ``dataset.sample_factors(n, np.random.default_rng(seed))``.
    Datasets with ``uint8_images`` are stored as-is (``pixel_max`` from the dataset); others
    are quantised to ``round(255 * images(factors))``. Raises :class:`DatasetError` if the
    set would exceed ``max_bytes`` in memory or the dataset breaks the contract.
    """
    ds = check_dataset(dataset)
    shape = tuple(int(s) for s in ds.image_shape)
    per_image = int(np.prod(shape))
    if n_train is None:
        total = int(np.prod(ds.factor_sizes))
        if isinstance(getattr(ds, "array", None), np.ndarray) and callable(
            getattr(ds, "uint8_at", None)
        ):
            if len(ds) != total:  # type: ignore[arg-type]
                raise DatasetError(
                    f"dataset {ds.name}: array has {len(ds)} images, expected {total}"
                )  # type: ignore[arg-type]
            factors = index_to_factors(np.arange(total, dtype=np.int64), ds.factor_sizes)
            return TrainingSet(
                factors=factors,
                image_shape=shape,
                pixel_max=float(getattr(ds, "pixel_max", 255.0)),
                gather=ds.uint8_at,  # type: ignore[attr-defined]
            )
        factors = index_to_factors(np.arange(total, dtype=np.int64), ds.factor_sizes)
    else:
        if int(n_train) < 1:
            raise DatasetError(f"n_train: expected a positive int or None, got {n_train!r}")
        factors = validate_factors(
            ds.sample_factors(int(n_train), np.random.default_rng(seed)),
            ds.factor_sizes,
            argument="sample_factors",
        )
        if factors.shape[0] != int(n_train):
            raise DatasetError(
                f"dataset {ds.name}: sample_factors returned {factors.shape[0]} rows, expected {n_train}"
            )
    n = int(factors.shape[0])
    if n * per_image > max_bytes:
        raise DatasetError(
            f"dataset {ds.name}: {n} images of {shape} need {n * per_image / 2**30:.1f} GiB as uint8, "
            f"over the {max_bytes / 2**30:.1f} GiB limit; set n_train"
        )
    images = torch.empty((n, *shape), dtype=torch.uint8)
    out = images.numpy()
    pixel_max = None
    for start in range(0, n, chunk_size):
        chunk = factors[start : start + chunk_size]
        raw, pm = _uint8_chunk(ds, chunk)
        if raw.shape != (chunk.shape[0], *shape):
            raise DatasetError(
                f"dataset {ds.name}: images of {chunk.shape[0]} factor rows have shape {raw.shape}, "
                f"expected {(chunk.shape[0], *shape)}"
            )
        out[start : start + chunk.shape[0]] = raw
        pixel_max = pm
    return TrainingSet(
        factors=factors, image_shape=shape, pixel_max=pixel_max or 255.0, images=images
    )


class EpochOrder:
    """Which training images each optimiser step sees: a fresh seeded permutation per epoch.

    Step ``s`` of a run uses positions ``perm_e[i * B : (i + 1) * B]`` with
    ``e, i = divmod(s, steps_per_epoch)`` and ``perm_e`` the ``e``-th
    ``torch.randperm(n, generator=g)`` of a generator seeded with ``seed``. The state saved
    in a checkpoint is the generator's state at the start of the current epoch.
    """

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        if n < batch_size:
            raise DatasetError(f"training set: {n} images is fewer than batch_size {batch_size}")
        self.n = int(n)
        self.batch_size = int(batch_size)
        self.steps_per_epoch = self.n // self.batch_size
        self.generator = torch.Generator().manual_seed(int(seed))
        self.epoch = -1
        self._epoch_start_state = self.generator.get_state()
        self._perm: torch.Tensor | None = None

    def _next_epoch(self) -> None:
        self._epoch_start_state = self.generator.get_state()
        self._perm = torch.randperm(self.n, generator=self.generator)
        self.epoch += 1

    def indices(self, step: int) -> torch.Tensor:
        """Positions (int64) of the training images of global step ``step``."""
        epoch, i = divmod(int(step), self.steps_per_epoch)
        if epoch < self.epoch:
            raise ArgumentError(
                f"EpochOrder: step {step} lies in epoch {epoch}, before the current {self.epoch}"
            )
        while self.epoch < epoch:
            self._next_epoch()
        assert self._perm is not None
        return self._perm[i * self.batch_size : (i + 1) * self.batch_size]

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state: the epoch and the generator state at its start."""
        return {
            "epoch": self.epoch,
            "n": self.n,
            "batch_size": self.batch_size,
            "generator_state": self._epoch_start_state.tolist(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; the current epoch's permutation is drawn again."""
        try:
            epoch, n, bs = int(state["epoch"]), int(state["n"]), int(state["batch_size"])
            gen_state = torch.tensor(state["generator_state"], dtype=torch.uint8)
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"data order state: malformed ({exc})") from None
        if (n, bs) != (self.n, self.batch_size):
            raise CheckpointError(
                f"data order state: saved for {n} images in batches of {bs}, "
                f"this run has {self.n} in batches of {self.batch_size}"
            )
        self.generator.set_state(gen_state)
        self.epoch = epoch - 1
        if epoch >= 0:
            self._next_epoch()
        else:
            self._epoch_start_state = self.generator.get_state()
            self._perm = None
