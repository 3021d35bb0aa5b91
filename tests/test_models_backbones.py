"""The roy2025 and disentanglement_lib backbones: module names, shapes, input checks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vaelens.errors import ConfigError
from vaelens.models.backbones import (
    BACKBONES,
    Decoder,
    Encoder,
    SpatialDecoder,
    SpatialEncoder,
    get_backbone,
    resolve_backbone,
)
from vaelens.models.vae import VAE


def _output_shapes(module: nn.Module, names: list[str], x: torch.Tensor) -> dict[str, tuple]:
    mods = dict(module.named_modules())
    shapes: dict[str, tuple] = {}
    handles = [
        mods[n].register_forward_hook(lambda _m, _i, o, n=n: shapes.__setitem__(n, tuple(o.shape)))
        for n in names
    ]
    try:
        module(x)
    finally:
        for h in handles:
            h.remove()
    return shapes


def test_roy2025_encoder_layers_match_the_roy2025_architecture():
    enc = Encoder(in_channels=3, latent_dim=10)
    names = ["conv_0", "conv_1", "conv_2", "flatten", "mu", "logvar"]
    shapes = _output_shapes(enc, names, torch.rand(2, 3, 64, 64))
    assert shapes == {
        "conv_0": (2, 32, 32, 32),
        "conv_1": (2, 64, 16, 16),
        "conv_2": (2, 128, 8, 8),
        "flatten": (2, 8192),
        "mu": (2, 10),
        "logvar": (2, 10),
    }
    for i in range(3):
        conv, act = enc.get_submodule(f"conv_{i}")
        assert (conv.kernel_size, conv.stride, conv.padding) == ((4, 4), (2, 2), (1, 1))
        assert isinstance(act, nn.ReLU)
    assert isinstance(enc.flatten, nn.Flatten)


def test_roy2025_decoder_layers_match_the_roy2025_architecture():
    dec = Decoder(out_channels=1, latent_dim=10)
    names = ["fc", "unflatten", "conv_0", "conv_1", "conv_2"]
    shapes = _output_shapes(dec, names, torch.randn(2, 10))
    assert shapes == {
        "fc": (2, 8192),
        "unflatten": (2, 128, 8, 8),
        "conv_0": (2, 64, 16, 16),
        "conv_1": (2, 32, 32, 32),
        "conv_2": (2, 1, 64, 64),
    }
    assert isinstance(dec.fc[1], nn.ReLU)
    assert isinstance(dec.conv_2, nn.ConvTranspose2d)  # logits: no activation
    assert not hasattr(dec, "conv_3")


def test_model_exposes_lens_hook_names():
    names = dict(VAE(width=0.125, latent_dim=4).named_modules())
    for n in ["encoder.conv_0", "encoder.conv_2", "encoder.mu", "encoder.logvar"]:
        assert n in names
    for n in ["decoder.fc", "decoder.conv_0", "decoder.conv_2"]:
        assert n in names


def test_dlib_backbone_sizes():
    enc = Encoder(1, 10, backbone="dlib")
    shapes = _output_shapes(enc, ["conv_3", "flatten", "fc", "mu"], torch.rand(2, 1, 64, 64))
    assert shapes == {
        "conv_3": (2, 64, 4, 4),
        "flatten": (2, 1024),
        "fc": (2, 256),
        "mu": (2, 10),
    }
    assert [enc.get_submodule(f"conv_{i}")[0].out_channels for i in range(4)] == [32, 32, 64, 64]
    dec = Decoder(3, 10, backbone="dlib")
    shapes = _output_shapes(dec, ["fc_0", "fc_1", "unflatten", "conv_3"], torch.randn(2, 10))
    assert shapes == {
        "fc_0": (2, 256),
        "fc_1": (2, 1024),
        "unflatten": (2, 64, 4, 4),
        "conv_3": (2, 3, 64, 64),
    }
    assert [dec.get_submodule(f"conv_{i}")[0].out_channels for i in range(3)] == [64, 32, 32]


@pytest.mark.parametrize(("backbone", "grid"), [("roy2025", 8), ("dlib", 4)])
def test_spatial_backbone_grid(backbone, grid):
    enc = SpatialEncoder(3, code_dim=5, backbone=backbone, width=0.125)
    dec = SpatialDecoder(3, code_dim=5, backbone=backbone, width=0.125)
    z = enc(torch.rand(2, 3, 64, 64))
    assert z.shape == (2, 5, grid, grid)
    assert dec(z).shape == (2, 3, 64, 64)


def test_the_old_backbone_name_seeds_reads_as_roy2025():
    assert resolve_backbone("seeds") == "roy2025" and get_backbone("seeds") is BACKBONES["roy2025"]
    assert get_backbone("roy2025").name == "roy2025"
    old = Encoder(1, 10, backbone="seeds", width=0.125)
    new = Encoder(1, 10, width=0.125)
    assert old.state_dict().keys() == new.state_dict().keys()
    assert all(old.state_dict()[k].shape == v.shape for k, v in new.state_dict().items())
    with pytest.raises(ConfigError, match="backbone"):
        resolve_backbone("resnet")


def test_width_scales_channels():
    enc = Encoder(1, 4, width=0.125)
    assert [enc.get_submodule(f"conv_{i}")[0].out_channels for i in range(3)] == [4, 8, 16]
    assert enc.mu.in_features == 16 * 8 * 8


def test_bad_configuration_and_inputs_raise_config_error():
    with pytest.raises(ConfigError, match="image_size"):
        Encoder(1, 10, image_size=32)
    with pytest.raises(ConfigError, match="backbone"):
        Decoder(1, 10, backbone="resnet")
    with pytest.raises(ConfigError, match="width"):
        Encoder(1, 10, width=0)
    with pytest.raises(ConfigError, match="latent_dim"):
        Encoder(1, 0)
    model = VAE(in_channels=1, latent_dim=4, width=0.125)
    with pytest.raises(ConfigError, match=r"x: expected images of shape \(N, 1, 64, 64\)"):
        model.encode(torch.rand(2, 1, 32, 32))
    with pytest.raises(ConfigError, match="x: expected"):
        model.encode(torch.rand(2, 3, 64, 64))
    with pytest.raises(ConfigError, match="floating-point"):
        model.encode(torch.zeros(2, 1, 64, 64, dtype=torch.uint8))
    with pytest.raises(ConfigError, match=r"z: expected shape \(N, 4\)"):
        model.decode(torch.zeros(2, 5))
