"""Convolutional encoders and decoders for 64x64 images with 1 or 3 channels.

Three backbones, chosen by name:

``"roy2025"`` (the 3-layer network of Roy (2025))
    Encoder ``conv_0, conv_1, conv_2`` (Conv2d k4 s2 p1 + ReLU; 32, 64, 128 channels;
    64 -> 32 -> 16 -> 8), ``flatten`` (128 * 8 * 8 = 8192 features), heads ``mu`` and
    ``logvar`` (Linear 8192 -> latent_dim). Decoder ``fc`` (Linear latent_dim -> 8192 + ReLU),
    ``unflatten`` (128 x 8 x 8), ``conv_0`` (ConvTranspose 128 -> 64 + ReLU), ``conv_1``
    (64 -> 32 + ReLU), ``conv_2`` (32 -> C, logits, no activation): 8 -> 16 -> 32 -> 64.

``"dlib"`` (disentanglement_lib's ``conv_encoder`` / ``deconv_decoder``, exactly)
    Encoder ``conv_0..conv_3`` (TF's ``e1..e4``: 32, 32, 64, 64 channels, kernels 4, 4, 2, 2,
    stride 2, TensorFlow ``"same"`` padding, ReLU; 64 -> 32 -> 16 -> 8 -> 4), ``flatten``
    (64 * 4 * 4 = 1024), ``fc`` (``e5``: Linear 1024 -> 256 + ReLU), heads ``mu`` and
    ``logvar`` (``means``, ``log_var``). Decoder ``fc_0`` (``dense``: latent -> 256 + ReLU),
    ``fc_1`` (``dense_1``: 256 -> 1024 + ReLU), ``unflatten`` (64 x 4 x 4),
    ``conv_0..conv_3`` (``conv2d_transpose``, ``_1``, ``_2``, ``_3``: 64, 32, 32, C channels,
    k4 s2, ``"same"``; ReLU on all but the last). The layer list was checked against
    ``disentanglement_lib/methods/shared/architectures.py``. TF ``"same"`` padding is
    reproduced exactly (:class:`SameConv2d`, :class:`SameConvTranspose2d`: explicit
    asymmetric padding / cropping where ``k - s`` is odd; for these layers it happens to be
    symmetric: 1 for k4 s2, 0 for k2 s2). TF flattens NHWC and this network flattens NCHW:
    weights imported from TensorFlow are permuted accordingly (:mod:`vaelens.zoo`).

``"dlib_k4"`` (the ``"dlib"`` of vaelens before it matched disentanglement_lib)
    As ``"dlib"`` but kernel 4 in all four encoder convs (PyTorch ``padding=1``). Kept so that
    run directories trained with it keep loading: a run written before the change that says
    ``"backbone": "dlib"`` has k4 weights in ``conv_2``/``conv_3``; set its config's backbone
    to ``"dlib_k4"`` to open it.

Module names are part of the public interface: the lens addresses activations by
``named_modules()`` paths such as ``"encoder.conv_0"``, ``"encoder.mu"`` or
``"decoder.conv_0"``. ``width`` scales every channel and hidden-unit count (rounded, at
least 1), e.g. ``width=0.125`` for tiny test networks.

The spatial variants (:class:`SpatialEncoder`, :class:`SpatialDecoder`) serve VQ-VAE: the
same conv trunk ends in a 1x1 conv ``pre_quant`` to ``code_dim`` channels on the 8x8 (roy2025)
or 4x4 (dlib, dlib_k4) grid, and the decoder starts with ``post_quant`` (3x3 conv + ReLU) back to the
trunk's channel count.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from vaelens.errors import ConfigError

__all__ = [
    "BACKBONES",
    "IMAGE_SIZE",
    "LIKELIHOODS",
    "BackboneSpec",
    "Decoder",
    "Encoder",
    "SameConv2d",
    "SameConvTranspose2d",
    "SpatialDecoder",
    "SpatialEncoder",
    "check_choice",
    "check_images",
    "check_latents",
    "check_nonnegative",
    "check_nonnegative_int",
    "check_positive",
    "check_positive_int",
    "get_backbone",
    "resolve_backbone",
    "same_padding",
]

#: the only image size the backbones support
IMAGE_SIZE = 64
#: reconstruction likelihoods: Bernoulli (BCE with logits) or Gaussian (sum of squared errors)
LIKELIHOODS = ("bernoulli", "gaussian")


@dataclass(frozen=True)
class BackboneSpec:
    """Layer sizes of one backbone at ``width=1``.

    ``enc_channels``: output channels of each stride-2 conv; ``enc_hidden``: hidden Linear
    layers after flattening; ``dec_hidden``: hidden Linear layers before unflattening (the
    last one is replaced by the flattened feature size); ``dec_channels``: output channels of
    each transposed conv except the last (which outputs the image channels).
    ``enc_kernels``: kernel size of each encoder conv (default 4 for all); every transposed
    conv is k4 s2. ``padding``: ``"torch"`` (``padding=1``, as Roy (2025)) or ``"same"``
    (TensorFlow's ``"same"``, as disentanglement_lib).
    """

    name: str
    enc_channels: tuple[int, ...]
    enc_hidden: tuple[int, ...]
    dec_hidden: tuple[int, ...]
    dec_channels: tuple[int, ...]
    enc_kernels: tuple[int, ...] = ()
    padding: str = "torch"

    @property
    def kernels(self) -> tuple[int, ...]:
        """The encoder convs' kernel sizes (``enc_kernels``, or 4 for every conv)."""
        return self.enc_kernels or (4,) * len(self.enc_channels)

    @property
    def grid(self) -> int:
        """Side of the feature map after the conv trunk (64 halved once per conv)."""
        return IMAGE_SIZE // (2 ** len(self.enc_channels))


BACKBONES: dict[str, BackboneSpec] = {
    "roy2025": BackboneSpec("roy2025", (32, 64, 128), (), (), (64, 32)),
    "dlib": BackboneSpec(
        "dlib", (32, 32, 64, 64), (256,), (256,), (64, 32, 32), (4, 4, 2, 2), "same"
    ),
    "dlib_k4": BackboneSpec("dlib_k4", (32, 32, 64, 64), (256,), (256,), (64, 32, 32)),
}

#: old backbone names, still read so that run directories written under them keep loading:
#: ``"seeds"`` was the name of ``"roy2025"`` before it was renamed
OLD_BACKBONE_NAMES: dict[str, str] = {"seeds": "roy2025"}


# --------------------------------------------------------------------------- validation


def check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise :class:`ConfigError`."""
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(f"{name}: expected one of {sorted(choices)}, got {value!r}")
    return value


def check_positive_int(name: str, value: Any) -> int:
    """Return ``value`` as an ``int`` if it is a positive integer, else raise ConfigError."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(value)
        or value != int(value)
        or int(value) < 1
    ):
        raise ConfigError(f"{name}: expected a positive integer, got {value!r}")
    return int(value)


def check_nonnegative_int(name: str, value: Any) -> int:
    """Return ``value`` as an ``int`` if it is an integer >= 0, else raise ConfigError."""
    if not isinstance(value, bool) and isinstance(value, numbers.Real) and value == 0:
        return 0
    try:
        return check_positive_int(name, value)
    except ConfigError:
        raise ConfigError(f"{name}: expected an integer >= 0, got {value!r}") from None


def check_positive(name: str, value: Any) -> float:
    """Return ``value`` as a ``float`` if it is finite and > 0, else raise ConfigError."""
    v = _as_float(name, value)
    if v <= 0:
        raise ConfigError(f"{name}: expected a number > 0, got {value!r}")
    return v


def check_nonnegative(name: str, value: Any) -> float:
    """Return ``value`` as a ``float`` if it is finite and >= 0, else raise ConfigError."""
    v = _as_float(name, value)
    if v < 0:
        raise ConfigError(f"{name}: expected a number >= 0, got {value!r}")
    return v


def _as_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ConfigError(f"{name}: expected a finite number, got {value!r}")
    return float(value)


def check_images(x: Any, image_shape: tuple[int, int, int], name: str = "x") -> torch.Tensor:
    """Check that ``x`` is a floating tensor of shape ``(N, *image_shape)`` with ``N >= 1``."""
    if not isinstance(x, torch.Tensor):
        raise ConfigError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(image_shape) or x.shape[0] < 1:
        raise ConfigError(
            f"{name}: expected images of shape (N, {', '.join(map(str, image_shape))}), "
            f"got {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise ConfigError(f"{name}: expected a floating-point tensor, got dtype {x.dtype}")
    return x


def check_latents(z: Any, latent_dim: int, name: str = "z") -> torch.Tensor:
    """Check that ``z`` is a floating tensor of shape ``(N, latent_dim)``."""
    if not isinstance(z, torch.Tensor):
        raise ConfigError(f"{name}: expected a torch.Tensor, got {type(z).__name__}")
    if z.ndim != 2 or z.shape[1] != latent_dim:
        raise ConfigError(f"{name}: expected shape (N, {latent_dim}), got {tuple(z.shape)}")
    if not z.is_floating_point():
        raise ConfigError(f"{name}: expected a floating-point tensor, got dtype {z.dtype}")
    return z


def resolve_backbone(name: Any) -> str:
    """The current name of backbone ``name`` (one of :data:`BACKBONES` or an old name)."""
    if isinstance(name, str):
        name = OLD_BACKBONE_NAMES.get(name, name)
    return check_choice("backbone", name, tuple(BACKBONES))


def get_backbone(name: str) -> BackboneSpec:
    """The :class:`BackboneSpec` called ``name`` (one of :data:`BACKBONES`, or an old name)."""
    return BACKBONES[resolve_backbone(name)]


def _scaled(c: int, width: float) -> int:
    return max(1, round(c * width))


def _check_common(in_channels: int, width: float, image_size: int) -> tuple[int, float]:
    in_channels = check_positive_int("in_channels", in_channels)
    width = check_positive("width", width)
    if check_positive_int("image_size", image_size) != IMAGE_SIZE:
        raise ConfigError(
            f"image_size: the backbones take {IMAGE_SIZE}x{IMAGE_SIZE} images only, "
            f"got {image_size!r} (resize the dataset to {IMAGE_SIZE})"
        )
    return in_channels, width


# --------------------------------------------------------------------------- TF "same"


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's ``"same"`` padding ``(before, after)`` of one spatial dimension.

    The output has ``ceil(size / stride)`` positions; the total padding is
    ``max((out - 1) * stride + kernel - size, 0)``, i.e. ``max(kernel - stride, 0)`` when
    ``size`` divides by ``stride``; the odd one goes after (bottom / right).
    """
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow's ``"same"`` padding (asymmetric where TF's is).

    Same parameters (``weight``, ``bias``) as ``nn.Conv2d``; the padding is computed from the
    input size at each call and applied with ``F.pad`` (zeros) before an unpadded conv.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        top, bottom = same_padding(x.shape[-2], kh, sh)
        left, right = same_padding(x.shape[-1], kw, sw)
        if top or bottom or left or right:
            x = F.pad(x, (left, right, top, bottom))
        return super().forward(x)


class SameConvTranspose2d(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` with TensorFlow's ``"same"`` padding: output ``size * stride``.

    TF's ``conv2d_transpose(padding="same")`` is the adjoint of a ``"same"`` conv from the
    ``size * stride`` output back to the input, so the full transposed conv (length
    ``(size - 1) * stride + kernel``) is cropped by that conv's ``(before, after)`` padding.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        h, w = x.shape[-2] * sh, x.shape[-1] * sw
        top, _ = same_padding(h, kh, sh)
        left, _ = same_padding(w, kw, sw)
        y = super().forward(x)
        return y[..., top : top + h, left : left + w]


def _conv(spec: BackboneSpec, c_in: int, c_out: int, kernel: int) -> nn.Conv2d:
    if spec.padding == "same":
        return SameConv2d(c_in, c_out, kernel, 2)
    return nn.Conv2d(c_in, c_out, kernel, 2, (kernel - 2) // 2)


def _deconv(spec: BackboneSpec, c_in: int, c_out: int) -> nn.ConvTranspose2d:
    if spec.padding == "same":
        return SameConvTranspose2d(c_in, c_out, 4, 2)
    return nn.ConvTranspose2d(c_in, c_out, 4, 2, 1)


# --------------------------------------------------------------------------- modules


class _Trunk(nn.Module):
    """The encoder's conv stack ``conv_0..conv_{k-1}`` (stride-2 conv + ReLU)."""

    def _add_convs(self, spec: BackboneSpec, in_channels: int, width: float) -> int:
        c_in = in_channels
        for i, (c, k) in enumerate(zip(spec.enc_channels, spec.kernels, strict=True)):
            c_out = _scaled(c, width)
            self.add_module(f"conv_{i}", nn.Sequential(_conv(spec, c_in, c_out, k), nn.ReLU()))
            c_in = c_out
        self.n_convs = len(spec.enc_channels)
        return c_in

    def _trunk(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(self.n_convs):
            x = getattr(self, f"conv_{i}")(x)
        return x


class Encoder(_Trunk):
    """Gaussian encoder: ``x (N, C, 64, 64) -> (mu, logvar)``, each ``(N, latent_dim)``."""

    def __init__(
        self,
        in_channels: int = 1,
        latent_dim: int = 10,
        *,
        backbone: str = "roy2025",
        width: float = 1.0,
        image_size: int = IMAGE_SIZE,
    ) -> None:
        super().__init__()
        in_channels, width = _check_common(in_channels, width, image_size)
        latent_dim = check_positive_int("latent_dim", latent_dim)
        spec = get_backbone(backbone)
        c = self._add_convs(spec, in_channels, width)
        self.flatten = nn.Flatten(1)
        n = c * spec.grid * spec.grid
        k = len(spec.enc_hidden)
        self._hidden = ["fc"] if k == 1 else [f"fc_{i}" for i in range(k)]
        for name, h in zip(self._hidden, spec.enc_hidden, strict=True):
            h = _scaled(h, width)
            self.add_module(name, nn.Sequential(nn.Linear(n, h), nn.ReLU()))
            n = h
        self.mu = nn.Linear(n, latent_dim)
        self.logvar = nn.Linear(n, latent_dim)
        self.features = n

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.flatten(self._trunk(x))
        for name in self._hidden:
            h = getattr(self, name)(h)
        return self.mu(h), self.logvar(h)


class Decoder(nn.Module):
    """Decoder: ``z (N, latent_dim) -> (N, C, 64, 64)`` logits (or Gaussian means)."""

    def __init__(
        self,
        out_channels: int = 1,
        latent_dim: int = 10,
        *,
        backbone: str = "roy2025",
        width: float = 1.0,
        image_size: int = IMAGE_SIZE,
    ) -> None:
        super().__init__()
        out_channels, width = _check_common(out_channels, width, image_size)
        latent_dim = check_positive_int("latent_dim", latent_dim)
        spec = get_backbone(backbone)
        c0 = _scaled(spec.enc_channels[-1], width)
        sizes = [_scaled(h, width) for h in spec.dec_hidden] + [c0 * spec.grid * spec.grid]
        names = ["fc"] if len(sizes) == 1 else [f"fc_{i}" for i in range(len(sizes))]
        n = latent_dim
        for name, h in zip(names, sizes, strict=True):
            self.add_module(name, nn.Sequential(nn.Linear(n, h), nn.ReLU()))
            n = h
        self._hidden = names
        self.unflatten = nn.Unflatten(1, (c0, spec.grid, spec.grid))
        self.n_convs = _add_deconvs(self, spec, c0, out_channels, width)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = z
        for name in self._hidden:
            h = getattr(self, name)(h)
        h = self.unflatten(h)
        for i in range(self.n_convs):
            h = getattr(self, f"conv_{i}")(h)
        return h


def _add_deconvs(
    module: nn.Module, spec: BackboneSpec, c_in: int, out_channels: int, width: float
) -> int:
    chans = [_scaled(c, width) for c in spec.dec_channels]
    for i, c_out in enumerate(chans):
        module.add_module(f"conv_{i}", nn.Sequential(_deconv(spec, c_in, c_out), nn.ReLU()))
        c_in = c_out
    # last layer: logits, no activation (a bare ConvTranspose2d, hooked as decoder.conv_<k>)
    module.add_module(f"conv_{len(chans)}", _deconv(spec, c_in, out_channels))
    return len(chans) + 1


class SpatialEncoder(_Trunk):
    """VQ-VAE encoder: ``x (N, C, 64, 64) -> z_e (N, code_dim, g, g)``, ``g`` = 8 or 4."""

    def __init__(
        self,
        in_channels: int = 1,
        code_dim: int = 64,
        *,
        backbone: str = "roy2025",
        width: float = 1.0,
        image_size: int = IMAGE_SIZE,
    ) -> None:
        super().__init__()
        in_channels, width = _check_common(in_channels, width, image_size)
        code_dim = check_positive_int("code_dim", code_dim)
        spec = get_backbone(backbone)
        c = self._add_convs(spec, in_channels, width)
        self.pre_quant = nn.Conv2d(c, code_dim, 1)
        self.grid = spec.grid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pre_quant(self._trunk(x))


class SpatialDecoder(nn.Module):
    """VQ-VAE decoder: ``z_q (N, code_dim, g, g) -> (N, C, 64, 64)`` logits (or means)."""

    def __init__(
        self,
        out_channels: int = 1,
        code_dim: int = 64,
        *,
        backbone: str = "roy2025",
        width: float = 1.0,
        image_size: int = IMAGE_SIZE,
    ) -> None:
        super().__init__()
        out_channels, width = _check_common(out_channels, width, image_size)
        code_dim = check_positive_int("code_dim", code_dim)
        spec = get_backbone(backbone)
        c0 = _scaled(spec.enc_channels[-1], width)
        self.post_quant = nn.Sequential(nn.Conv2d(code_dim, c0, 3, 1, 1), nn.ReLU())
        self.n_convs = _add_deconvs(self, spec, c0, out_channels, width)
        self.grid = spec.grid

    def forward(self, z_q: torch.Tensor) -> torch.Tensor:
        h = self.post_quant(z_q)
        for i in range(self.n_convs):
            h = getattr(self, f"conv_{i}")(h)
        return h
