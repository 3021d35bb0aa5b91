"""Tiny hand-built models for the lens tests (plain nn.Modules with encode/decode, no vaelens base).

Imported by the other ``test_lens_*`` files; the tests here check the models themselves.
"""

from __future__ import annotations

import torch
from torch import nn


class ConvVAE(nn.Module):
    """The roy2025 architecture, shrunk: conv k4 s2 encoder, linear heads, transposed-conv decoder."""

    def __init__(
        self,
        c: int = 1,
        latent: int = 3,
        ch: tuple[int, ...] = (4, 6, 8),
        size: int = 16,
        gain: float = 2.0,
    ):
        super().__init__()
        f = size // 8
        self.encoder = nn.Sequential(
            nn.Conv2d(c, ch[0], 4, 2, 1),
            nn.ReLU(),
            nn.Conv2d(ch[0], ch[1], 4, 2, 1),
            nn.ReLU(),
            nn.Conv2d(ch[1], ch[2], 4, 2, 1),
            nn.ReLU(),
            nn.Flatten(),
        )
        self.mu = nn.Linear(ch[2] * f * f, latent)
        self.logvar = nn.Linear(ch[2] * f * f, latent)
        self.fc = nn.Linear(latent, ch[2] * f * f)
        self.decoder = nn.Sequential(
            nn.ReLU(),
            nn.Unflatten(1, (ch[2], f, f)),
            nn.ConvTranspose2d(ch[2], ch[1], 4, 2, 1),
            nn.ReLU(),
            nn.ConvTranspose2d(ch[1], ch[0], 4, 2, 1),
            nn.ReLU(),
            nn.ConvTranspose2d(ch[0], c, 4, 2, 1),
        )
        # never called by encode/decode: must not become a hook point
        self.discriminator = nn.Sequential(nn.Linear(latent, 4), nn.LeakyReLU(0.2))
        with torch.no_grad():  # larger weights than PyTorch's default: visible effects at init
            for p in self.parameters():
                p.mul_(gain)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return self.mu(h), self.logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.fc(z))

    def output_mean(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits)


class LinearAE(nn.Module):
    """A purely linear autoencoder (two hidden layers each side): every effect is additive."""

    def __init__(self, d: int = 6, h: int = 5, latent: int = 3):
        super().__init__()
        self.enc1 = nn.Linear(d, h)
        self.enc2 = nn.Linear(h, h)
        self.head = nn.Linear(h, latent)
        self.dec1 = nn.Linear(latent, h)
        self.dec2 = nn.Linear(h, d)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.enc2(self.enc1(x)))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.dec2(self.dec1(z))


class Posterior:
    def __init__(self, mean: torch.Tensor, codes: torch.Tensor | None = None):
        self.mean = mean
        self.codes = codes


class SkipAE(nn.Module):
    """Decoder with a skip connection from before ``dec1`` to after it (breaks stacked suffixes)."""

    def __init__(self, d: int = 6, h: int = 4, latent: int = 2):
        super().__init__()
        self.enc = nn.Linear(d, latent)
        self.dec0 = nn.Linear(latent, h)
        self.dec1 = nn.Linear(h, h)
        self.act = nn.Tanh()  # reused: fires twice in decode
        self.out = nn.Linear(h, d)

    def encode(self, x: torch.Tensor) -> Posterior:
        return Posterior(self.enc(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        h0 = self.act(self.dec0(z))
        h1 = self.act(self.dec1(h0))
        return self.out(h1 + h0)


class HalfCircuit(nn.Module):
    """Channel 0 of ``feat`` reads only the left half of the image, channel 1 only the right."""

    def __init__(self, size: int = 8):
        super().__init__()
        self.feat = nn.Conv2d(1, 2, size, bias=False)
        with torch.no_grad():
            w = torch.zeros(2, 1, size, size)
            w[0, 0, :, : size // 2] = 1.0
            w[1, 0, :, size // 2 :] = 1.0
            self.feat.weight.copy_(w)
        self.flat = nn.Flatten()
        self.readout = nn.Linear(2, 2)
        self.up = nn.Linear(2, size * size)
        self.size = size

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(self.flat(torch.relu(self.feat(x))))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.up(z).reshape(-1, 1, self.size, self.size)


class TinyVQ(nn.Module):
    """A VQ-VAE shaped like the models engineer's: encode -> Posterior(mean=z_e flat, codes)."""

    def __init__(self, codes: int = 6, dim: int = 2, size: int = 8):
        super().__init__()
        self.conv = nn.Conv2d(1, dim, 4, 4)
        self.codebook = nn.Embedding(codes, dim)
        with torch.no_grad():
            self.codebook.weight.copy_(torch.randn(codes, dim) * 3.0)
        self.deconv = nn.ConvTranspose2d(dim, 1, 4, 4)
        self.dim = dim
        self.grid = size // 4

    def _quantise(self, ze: torch.Tensor) -> torch.Tensor:  # (N, D, H, W) -> codes (N, H, W)
        flat = ze.permute(0, 2, 3, 1).reshape(-1, self.dim)
        idx = torch.cdist(flat, self.codebook.weight).argmin(1)
        return idx.reshape(ze.shape[0], self.grid, self.grid)

    def encode(self, x: torch.Tensor) -> Posterior:
        ze = self.conv(x)
        return Posterior(ze.flatten(1), self._quantise(ze))

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        zq = self.codebook(codes).permute(0, 3, 1, 2)
        return self.deconv(zq)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        ze = z.reshape(-1, self.dim, self.grid, self.grid)
        return self.decode_codes(self._quantise(ze))


def test_tiny_models_reconstruct_their_input_shape() -> None:
    torch.manual_seed(0)
    x = torch.rand(3, 1, 16, 16)
    m = ConvVAE()
    assert m.decode(m.encode(x)[0]).shape == x.shape
    v = TinyVQ()
    enc = v.encode(x[:, :, :8, :8])
    assert enc.codes.shape == (3, 2, 2)
    assert torch.equal(v.decode(enc.mean), v.decode_codes(enc.codes))
