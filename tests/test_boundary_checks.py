"""The Python API checks shapes at the boundary: one-line vaelens errors, not raw torch/numpy ones.

Tiny hand-written models and datasets that break one part of the contract each: an encoder
whose mean has the wrong batch, a ``(mean, logvar)`` pair of different shapes, a decoder
with the wrong batch or 3 channels for a 1-channel dataset, a latent of the wrong width, an
input with the wrong channel count, datasets with zero factors or bad attributes, and
code/factor arrays numpy cannot stack or that hold NaN.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest
import torch
from torch import nn

from vaelens.analysis import analyze
from vaelens.data import check_dataset
from vaelens.errors import ArgumentError, DatasetError, ModelContractError
from vaelens.lens import (
    Lens,
    factor_pairs,
    input_intervention,
    latent_shift_effects,
    latent_traversal,
    set_latent,
)
from vaelens.metrics.disentanglement import compute_metrics

SIZE = 4
LATENT = 2


def _raises(kind: type[Exception], fn, *names: str) -> str:
    """Call ``fn``; assert it raises ``kind`` with a one-line message naming every ``names``."""
    with pytest.raises(kind) as info:
        fn()
    msg = str(info.value)
    assert "\n" not in msg, msg
    for name in names:
        assert name in msg, (name, msg)
    return msg


class TinyAE(nn.Module):
    """A 1-channel conv encoder and a linear decoder; ``mode`` breaks one output."""

    def __init__(self, mode: str = "ok", out_channels: int = 1) -> None:
        super().__init__()
        self.mode = mode
        self.out_channels = out_channels
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.mu = nn.Linear(2 * SIZE * SIZE, LATENT)
        self.logvar = nn.Linear(2 * SIZE * SIZE, LATENT)
        self.dec = nn.Linear(LATENT, out_channels * SIZE * SIZE)

    def encode(self, x: torch.Tensor):
        h = torch.relu(self.conv(x)).flatten(1)
        mean, logvar = self.mu(h), self.logvar(h)
        if self.mode == "short_mean":
            return mean[:1], logvar[:1]
        if self.mode == "wide_logvar":
            return mean, torch.cat([logvar, logvar], dim=1)
        if self.mode == "int_mean":
            return mean.round().long()
        return mean, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        out = self.dec(z).view(-1, self.out_channels, SIZE, SIZE)
        return out[:1] if self.mode == "short_decode" else out


class TinyDataset:
    """Two factors on ``(1, 4, 4)`` images: the level of the left and of the right half."""

    name = "tiny"
    factor_names: ClassVar[tuple[str, ...]] = ("left", "right")
    factor_sizes: ClassVar[tuple[int, ...]] = (2, 3)
    factor_values: ClassVar[list[np.ndarray]] = [np.arange(2.0), np.arange(3.0)]
    image_shape: ClassVar[tuple[int, ...]] = (1, SIZE, SIZE)
    channels = 1

    def images(self, factors: np.ndarray) -> np.ndarray:
        f = np.asarray(factors)
        out = np.zeros((f.shape[0], self.channels, SIZE, SIZE), dtype=np.float32)
        out[:, :, :, :2] = f[:, 0, None, None, None] / 2
        out[:, :, :, 2:] = f[:, 1, None, None, None] / 3
        return out

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return np.stack([rng.integers(0, s, n) for s in self.factor_sizes], axis=1)


def _x(n: int = 3, channels: int = 1) -> torch.Tensor:
    return torch.rand(n, channels, SIZE, SIZE, generator=torch.Generator().manual_seed(0))


# --------------------------------------------------------------------------- the lens: encode


def test_encode_mean_of_the_wrong_batch_is_a_model_contract_error() -> None:
    lens = Lens(TinyAE("short_mean"))
    msg = _raises(ModelContractError, lambda: lens.forward(_x(3)), "encode(x)", "(1, 2)")
    assert "batch 2" in msg  # traced on the first two rows


def test_encode_logvar_of_another_shape_than_the_mean() -> None:
    lens = Lens(TinyAE("wide_logvar"))
    _raises(ModelContractError, lambda: lens.encode_mean(_x()), "encode(x)", "logvar", "(2, 4)")


def test_encode_mean_that_is_not_floating() -> None:
    _raises(
        ModelContractError, lambda: Lens(TinyAE("int_mean")).forward(_x()), "encode(x)", "int64"
    )


# --------------------------------------------------------------------------- the lens: decode


def test_decode_of_the_wrong_batch_is_a_model_contract_error() -> None:
    lens = Lens(TinyAE("short_decode"), example=torch.zeros(1, 1, SIZE, SIZE))
    _raises(ModelContractError, lambda: lens.forward(_x(3)), "decode(z)", "(1, 1, 4, 4)", "3 rows")
    _raises(ModelContractError, lambda: lens.decode_output(torch.zeros(5, LATENT)), "decode(z)")


def test_stacked_variants_still_run_with_the_batch_checks() -> None:
    lens = Lens(TinyAE(), example=_x(2))
    x = _x(3)
    cap = lens.capture(x)
    variants = torch.stack([cap.activations["conv"], 2 * cap.activations["conv"]])
    out = lens.run_variants("conv", variants, cap)
    assert out.shape == (2, 3, 1, SIZE, SIZE)
    torch.testing.assert_close(out[0], lens.forward(x))
    # and a bad input is refused on the way in, not inside the conv
    _raises(ArgumentError, lambda: lens.capture(_x(3, channels=3)), "x", "(N, 1, 4, 4)")


# --------------------------------------------------------------------------- the lens: inputs


def test_input_with_the_wrong_channel_count_names_x_and_both_shapes() -> None:
    lens = Lens(TinyAE(), example=_x(2))
    bad = _x(2, channels=3)
    _raises(ArgumentError, lambda: lens.forward(bad), "x:", "(N, 1, 4, 4)", "(2, 3, 4, 4)")
    _raises(ArgumentError, lambda: lens.run_with_cache(bad), "x:", "(2, 3, 4, 4)")
    _raises(ArgumentError, lambda: lens.run_with_hooks(bad, []), "x:", "(2, 3, 4, 4)")
    _raises(
        ArgumentError,
        lambda: input_intervention(lens, _x(2), bad),
        "x_tilde",
        "(N, 1, 4, 4)",
        "(2, 3, 4, 4)",
    )


def test_input_of_another_size_than_the_traced_example() -> None:
    lens = Lens(TinyAE(), example=_x(2))
    big = torch.zeros(2, 1, SIZE + 2, SIZE + 2)
    _raises(ArgumentError, lambda: lens.encode_mean(big), "x:", "(N, 1, 4, 4)", "(2, 1, 6, 6)")


# --------------------------------------------------------------------------- the lens: latents


def test_latent_of_the_wrong_width_names_z_and_the_width() -> None:
    lens = Lens(TinyAE(), example=_x(2))
    z = torch.zeros(3, LATENT + 3)
    _raises(ArgumentError, lambda: lens.decode_output(z), "z:", "(N, 2)", "(3, 5)")
    _raises(ArgumentError, lambda: lens.run_with_hooks(None, [], z=z), "z:", "(N, 2)")
    _raises(ArgumentError, lambda: latent_traversal(lens, z, dims=[0]), "z:", "(N, 2)")
    _raises(ArgumentError, lambda: latent_shift_effects(lens, z, 1.0, dims=[0]), "z:", "(N, 2)")


def test_latent_of_an_integer_dtype() -> None:
    lens = Lens(TinyAE(), example=_x(2))
    _raises(
        ArgumentError, lambda: lens.decode_output(torch.zeros(3, LATENT, dtype=torch.long)), "z:"
    )


def test_latent_shift_effects_checks_dims_and_delta() -> None:
    lens = Lens(TinyAE(), example=_x(2))
    z = torch.zeros(3, LATENT)
    _raises(ArgumentError, lambda: latent_shift_effects(lens, z, 1.0, dims=[LATENT]), "dims")
    _raises(ArgumentError, lambda: latent_shift_effects(lens, z, float("nan")), "delta")


def test_set_latent_checks_z_and_value() -> None:
    _raises(ArgumentError, lambda: set_latent(np.zeros((2, LATENT)), 0, 1.0), "z:", "ndarray")
    z = torch.zeros(2, LATENT)
    _raises(ArgumentError, lambda: set_latent(z, 0, torch.ones(3)), "value", "(2,)", "(3,)")
    _raises(ArgumentError, lambda: set_latent(z, "0", 1.0), "dim")
    torch.testing.assert_close(
        set_latent(z, 1, torch.tensor([1.0, 2.0]))[:, 1], torch.tensor([1.0, 2.0])
    )


# --------------------------------------------------------------------------- analyze


def test_analyze_refuses_a_decoder_with_3_channels_for_a_1_channel_dataset() -> None:
    _raises(
        ModelContractError,
        lambda: analyze(TinyAE(out_channels=3), TinyDataset(), n_samples=8, baseline=False),
        "decode",
        "(3, 4, 4)",
        "(1, 4, 4)",
    )


# --------------------------------------------------------------------------- datasets


class ZeroFactors(TinyDataset):
    factor_names: ClassVar[tuple[str, ...]] = ()
    factor_sizes: ClassVar[tuple[int, ...]] = ()
    factor_values: ClassVar[list[np.ndarray]] = []


def test_dataset_with_zero_factors() -> None:
    _raises(DatasetError, lambda: check_dataset(ZeroFactors()), "factor_sizes", "empty")


def test_dataset_attribute_checks_name_the_attribute() -> None:
    class Unnamed(TinyDataset):
        factor_names: ClassVar[tuple[str, ...]] = ("left",)

    class EmptyFactor(TinyDataset):
        factor_sizes: ClassVar[tuple[int, ...]] = (2, 0)
        factor_values: ClassVar[list[np.ndarray]] = [np.arange(2.0), np.arange(0.0)]

    class FlatImages(TinyDataset):
        image_shape: ClassVar[tuple[int, ...]] = (1, 0, SIZE)

    class FloatImages(TinyDataset):
        image_shape: ClassVar[tuple[float, ...]] = (1, 4.0, 4.0)

    _raises(DatasetError, lambda: check_dataset(Unnamed()), "factor_names has 1 entries", "2")
    _raises(DatasetError, lambda: check_dataset(EmptyFactor()), "factor_sizes[1]", "positive int")
    _raises(DatasetError, lambda: check_dataset(FlatImages()), "image_shape", "(1, 0, 4)")
    _raises(DatasetError, lambda: check_dataset(FloatImages()), "image_shape", "3 positive ints")


def test_factor_pairs_checks_what_images_returns() -> None:
    class ThreeChannels(TinyDataset):
        channels = 3

    class Bytes(TinyDataset):
        def images(self, factors: np.ndarray) -> np.ndarray:
            return (super().images(factors) * 255).astype(np.uint8)

    _raises(
        DatasetError,
        lambda: factor_pairs(ThreeChannels(), 0, 4),
        "images(factors)",
        "(4, 3, 4, 4)",
        "(4, 1, 4, 4)",
    )
    _raises(DatasetError, lambda: factor_pairs(Bytes(), "right", 4), "images(factors)", "uint8")
    x, xt, _, _ = factor_pairs(TinyDataset(), "right", 4)
    assert x.shape == xt.shape == (4, 1, SIZE, SIZE) and x.dtype == torch.float32


# --------------------------------------------------------------------------- metrics


def _codes_factors(n: int = 30) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 3)), rng.integers(0, 3, size=(n, 2))


def test_metrics_refuse_arrays_numpy_cannot_stack() -> None:
    codes, factors = _codes_factors()
    ragged = [[0.0, 1.0], [2.0]] * 15
    _raises(ArgumentError, lambda: compute_metrics(["mig"], ragged, factors), "codes:")
    grad = torch.randn(30, 3, requires_grad=True)
    assert set(compute_metrics(["mig"], grad, factors)["mig"]) >= {"mig"}  # detached, not refused
    _raises(
        ArgumentError, lambda: compute_metrics(["mig"], codes, [[0, 1]] * 29 + [[0]]), "factors:"
    )


def test_metrics_refuse_nan_factors_naming_nan() -> None:
    codes, factors = _codes_factors()
    bad = factors.astype(float)
    bad[4, 1] = np.nan
    _raises(ArgumentError, lambda: compute_metrics(["mig"], codes, bad), "factors:", "NaN", "row 4")


def test_compute_metrics_checks_a_test_split_every_metric_would_ignore() -> None:
    codes, factors = _codes_factors()
    _raises(
        ArgumentError,
        lambda: compute_metrics(["mig"], codes, factors, codes_test=codes[:5]),
        "codes_test",
    )
    nan = np.full((5, 3), np.nan)
    _raises(
        ArgumentError,
        lambda: compute_metrics(["mig"], codes, factors, codes_test=nan, factors_test=factors[:5]),
        "codes_test:",
        "NaN",
    )
    _raises(
        ArgumentError,
        lambda: compute_metrics(
            ["mig"], codes, factors, codes_test=codes[:5], factors_test=factors[:4]
        ),
        "codes_test",
        "factors_test",
    )
    _raises(
        ArgumentError,
        lambda: compute_metrics(
            ["mig"],
            repr_fn=lambda x: x.reshape(len(x), -1),
            dataset=TinyDataset(),
            codes_test=codes,
        ),
        "codes_test",
    )


def test_compute_metrics_checks_what_the_dataset_samples() -> None:
    class OneColumn(TinyDataset):
        def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
            return super().sample_factors(n, rng)[:, :1]

    class ShortImages(TinyDataset):
        def images(self, factors: np.ndarray) -> np.ndarray:
            return super().images(factors)[:-1]

    def repr_fn(x: np.ndarray) -> np.ndarray:
        return x.reshape(len(x), -1)[:, :3]

    _raises(
        DatasetError,
        lambda: compute_metrics(["mig"], repr_fn=repr_fn, dataset=OneColumn(), num_train=20),
        "sample_factors",
        "(20, 1)",
        "(20, 2)",
    )
    _raises(
        DatasetError,
        lambda: compute_metrics(["mig"], repr_fn=repr_fn, dataset=ShortImages(), num_train=20),
        "images(factors)",
        "20 factor rows",
    )
