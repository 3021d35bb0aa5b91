"""The convergence benchmark's shape score (benchmarks/convergence.py): a reconstruction
counts as right when it is closer to its own shape's rendering than to the others'."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from vaelens.data.dsprites import render_dsprites

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "convergence.py"


@pytest.fixture(scope="module")
def shape_accuracy():
    spec = importlib.util.spec_from_file_location("convergence_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.shape_accuracy


def _factors(n: int = 12) -> np.ndarray:
    """dSprites factors (shape, scale, orientation, posX, posY): every shape, large scales."""
    rng = np.random.default_rng(0)
    f = np.stack([rng.integers(0, s, n) for s in (3, 6, 40, 32, 32)], 1)
    f[:, 0] = np.arange(n) % 3
    f[:, 1] = 5
    f[:, 3:] = rng.integers(8, 24, (n, 2))
    return f


def _means(factors: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(render_dsprites(factors).astype(np.float32))


def test_true_images_score_one(shape_accuracy) -> None:
    f = _factors()
    assert shape_accuracy(_means(f), f, "gaussian") == 1.0


def test_the_wrong_shape_scores_zero(shape_accuracy) -> None:
    f = _factors()
    drawn = f.copy()
    drawn[:, 0] = (f[:, 0] + 1) % 3  # every image drawn as the next shape
    assert shape_accuracy(_means(drawn), f, "gaussian") == 0.0


def test_one_wrong_image_in_four(shape_accuracy) -> None:
    f = _factors()
    drawn = f.copy()
    drawn[::4, 0] = (f[::4, 0] + 2) % 3
    assert shape_accuracy(_means(drawn), f, "gaussian") == pytest.approx(0.75)


def test_bernoulli_logits(shape_accuracy) -> None:
    f = _factors()
    logits = (_means(f) - 0.5) * 20.0
    assert shape_accuracy(logits, f, "bernoulli") == 1.0
