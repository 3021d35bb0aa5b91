"""Tiny model and dataset shared by the trainer tests (importable as ``test_train_fixtures``).

``TinyVAE`` is a two-conv, two-linear-layer VAE on 1x16x16 images whose reparameterisation noise comes
from the global torch RNG (so resuming must restore it), with an optional discriminator
trained through ``aux_loss`` (the FactorVAE pattern) and an optional NaN at a given step.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vaelens.data.base import ArrayDataset, check_dataset
from vaelens.models.base import Posterior, VAEBase

FACTOR_SIZES = (4, 4, 4)


def tiny_dataset() -> ArrayDataset:
    """64 binary 1x16x16 images: a square whose size, x and y are the three factors."""
    n = int(np.prod(FACTOR_SIZES))
    arr = np.zeros((n, 16, 16, 1), dtype=np.uint8)
    for i in range(n):
        s, x, y = np.unravel_index(i, FACTOR_SIZES)
        side = 3 + int(s)
        arr[i, 2 + 2 * y : 2 + 2 * y + side, 2 + 2 * x : 2 + 2 * x + side, 0] = 1
    values = [np.arange(k, dtype=float) for k in FACTOR_SIZES]
    return ArrayDataset("tiny", arr, ("size", "x", "y"), FACTOR_SIZES, values, pixel_max=1)


class TinyVAE(VAEBase):
    """Conv + MLP VAE ``16x16 -> 2 convs 4x8x8 -> hidden -> 2 * latent``; ``aux=True`` adds a
    discriminator on z."""

    variant = "tiny"

    def __init__(
        self,
        in_channels: int = 1,
        latent_dim: int = 4,
        hidden: int = 32,
        aux: bool = False,
        nan_at: int | None = None,
    ) -> None:
        super().__init__()
        self.in_channels, self.latent_dim, self.hidden = in_channels, latent_dim, hidden
        self.use_aux, self.nan_at = aux, nan_at
        self.image_shape = (in_channels, 16, 16)
        d = in_channels * 256
        # a conv layer: 4-D weights, so channels-last layouts are exercised too
        self.enc = nn.Sequential(
            nn.Conv2d(in_channels, 4, 4, 2, 1),
            nn.ReLU(),
            nn.Conv2d(4, 4, 3, 1, 1),  # C_in > 1: its channels-last strides differ
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(4 * 8 * 8, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 2 * latent_dim),
        )
        self.dec = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, d))
        self.disc = (
            nn.Sequential(nn.Linear(latent_dim, 8), nn.ReLU(), nn.Linear(8, 2)) if aux else None
        )

    def encode(self, x: torch.Tensor) -> Posterior:
        mu, logvar = self.enc(x).chunk(2, dim=1)
        return Posterior(mean=mu, logvar=logvar)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.dec(z).view(-1, *self.image_shape)

    def training_losses(self, x: torch.Tensor, *, step: int = 0) -> dict[str, torch.Tensor]:
        post = self.encode(x)
        z = post.sample()  # global torch RNG
        rec = F.binary_cross_entropy_with_logits(self.decode(z), x, reduction="sum") / x.shape[0]
        kl = 0.5 * (post.mean.pow(2) + post.logvar.exp() - 1 - post.logvar).sum(1).mean()
        if self.nan_at is not None and step == self.nan_at:
            kl = kl * float("nan")
        out = {"loss": rec + kl, "rec": rec.detach(), "kl": kl.detach()}
        if self.disc is not None:
            zd = z.detach()
            perm = torch.stack([zd[torch.randperm(zd.shape[0]), j] for j in range(zd.shape[1])], 1)
            logits = self.disc(torch.cat([zd, perm]))
            target = torch.cat([torch.zeros(len(zd)), torch.ones(len(zd))]).long()
            out["aux_loss"] = F.cross_entropy(logits, target)
            out["disc"] = out["aux_loss"].detach()
        return out

    def aux_module(self) -> nn.Module | None:
        return self.disc

    def aux_optimizer_config(self) -> dict[str, Any]:
        return {"lr": 5e-4, "betas": (0.5, 0.9)}

    def hparams(self) -> dict[str, Any]:
        return {
            "in_channels": self.in_channels,
            "latent_dim": self.latent_dim,
            "hidden": self.hidden,
            "aux": self.use_aux,
            "nan_at": self.nan_at,
        }


def test_tiny_dataset_meets_the_contract() -> None:
    ds = check_dataset(tiny_dataset())
    imgs = ds.images(np.array([[0, 0, 0], [3, 3, 3]]))
    assert imgs.shape == (2, 1, 16, 16) and imgs.dtype == np.float32
    assert imgs[0].sum() == 9 and imgs[1].sum() == 36  # side 3 and side 6 squares


def test_tiny_vae_losses_follow_the_training_contract() -> None:
    torch.manual_seed(0)
    model = TinyVAE(aux=True)
    x = torch.from_numpy(tiny_dataset().images(np.array([[1, 2, 3], [0, 1, 2], [2, 2, 2]])))
    out = model.training_losses(x)
    assert set(out) == {"loss", "rec", "kl", "aux_loss", "disc"}
    out["aux_loss"].backward()
    # the discriminator's loss reaches only the discriminator
    assert all(p.grad is None for p in model.main_parameters())
    assert all(p.grad is not None for p in model.disc.parameters())


#: the tiny test model is named by import path, so the tests that train it trust that name
MODEL = "test_train_fixtures:TinyVAE"
TRUST = [MODEL]


def trusted_train(config: Any, **kwargs: Any) -> Any:
    """:func:`vaelens.train.train` trusting :data:`MODEL`."""
    from vaelens.train import train

    return train(config, trust_code=TRUST, **kwargs)


def trusted_load_run(run_dir: Any, **kwargs: Any) -> Any:
    """:func:`vaelens.train.load_run` trusting :data:`MODEL`."""
    from vaelens.train import load_run

    return load_run(run_dir, trust_code=TRUST, **kwargs)
