"""Tiny VAEs written the way other libraries write them (no vaelens glue), and a tiny dataset.

Each reproduces one library's idiom at 64x64 single-channel input, with a few channels:

- :class:`PythaeStyle`: only ``encoder``/``decoder`` sub-modules returning ModelOutput-like
  objects (an ``OrderedDict`` with attribute access: ``embedding``, ``log_covariance``,
  ``reconstruction``), the input shape in ``model_config.input_dim`` (pythae);
- :class:`DisentStyle`: ``encode`` returns mean and log-variance concatenated, the encoder
  asserts ``z.shape == (x.size(0), 2 * z_size)`` and the decoder ``z.size(1) == z_size``;
  ``decode`` returns logits; ``forward`` is disabled; ``x_shape`` (disent's AutoEncoder);
- :class:`PyTorchVAEStyle`: ``encode`` returns ``[mu, log_var]``, ``decode`` a Tanh image,
  ``forward`` a list (AntixK's PyTorch-VAE, 64x64 by construction);
- :class:`DisentanglingVAEStyle`: ``encoder`` returns ``(mu, logvar)`` unbound from one
  ``(N, L, 2)`` view, both halves flattening with ``x.view(batch_size, -1)`` where
  ``batch_size = x.size(0)`` of the *input*, decoder ends in a sigmoid; ``img_size``
  (YannDubs' disentangling-vae);
- :class:`FlattenVAE`: ``encode``/``decode`` with ``h.view(x.size(0), -1)`` on the input's
  batch size and a wide conv layer (``channels``), the slow case of stacked runs;
- :class:`LadderAE`: a decoder skip kept feature-major (not repeatable) and an assert on its
  batch: stacked runs from ``enc1`` must fall back.
"""

from __future__ import annotations

from collections import OrderedDict
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import nn

SIZE = 64


class ModelOutput(OrderedDict):
    """pythae's ModelOutput: an ordered dict whose keys are also attributes."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _down(ch: int) -> nn.Sequential:
    # 64 -> 8 -> 2: two strided convs keep the nets tiny
    return nn.Sequential(nn.Conv2d(1, ch, 8, stride=8), nn.ReLU(), nn.Conv2d(ch, ch, 4, stride=4))


class PythaeEncoder(nn.Module):
    def __init__(self, latent: int, ch: int = 3) -> None:
        super().__init__()
        self.conv = _down(ch)
        self.embedding = nn.Linear(ch * 4, latent)
        self.log_var = nn.Linear(ch * 4, latent)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        h = self.conv(x).reshape(x.shape[0], -1)  # pythae flattens on the input's batch
        return ModelOutput(embedding=self.embedding(h), log_covariance=self.log_var(h))


class PythaeDecoder(nn.Module):
    def __init__(self, latent: int) -> None:
        super().__init__()
        self.fc = nn.Linear(latent, 16)
        self.up = nn.ConvTranspose2d(1, 1, 16, stride=16)
        self.act = nn.Sigmoid()

    def forward(self, z: torch.Tensor) -> ModelOutput:
        h = self.fc(z).reshape(z.shape[0], 1, 4, 4)
        return ModelOutput(reconstruction=self.act(self.up(h)))


class PythaeStyle(nn.Module):
    def __init__(self, latent: int = 3) -> None:
        super().__init__()
        self.model_config = SimpleNamespace(input_dim=(1, SIZE, SIZE), latent_dim=latent)
        self.encoder = PythaeEncoder(latent)
        self.decoder = PythaeDecoder(latent)


class DisentEncoder(nn.Module):
    def __init__(self, z_size: int) -> None:
        super().__init__()
        self.z_size = z_size
        self.model = nn.Sequential(_down(3), nn.Flatten(), nn.ReLU(), nn.Linear(12, 2 * z_size))

    def forward(self, x: torch.Tensor, chunk: bool = True) -> Any:
        assert x.shape[1:] == (1, SIZE, SIZE)
        z = self.model(x)
        assert z.shape == (x.size(0), 2 * self.z_size)
        return z.split(self.z_size, dim=-1) if chunk else z


class DisentDecoder(nn.Module):
    def __init__(self, z_size: int) -> None:
        super().__init__()
        self.z_size = z_size
        self.model = nn.Sequential(
            nn.Linear(z_size, 16), nn.Unflatten(1, (1, 4, 4)), nn.ConvTranspose2d(1, 1, 16, 16)
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        assert z.ndim == 2 and z.size(1) == self.z_size
        out = self.model(z)
        assert out.shape == (z.size(0), 1, SIZE, SIZE)
        return out


class DisentStyle(nn.Module):
    def __init__(self, z_size: int = 3) -> None:
        super().__init__()
        self._encoder = DisentEncoder(z_size)
        self._decoder = DisentDecoder(z_size)
        self.z_size = z_size

    @property
    def x_shape(self) -> tuple[int, ...]:
        return (1, SIZE, SIZE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("DisentStyle.forward(...) has been disabled")

    def encode(self, x: torch.Tensor, chunk: bool = False) -> Any:
        return self._encoder(x, chunk=chunk)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self._decoder(z)  # logits: no activation


class PyTorchVAEStyle(nn.Module):
    def __init__(self, in_channels: int = 1, latent_dim: int = 3) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = nn.Sequential(
            nn.Sequential(nn.Conv2d(in_channels, 4, 8, stride=8), nn.LeakyReLU()),
            nn.Sequential(nn.Conv2d(4, 4, 4, stride=4), nn.LeakyReLU()),
        )
        self.fc_mu = nn.Linear(16, latent_dim)
        self.fc_var = nn.Linear(16, latent_dim)
        self.decoder_input = nn.Linear(latent_dim, 16)
        self.decoder = nn.Sequential(nn.ConvTranspose2d(1, 1, 16, stride=16))
        self.final_layer = nn.Tanh()

    def encode(self, input: torch.Tensor) -> list[torch.Tensor]:
        result = torch.flatten(self.encoder(input), start_dim=1)
        return [self.fc_mu(result), self.fc_var(result)]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        result = self.decoder_input(z).view(-1, 1, 4, 4)
        return self.final_layer(self.decoder(result))

    def forward(self, input: torch.Tensor) -> list[torch.Tensor]:
        mu, log_var = self.encode(input)
        return [self.decode(mu), input, mu, log_var]


class BurgessEncoder(nn.Module):
    def __init__(self, img_size: tuple[int, int, int], latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.conv1 = nn.Conv2d(img_size[0], 3, 8, stride=8)
        self.conv2 = nn.Conv2d(3, 3, 4, stride=4)
        self.lin1 = nn.Linear(12, 8)
        self.mu_logvar_gen = nn.Linear(8, 2 * latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch_size = x.size(0)
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        x = x.view((batch_size, -1))
        x = torch.relu(self.lin1(x))
        mu, logvar = self.mu_logvar_gen(x).view(-1, self.latent_dim, 2).unbind(-1)
        return mu, logvar


class BurgessDecoder(nn.Module):
    def __init__(self, img_size: tuple[int, int, int], latent_dim: int) -> None:
        super().__init__()
        self.lin1 = nn.Linear(latent_dim, 16)
        self.convT = nn.ConvTranspose2d(1, img_size[0], 16, stride=16)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        batch_size = z.size(0)
        x = torch.relu(self.lin1(z)).view(batch_size, 1, 4, 4)
        return torch.sigmoid(self.convT(x))


class DisentanglingVAEStyle(nn.Module):
    def __init__(self, latent_dim: int = 3) -> None:
        super().__init__()
        self.img_size = (1, SIZE, SIZE)
        self.latent_dim = latent_dim
        self.encoder = BurgessEncoder(self.img_size, latent_dim)
        self.decoder = BurgessDecoder(self.img_size, latent_dim)

    def forward(self, x: torch.Tensor) -> Any:
        mu, logvar = self.encoder(x)
        return self.decoder(mu), (mu, logvar), mu


class FlattenVAE(nn.Module):
    """``x.view(x.size(0), -1)`` on the input's batch size, in encode and decode."""

    def __init__(self, channels: int = 4, latent: int = 3, size: int = SIZE) -> None:
        super().__init__()
        self.image_shape = (1, size, size)
        g = size // 8
        self.conv = nn.Conv2d(1, channels, 8, stride=8)
        self.act = nn.ReLU()
        self.mu = nn.Linear(channels * g * g, latent)
        self.fc = nn.Linear(latent, channels * g * g)
        self.deconv = nn.ConvTranspose2d(channels, 1, 8, stride=8)
        self._g, self._c = g, channels

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.conv(x))
        return self.mu(h.view(x.size(0), -1))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        h = self.act(self.fc(z))
        return torch.sigmoid(self.deconv(h.view(z.size(0), self._c, self._g, self._g)))


class Transpose(nn.Module):
    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h.T


class LadderAE(nn.Module):
    """An encoder skip kept feature-major ``(H, N)``: not repeatable, so stacked runs from
    ``enc1`` fail (an assert on its batch) and must fall back."""

    image_shape = (1, 4, 4)

    def __init__(self, h: int = 5, latent: int = 2) -> None:
        super().__init__()
        self.enc0 = nn.Linear(16, h)
        self.side = Transpose()
        self.enc1 = nn.Linear(h, h)
        self.mu = nn.Linear(h, latent)
        self.dec = nn.Linear(latent, 16)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.tanh(self.enc0(x.flatten(1)))
        t = self.side(a)
        h = self.enc1(a)
        assert t.shape[1] == h.shape[0], "skip batch"
        return self.mu(torch.tanh(h + t.T))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.dec(z)).view(-1, 1, 4, 4)


class Blocks:
    """Ground-truth dataset of ``size x size`` images: left/right half intensities (+ a nuisance)."""

    name = "blocks"
    factor_names = ("nuisance", "left", "right")
    factor_sizes = (2, 4, 4)

    def __init__(self, size: int = SIZE) -> None:
        self.size = size
        self.image_shape = (1, size, size)
        self.factor_values = [np.arange(2.0), np.linspace(0.2, 0.8, 4), np.linspace(0.2, 0.8, 4)]

    def images(self, factors: np.ndarray) -> np.ndarray:
        f = np.asarray(factors)
        s, half = self.size, self.size // 2
        out = np.zeros((f.shape[0], 1, s, s), dtype=np.float32)
        out[:, 0, :, :half] = self.factor_values[1][f[:, 1]][:, None, None]
        out[:, 0, :, half:] = self.factor_values[2][f[:, 2]][:, None, None]
        return out

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return np.stack([rng.integers(0, s, n) for s in self.factor_sizes], axis=1)
