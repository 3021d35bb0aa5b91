"""FactorVAE and BetaVAE scores on a tiny ArrayDataset with oracle representations."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from vaelens.data.base import ArrayDataset
from vaelens.errors import ConfigError
from vaelens.metrics.disentanglement import beta_vae_score, factor_vae_score

SIZES = (4, 4, 4, 4)
HADAMARD = 0.5 * np.array([[1, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]])
SMALL = {"num_train": 200, "num_eval": 100, "batch_size": 16}


def grid_dataset(sizes: tuple[int, ...]) -> ArrayDataset:
    """Images (1, 1, F) whose pixels are the factor indices (uint8, pixel_max 255)."""
    grid = np.array(list(itertools.product(*[range(s) for s in sizes])), dtype=np.uint8)
    return ArrayDataset(
        "grid",
        grid.reshape(-1, 1, len(sizes), 1),
        [f"f{i}" for i in range(len(sizes))],
        sizes,
        [np.arange(s, dtype=np.float64) for s in sizes],
    )


def oracle(images: np.ndarray) -> np.ndarray:
    idx = images.reshape(images.shape[0], -1).astype(np.float64) * 255.0
    return idx / 3.0  # factor levels mapped to [0, 1]


def rotated(images: np.ndarray) -> np.ndarray:
    return oracle(images) @ HADAMARD


def with_dead(images: np.ndarray) -> np.ndarray:
    z = oracle(images)
    return np.concatenate([z, np.zeros((z.shape[0], 1))], axis=1)


@pytest.fixture(scope="module")
def ds() -> ArrayDataset:
    return grid_dataset(SIZES)


def test_factor_vae_oracle_is_one_rotation_lower(ds):
    out = factor_vae_score(oracle, ds, random_state=0, num_variance_estimate=500, **SMALL)
    assert out["eval_accuracy"] == 1.0 and out["train_accuracy"] == 1.0
    assert out["num_active_dims"] == 4
    rot = factor_vae_score(rotated, ds, random_state=0, num_variance_estimate=500, **SMALL)
    assert rot["eval_accuracy"] < 0.7


def test_factor_vae_dead_latent_is_pruned_unless_threshold_zero(ds):
    out = factor_vae_score(with_dead, ds, random_state=0, num_variance_estimate=500, **SMALL)
    assert out["eval_accuracy"] == 1.0
    assert out["num_active_dims"] == 4  # the active count, not the mask's length (5)

    # threshold 0 keeps a near-dead latent (std 1e-3) but never a zero-variance one,
    # whose 0/0 ratio would win every argmin (the reference's NaN failure)
    def near_dead(images: np.ndarray) -> np.ndarray:
        z = oracle(images)
        return np.concatenate(
            [with_dead(images), 1e-3 * np.sin(7 * z.sum(1, keepdims=True))], axis=1
        )

    pruned = factor_vae_score(near_dead, ds, random_state=0, num_variance_estimate=500, **SMALL)
    kept = factor_vae_score(
        near_dead, ds, random_state=0, num_variance_estimate=500, prune_threshold=0.0, **SMALL
    )
    assert pruned["num_active_dims"] == 4
    assert kept["num_active_dims"] == 5
    assert pruned["eval_accuracy"] == kept["eval_accuracy"] == 1.0


def test_factor_vae_is_reproducible_and_validates(ds):
    a = factor_vae_score(rotated, ds, random_state=3, num_variance_estimate=300, **SMALL)
    b = factor_vae_score(rotated, ds, random_state=3, num_variance_estimate=300, **SMALL)
    assert a == b
    with pytest.raises(ConfigError, match="batch_size"):
        factor_vae_score(oracle, ds, batch_size=1)
    with pytest.raises(ConfigError, match="repr_fn"):
        factor_vae_score(lambda x: x.sum(), ds, num_variance_estimate=10, **SMALL)

    def nan_fn(images: np.ndarray) -> np.ndarray:
        return np.full((images.shape[0], 2), np.nan)

    with pytest.raises(ValueError, match="repr_fn output: expected finite"):
        factor_vae_score(nan_fn, ds, num_variance_estimate=10, **SMALL)
    const = factor_vae_score(
        lambda x: np.ones((x.shape[0], 3)), ds, num_variance_estimate=50, **SMALL
    )
    assert const == {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0}


def test_factor_vae_and_beta_vae_skip_single_level_factors():
    ds1 = grid_dataset((4, 1, 4))

    def fn(images: np.ndarray) -> np.ndarray:
        return oracle(images)[:, [0, 2]]

    assert factor_vae_score(fn, ds1, num_variance_estimate=300, **SMALL)["eval_accuracy"] == 1.0
    assert beta_vae_score(fn, ds1, **SMALL)["eval_accuracy"] == 1.0


def test_beta_vae_oracle_and_noise(ds):
    out = beta_vae_score(oracle, ds, random_state=0, **SMALL)
    assert out["eval_accuracy"] == 1.0

    def noise(images: np.ndarray) -> np.ndarray:  # depends on nothing but the image hash
        h = (images.reshape(images.shape[0], -1) * 255).astype(np.int64) @ np.array([1, 7, 49, 343])
        return np.sin(np.outer(h, [1.0, 2.0, 3.0]))

    low = beta_vae_score(noise, ds, random_state=0, **SMALL)
    assert low["eval_accuracy"] < 0.5  # four classes, uninformative features
