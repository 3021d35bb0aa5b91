"""FactorVAE (Kim & Mnih 2018): a discriminator estimates the total correlation of q(z).

VAE objective (minimised by the main optimiser)::

    loss = rec + KL + gamma * mean_n [D(z_n)_real - D(z_n)_perm]

where ``D`` outputs two logits (index 0: "a sample of q(z)", index 1: "a sample of
prod_j q(z_j)"), so the logit difference estimates ``log q(z) / prod_j q(z_j)`` and its mean the
total correlation. Discriminator objective (minimised by the aux optimiser)::

    aux_loss = 0.5 * [CE(D(sg[z]), real) + CE(D(permute_dims(sg[z'])), perm)]

The batch is split in two halves: ``z`` (first half) are the real samples and ``z'`` (second
half) is permuted, as a second independent batch would be; the VAE loss uses the whole batch.
``sg`` (detach) keeps ``aux_loss`` from reaching the encoder. Following the training contract
in :mod:`vaelens.models.base` (both backwards before either optimiser steps, the
discriminator's grads cleared between them) no tensor is modified in place.

Defaults: gamma 40 (Roy (2025)), D = MLP with 6 hidden layers of 1000 units and
LeakyReLU(0.2), Adam lr 1e-4 and betas (0.5, 0.9) for D (Kim & Mnih). Roy (2025) trained D
with lr 5e-5: ``ROY2025_PRESET["factor_vae"]["disc_lr"]`` in :mod:`vaelens.models.registry`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vaelens.errors import ConfigError
from vaelens.models.backbones import (
    IMAGE_SIZE,
    check_nonnegative,
    check_positive,
    check_positive_int,
)
from vaelens.models.vae import GaussianVAE

__all__ = ["Discriminator", "FactorVAE", "permute_dims"]


def permute_dims(z: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Shuffle each column of ``z (N, D)`` independently across the batch.

    ``out[n, j] = z[pi_j(n), j]`` with independent uniform permutations ``pi_j``: each
    column keeps its marginal (the same multiset of values) while the dependence between
    columns is broken, giving samples of ``prod_j q(z_j)``. Not in place.
    """
    if z.ndim != 2:
        raise ConfigError(f"z: expected shape (N, D), got {tuple(z.shape)}")
    keys = torch.rand(z.shape, generator=generator, device=z.device)
    perm = torch.argsort(keys, dim=0)
    return torch.gather(z, 0, perm)


class Discriminator(nn.Module):
    """MLP ``latent_dim -> hidden x n_layers (LeakyReLU 0.2) -> 2 logits`` (real, permuted)."""

    def __init__(self, latent_dim: int, hidden: int = 1000, n_layers: int = 6) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        n = check_positive_int("latent_dim", latent_dim)
        for _ in range(check_positive_int("disc_layers", n_layers)):
            layers += [nn.Linear(n, check_positive_int("disc_hidden", hidden)), nn.LeakyReLU(0.2)]
            n = hidden
        layers.append(nn.Linear(n, 2))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class FactorVAE(GaussianVAE):
    """FactorVAE with its discriminator as the aux module.

    Args (besides :class:`~vaelens.models.vae.GaussianVAE`'s):
        gamma: weight of the total-correlation estimate (40 in Roy (2025)).
        disc_hidden: units per hidden layer of D (1000).
        disc_layers: hidden layers of D (6).
        disc_lr: Adam learning rate of D (1e-4; Roy (2025) used 5e-5).
        disc_betas: Adam betas of D ((0.5, 0.9)).
    """

    variant = "factor_vae"

    def __init__(
        self,
        in_channels: int = 1,
        latent_dim: int = 10,
        width: float = 1.0,
        backbone: str = "roy2025",
        likelihood: str = "bernoulli",
        image_size: int = IMAGE_SIZE,
        gamma: float = 40.0,
        disc_hidden: int = 1000,
        disc_layers: int = 6,
        disc_lr: float = 1e-4,
        disc_betas: Sequence[float] = (0.5, 0.9),
        kl_warmup: int = 0,
    ) -> None:
        super().__init__(
            in_channels, latent_dim, width, backbone, likelihood, image_size, kl_warmup=kl_warmup
        )
        self.gamma = check_nonnegative("gamma", gamma)
        self.disc_hidden = check_positive_int("disc_hidden", disc_hidden)
        self.disc_layers = check_positive_int("disc_layers", disc_layers)
        self.disc_lr = check_positive("disc_lr", disc_lr)
        if (
            isinstance(disc_betas, str)
            or not isinstance(disc_betas, Sequence)
            or len(disc_betas) != 2
            or not all(0.0 <= check_nonnegative("disc_betas", b) < 1.0 for b in disc_betas)
        ):
            raise ConfigError(f"disc_betas: expected two numbers in [0, 1), got {disc_betas!r}")
        self.disc_betas = (float(disc_betas[0]), float(disc_betas[1]))
        self.discriminator = Discriminator(self.latent_dim, self.disc_hidden, self.disc_layers)

    def aux_module(self) -> nn.Module:
        """The discriminator (trained on ``aux_loss`` by its own optimiser)."""
        return self.discriminator

    def aux_optimizer_config(self) -> dict[str, Any]:
        """Adam keyword arguments for the discriminator: ``lr`` and ``betas``."""
        return {"lr": self.disc_lr, "betas": self.disc_betas}

    def training_losses(
        self, x: torch.Tensor, *, step: int = 0, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """``{"loss", "aux_loss", "rec", "kl", "tc", "disc_acc"}``; needs a batch of >= 2.

        ``tc`` is the discriminator's total-correlation estimate, ``disc_acc`` its accuracy
        on the real and permuted halves.
        """
        if x.shape[0] < 2:
            raise ConfigError(f"x: FactorVAE needs a batch of at least 2 images, got {x.shape[0]}")
        t = self.elbo_terms(x, generator)
        z = t["z"]
        logits = self.discriminator(z)
        tc = (logits[:, 0] - logits[:, 1]).mean()
        loss = t["rec"] + self.kl_weight(step) * t["kl"] + self.gamma * tc

        half = z.shape[0] // 2
        z_real = z[:half].detach()
        z_perm = permute_dims(z[half:].detach(), generator)
        d_real = self.discriminator(z_real)
        d_perm = self.discriminator(z_perm)
        zeros = torch.zeros(d_real.shape[0], dtype=torch.long, device=z.device)
        ones = torch.ones(d_perm.shape[0], dtype=torch.long, device=z.device)
        aux_loss = 0.5 * (F.cross_entropy(d_real, zeros) + F.cross_entropy(d_perm, ones))
        with torch.no_grad():
            correct = (d_real.argmax(1) == 0).sum() + (d_perm.argmax(1) == 1).sum()
            acc = correct.float() / (d_real.shape[0] + d_perm.shape[0])
        return {
            "loss": loss,
            "aux_loss": aux_loss,
            "rec": t["rec"].detach(),
            "kl": t["kl"].detach(),
            "tc": tc.detach(),
            "disc_acc": acc,
        }

    def hparams(self) -> dict[str, Any]:
        return {
            **super().hparams(),
            "gamma": self.gamma,
            "disc_hidden": self.disc_hidden,
            "disc_layers": self.disc_layers,
            "disc_lr": self.disc_lr,
            "disc_betas": list(self.disc_betas),
        }
