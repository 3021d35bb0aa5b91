"""The roy2025 and disentanglement_lib backbones: module names, shapes, input checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from vaelens.errors import ConfigError
from vaelens.models.backbones import (
    BACKBONES,
    Decoder,
    Encoder,
    SameConv2d,
    SameConvTranspose2d,
    SpatialDecoder,
    SpatialEncoder,
    get_backbone,
    resolve_backbone,
    same_padding,
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
    convs = [enc.get_submodule(f"conv_{i}")[0] for i in range(4)]
    assert [c.out_channels for c in convs] == [32, 32, 64, 64]
    # disentanglement_lib's conv_encoder: kernels 4, 4, 2, 2, all stride 2, TF "same"
    assert [c.kernel_size for c in convs] == [(4, 4), (4, 4), (2, 2), (2, 2)]
    assert all(isinstance(c, SameConv2d) and c.stride == (2, 2) for c in convs)
    dec = Decoder(3, 10, backbone="dlib")
    shapes = _output_shapes(dec, ["fc_0", "fc_1", "unflatten", "conv_3"], torch.randn(2, 10))
    assert shapes == {
        "fc_0": (2, 256),
        "fc_1": (2, 1024),
        "unflatten": (2, 64, 4, 4),
        "conv_3": (2, 3, 64, 64),
    }
    assert [dec.get_submodule(f"conv_{i}")[0].out_channels for i in range(3)] == [64, 32, 32]
    assert isinstance(dec.conv_3, SameConvTranspose2d) and dec.conv_3.kernel_size == (4, 4)


def test_dlib_k4_keeps_the_old_all_kernel_4_network():
    enc = Encoder(1, 10, backbone="dlib_k4")
    assert [enc.get_submodule(f"conv_{i}")[0].kernel_size for i in range(4)] == [(4, 4)] * 4
    assert enc.get_submodule("conv_3")[0].padding == (1, 1)
    assert enc(torch.rand(1, 1, 64, 64))[0].shape == (1, 10)


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "expected"),
    [
        (64, 4, 2, (1, 1)),
        (16, 2, 2, (0, 0)),
        (6, 3, 2, (0, 1)),
        (5, 3, 2, (1, 1)),
        (7, 4, 2, (1, 2)),
    ],
)
def test_same_padding_is_tensorflows(size, kernel, stride, expected):
    assert same_padding(size, kernel, stride) == expected


def _np_same_conv(x, w, b, stride):
    """NumPy conv with TF "same" padding: x (H, W, Cin), w (k, k, Cin, Cout) HWIO."""
    k = w.shape[0]
    (t, bo), (le, r) = same_padding(x.shape[0], k, stride), same_padding(x.shape[1], k, stride)
    xp = np.pad(x, ((t, bo), (le, r), (0, 0)))
    oh, ow = -(-x.shape[0] // stride), -(-x.shape[1] // stride)
    out = np.zeros((oh, ow, w.shape[3]))
    for i in range(oh):
        for j in range(ow):
            patch = xp[i * stride : i * stride + k, j * stride : j * stride + k]
            out[i, j] = np.einsum("hwc,hwco->o", patch, w) + b
    return out


def _np_same_deconv(x, w, b, stride):
    """NumPy transposed conv, TF "same": x (H, W, Cin), w (k, k, Cout, Cin) as TF stores it."""
    k, h, wd = w.shape[0], x.shape[0] * stride, x.shape[1] * stride
    full = np.zeros(((x.shape[0] - 1) * stride + k, (x.shape[1] - 1) * stride + k, w.shape[2]))
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            full[i * stride : i * stride + k, j * stride : j * stride + k] += np.einsum(
                "c,hwoc->hwo", x[i, j], w
            )
    t, le = same_padding(h, k, stride)[0], same_padding(wd, k, stride)[0]
    return full[t : t + h, le : le + wd] + b


@pytest.mark.parametrize(("kernel", "size"), [(3, 6), (4, 7), (2, 8), (4, 8)])
def test_same_convs_match_a_numpy_reference_of_tensorflows_same(kernel, size):
    rng = np.random.default_rng(kernel * 10 + size)
    x = rng.standard_normal((size, size, 2))
    w, b = rng.standard_normal((kernel, kernel, 2, 3)), rng.standard_normal(3)
    conv = SameConv2d(2, 3, kernel, 2).double()
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(w.transpose(3, 2, 0, 1)))
        conv.bias.copy_(torch.from_numpy(b))
        got = conv(torch.from_numpy(x.transpose(2, 0, 1))[None])[0].numpy().transpose(1, 2, 0)
    np.testing.assert_allclose(got, _np_same_conv(x, w, b, 2), atol=1e-10)
    deconv = SameConvTranspose2d(2, 3, kernel, 2).double()
    wt = rng.standard_normal((kernel, kernel, 3, 2))  # TF: (H, W, out, in)
    with torch.no_grad():
        deconv.weight.copy_(torch.from_numpy(wt.transpose(3, 2, 0, 1)))
        deconv.bias.copy_(torch.from_numpy(b))
        got = deconv(torch.from_numpy(x.transpose(2, 0, 1))[None])[0].numpy().transpose(1, 2, 0)
    assert got.shape == (2 * size, 2 * size, 3)
    np.testing.assert_allclose(got, _np_same_deconv(x, wt, b, 2), atol=1e-10)


@pytest.mark.parametrize(("backbone", "grid"), [("roy2025", 8), ("dlib", 4), ("dlib_k4", 4)])
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
