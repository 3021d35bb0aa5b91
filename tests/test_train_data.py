"""The uint8 training set and the seeded per-epoch order."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest
import torch

from test_train_fixtures import FACTOR_SIZES, tiny_dataset
from vaelens.data.base import factors_to_index
from vaelens.errors import CheckpointError, DatasetError
from vaelens.train.data import EpochOrder, build_training_set


class FloatOnly:
    """A dataset offering only float images (no uint8_images): greyscale ramps."""

    name = "ramps"
    factor_names = ("level",)
    factor_sizes = (5,)
    factor_values: ClassVar[list[np.ndarray]] = [np.linspace(0, 1, 5)]
    image_shape = (1, 4, 4)

    def images(self, factors: np.ndarray) -> np.ndarray:
        lv = np.asarray(factors)[:, 0].astype(np.float32) / 4
        return np.broadcast_to(lv[:, None, None, None], (len(lv), 1, 4, 4)).astype(np.float32)

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.integers(0, 5, size=(n, 1))


def test_subset_is_uint8_rendered_in_chunks_and_batches_match_images() -> None:
    ds = tiny_dataset()
    a = build_training_set(ds, 40, seed=1, chunk_size=7)
    b = build_training_set(ds, 40, seed=1, chunk_size=4096)
    assert a.images is not None and a.images.dtype == torch.uint8
    assert tuple(a.images.shape) == (40, 1, 16, 16) and torch.equal(a.images, b.images)
    assert a.pixel_max == 1.0 and a.nbytes == 40 * 256
    idx = torch.tensor([3, 0, 39])
    x = a.batch(idx)
    assert x.dtype == torch.float32
    np.testing.assert_array_equal(x.numpy(), ds.images(a.factors[[3, 0, 39]]))
    assert a.batch(idx, channels_last=True).is_contiguous(memory_format=torch.channels_last)
    c = build_training_set(ds, 40, seed=2)
    assert not np.array_equal(a.factors, c.factors)  # the seed picks the subset


def test_full_file_backed_set_reads_the_array_without_a_copy() -> None:
    ds = tiny_dataset()
    ts = build_training_set(ds, None)
    assert ts.images is None and ts.gather is not None and len(ts) == int(np.prod(FACTOR_SIZES))
    np.testing.assert_array_equal(factors_to_index(ts.factors, FACTOR_SIZES), np.arange(len(ts)))
    idx = torch.tensor([63, 5, 17])
    np.testing.assert_array_equal(ts.batch(idx).numpy(), ds.images(ts.factors[[63, 5, 17]]))


def test_float_only_dataset_is_quantised_to_8_bits() -> None:
    ts = build_training_set(FloatOnly(), None)
    assert ts.pixel_max == 255.0 and ts.images is not None
    assert ts.images[:, 0, 0, 0].tolist() == [0, 64, 128, 191, 255]  # round(255 * k / 4)
    err = (ts.batch(torch.arange(5)) - torch.from_numpy(FloatOnly().images(ts.factors))).abs().max()
    assert float(err) <= 0.5 / 255 + 1e-7


def test_bad_datasets_and_limits_raise_dataset_errors() -> None:
    class OutOfRange(FloatOnly):
        def images(self, factors):
            return super().images(factors) * 2

    with pytest.raises(DatasetError, match=r"ramps: images must lie in \[0, 1\]"):
        build_training_set(OutOfRange(), None)

    class WrongShape(FloatOnly):
        def images(self, factors):
            return np.zeros((len(factors), 1, 4, 5), np.float32)

    with pytest.raises(DatasetError, match="expected"):
        build_training_set(WrongShape(), 3)
    with pytest.raises(DatasetError, match="set n_train"):
        build_training_set(FloatOnly(), None, max_bytes=16)
    with pytest.raises(DatasetError, match="lacks"):
        build_training_set(object(), 3)


def test_epoch_order_visits_every_image_once_per_epoch_and_resumes() -> None:
    order = EpochOrder(n=50, batch_size=8, seed=0)
    assert order.steps_per_epoch == 6  # the last 2 images of each permutation are dropped
    ep0 = torch.cat([order.indices(s) for s in range(6)])
    ep1 = torch.cat([order.indices(s) for s in range(6, 12)])
    assert len(set(ep0.tolist())) == 48 and len(set(ep1.tolist())) == 48
    assert not torch.equal(ep0, ep1)
    # same seed, same order; the state at step 8 reproduces the rest exactly
    again = EpochOrder(50, 8, 0)
    for s in range(9):
        again.indices(s)
    state = again.state_dict()
    rest = [again.indices(s) for s in range(9, 20)]
    resumed = EpochOrder(50, 8, 0)
    resumed.load_state_dict(state)
    assert all(torch.equal(a, resumed.indices(s)) for a, s in zip(rest, range(9, 20), strict=True))
    assert torch.equal(EpochOrder(50, 8, 0).indices(3), ep0[24:32])
    with pytest.raises(CheckpointError, match="50 images in batches of 8"):
        EpochOrder(60, 8, 0).load_state_dict(state)
    with pytest.raises(DatasetError, match="fewer than batch_size"):
        EpochOrder(4, 8, 0)
