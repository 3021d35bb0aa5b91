"""The standard VAE (Kingma & Welling) and the loss terms shared by the Gaussian-latent variants.

Objective (minimised), per the scaling convention of every vaelens model::

    loss = rec + w(step) KL            (w = 1 unless a KL warm-up is set: ``kl_warmup``)
    rec  = mean_n  sum_pixels  -log p(x_n | z_n),       z_n ~ q(z | x_n)
    KL   = mean_n  sum_j  KL(N(mu_nj, sigma_nj^2) || N(0, 1))
         = mean_n  sum_j  0.5 * (mu_nj^2 + sigma_nj^2 - 1 - log sigma_nj^2)

``-log p(x|z)`` is the binary cross-entropy with logits (``likelihood="bernoulli"``) or the
sum of squared errors (``likelihood="gaussian"``, decoder outputs are the means).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from vaelens.errors import ConfigError
from vaelens.models.backbones import (
    IMAGE_SIZE,
    LIKELIHOODS,
    Decoder,
    Encoder,
    check_choice,
    check_images,
    check_latents,
    check_nonnegative_int,
    check_positive,
    check_positive_int,
    resolve_backbone,
)
from vaelens.models.base import Posterior, VAEBase

__all__ = [
    "VAE",
    "GaussianVAE",
    "gaussian_kl",
    "gaussian_log_density",
    "reconstruction_loss",
    "reconstruction_loss_per_image",
]

_LOG_2PI = math.log(2.0 * math.pi)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Per-dimension ``KL(N(mu, exp(logvar)) || N(0, 1)) = 0.5 (mu^2 + e^logvar - 1 - logvar)``.

    Returns a tensor of the shape of ``mu`` (no reduction).
    """
    if mu.shape != logvar.shape:
        raise ConfigError(
            f"logvar: expected the shape of mu {tuple(mu.shape)}, got {tuple(logvar.shape)}"
        )
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


def gaussian_log_density(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Elementwise ``log N(z; mu, exp(logvar)) = -0.5 (log 2pi + logvar + (z-mu)^2 e^-logvar)``.

    Broadcasts its arguments (no reduction).
    """
    return -0.5 * (_LOG_2PI + logvar + (z - mu).pow(2) * torch.exp(-logvar))


def reconstruction_loss(decoded: torch.Tensor, x: torch.Tensor, likelihood: str) -> torch.Tensor:
    """``mean_n sum_pixels -log p(x_n | decoded_n)`` (up to the Gaussian's constant).

    ``bernoulli``: ``BCEWithLogits(decoded, x)`` summed over pixels (``x`` in ``[0, 1]``);
    ``gaussian``: ``(decoded - x)^2`` summed over pixels. Averaged over the batch.
    """
    return reconstruction_loss_per_image(decoded, x, likelihood).mean()


def reconstruction_loss_per_image(
    decoded: torch.Tensor, x: torch.Tensor, likelihood: str
) -> torch.Tensor:
    """``(N,)``: each image's ``sum_pixels -log p(x_n | decoded_n)`` (:func:`reconstruction_loss`
    before its batch mean)."""
    check_choice("likelihood", likelihood, LIKELIHOODS)
    if decoded.shape != x.shape:
        raise ConfigError(
            f"decoded: expected the shape of x {tuple(x.shape)}, got {tuple(decoded.shape)}"
        )
    if likelihood == "bernoulli":
        per = F.binary_cross_entropy_with_logits(decoded, x, reduction="none")
    else:
        per = (decoded - x).pow(2)
    return per.flatten(1).sum(1)


class GaussianVAE(VAEBase):
    """Shared machinery of the Gaussian-latent variants: backbone, encode/decode, rec and KL.

    Args:
        in_channels: image channels C (1 or 3 for the bundled datasets).
        latent_dim: number of latent dimensions (10 in Roy (2025)).
        width: channel / hidden-unit multiplier of the backbone (1.0 = the published sizes).
        backbone: ``"roy2025"`` (3 conv layers) or ``"dlib"`` (disentanglement_lib's network).
        likelihood: ``"bernoulli"`` (decode returns logits) or ``"gaussian"`` (means).
        image_size: must be 64.
        kl_warmup: KL warm-up steps W (0 = none): the loss's ``KL(q(z|x) || p(z))`` term is
            weighted by ``w(step) = min(1, step / W)`` (:meth:`kl_weight`; beta-TC-VAE: its
            three parts, which sum to it), so that early training is nearly an autoencoder
            and does not sit on the mean image (docs/training.md). The extra penalties of
            FactorVAE (``gamma TC``) and DIP-VAE (the moment penalty) are not warmed.
    """

    variant = "gaussian_vae"

    def __init__(
        self,
        in_channels: int = 1,
        latent_dim: int = 10,
        width: float = 1.0,
        backbone: str = "roy2025",
        likelihood: str = "bernoulli",
        image_size: int = IMAGE_SIZE,
        *,
        kl_warmup: int = 0,
    ) -> None:
        super().__init__()
        self.kl_warmup = check_nonnegative_int("kl_warmup", kl_warmup)
        self.in_channels = check_positive_int("in_channels", in_channels)
        self.latent_dim = check_positive_int("latent_dim", latent_dim)
        self.width = check_positive("width", width)
        self.backbone = resolve_backbone(backbone)
        self.likelihood = check_choice("likelihood", likelihood, LIKELIHOODS)
        self.image_size = check_positive_int("image_size", image_size)
        self.image_shape = (self.in_channels, self.image_size, self.image_size)
        kw = {"backbone": self.backbone, "width": self.width, "image_size": image_size}
        self.encoder = Encoder(self.in_channels, self.latent_dim, **kw)
        self.decoder = Decoder(self.in_channels, self.latent_dim, **kw)

    # -- the lens interface ------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> Posterior:
        """``x (N, C, 64, 64) -> Posterior(mean=mu, logvar=logvar)``, each ``(N, latent_dim)``."""
        check_images(x, self.image_shape)
        mu, logvar = self.encoder(x)
        return Posterior(mean=mu, logvar=logvar)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``z (N, latent_dim) -> (N, C, 64, 64)`` logits (Bernoulli) or means (Gaussian)."""
        check_latents(z, self.latent_dim)
        return self.decoder(z)

    # -- loss pieces -------------------------------------------------------------------
    def kl_weight(self, step: int) -> float:
        """The KL warm-up weight ``min(1, max(step, 0) / kl_warmup)`` (1 without warm-up)."""
        if self.kl_warmup == 0:
            return 1.0
        return min(1.0, max(step, 0) / self.kl_warmup)

    def elbo_terms(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """One reparameterised pass: ``mu, logvar, z, decoded, rec, kl_dims, kl``.

        ``kl_dims`` is ``(N, latent_dim)``, ``kl`` its sum over dimensions averaged over the
        batch, ``rec`` as in :func:`reconstruction_loss`.
        """
        post = self.encode(x)
        z = post.sample(generator)
        decoded = self.decoder(z)
        rec = reconstruction_loss(decoded, x, self.likelihood)
        assert post.logvar is not None
        kl_dims = gaussian_kl(post.mean, post.logvar)
        return {
            "mu": post.mean,
            "logvar": post.logvar,
            "z": z,
            "decoded": decoded,
            "rec": rec,
            "kl_dims": kl_dims,
            "kl": kl_dims.sum(1).mean(),
        }

    def training_losses(
        self, x: torch.Tensor, *, step: int = 0, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """``{"loss": rec + w KL, "rec", "kl"}`` (``w`` = :meth:`kl_weight`; extras detached)."""
        t = self.elbo_terms(x, generator)
        return {
            "loss": t["rec"] + self.kl_weight(step) * t["kl"],
            "rec": t["rec"].detach(),
            "kl": t["kl"].detach(),
        }

    def hparams(self) -> dict[str, Any]:
        """The constructor arguments; ``build_model(self.variant, **hparams())`` rebuilds it."""
        return {
            "in_channels": self.in_channels,
            "latent_dim": self.latent_dim,
            "width": self.width,
            "backbone": self.backbone,
            "likelihood": self.likelihood,
            "image_size": self.image_size,
            "kl_warmup": self.kl_warmup,
        }


class VAE(GaussianVAE):
    """The standard VAE: ``loss = rec + w(step) KL(q(z|x) || N(0, I))`` (``w = 1`` without
    a KL warm-up)."""

    variant = "vae"
