"""DIP-VAE-I and DIP-VAE-II (Kumar et al. 2018): match the aggregate posterior's covariance to I.

Added to the beta = 1 ELBO (``rec + KL``)::

    reg = lambda_od * sum_{i != j} C_ij^2 + lambda_d * sum_i (C_ii - 1)^2

* DIP-VAE-I:  ``C = Cov_batch(mu(x))``
* DIP-VAE-II: ``C = E_batch[diag(sigma^2(x))] + Cov_batch(mu(x))``

with ``Cov_batch(mu) = mean_n (mu_n - mean(mu)) (mu_n - mean(mu))^T`` (the 1/B, biased form, as
in disentanglement_lib; centred over the batch axis). Defaults follow disentanglement_lib:
``lambda_d = 10 * lambda_od`` for I and ``lambda_d = lambda_od`` for II (``lambda_od = 10``).
"""

from __future__ import annotations

from typing import Any

import torch

from vaelens.errors import ConfigError
from vaelens.models.backbones import IMAGE_SIZE, check_choice, check_nonnegative
from vaelens.models.vae import GaussianVAE

__all__ = ["DIPVAE", "DIPVAEI", "DIPVAEII", "dip_covariance", "dip_regularizer"]


def dip_covariance(mu: torch.Tensor, logvar: torch.Tensor | None, dip_type: str) -> torch.Tensor:
    """The ``(D, D)`` matrix C of DIP-VAE-``dip_type`` (``"i"`` or ``"ii"``) for a batch.

    ``mu`` and ``logvar`` are ``(B, D)``; ``logvar`` is needed for ``"ii"`` only.
    """
    check_choice("dip_type", dip_type, ("i", "ii"))
    if mu.ndim != 2:
        raise ConfigError(f"mu: expected shape (B, D), got {tuple(mu.shape)}")
    centred = mu - mu.mean(0, keepdim=True)
    cov = centred.T @ centred / mu.shape[0]
    if dip_type == "ii":
        if logvar is None or logvar.shape != mu.shape:
            raise ConfigError(f"logvar: expected shape {tuple(mu.shape)} for DIP-VAE-II")
        cov = cov + torch.diag(logvar.exp().mean(0))
    return cov


def dip_regularizer(cov: torch.Tensor, lambda_od: float, lambda_d: float) -> torch.Tensor:
    """``lambda_od * sum_{i != j} C_ij^2 + lambda_d * sum_i (C_ii - 1)^2``."""
    diag = torch.diagonal(cov)
    off = cov - torch.diag(diag)
    return lambda_od * off.pow(2).sum() + lambda_d * (diag - 1.0).pow(2).sum()


class DIPVAE(GaussianVAE):
    """DIP-VAE of type ``dip_type``; use :class:`DIPVAEI` / :class:`DIPVAEII` (registry names
    ``"dip_vae_i"`` and ``"dip_vae_ii"``).

    Args (besides :class:`~vaelens.models.vae.GaussianVAE`'s):
        lambda_od: weight of the off-diagonal penalty (10).
        lambda_d: weight of the diagonal penalty (``None``: 10 * lambda_od for I, lambda_od
            for II).
    """

    dip_type = "i"

    def __init__(
        self,
        in_channels: int = 1,
        latent_dim: int = 10,
        width: float = 1.0,
        backbone: str = "roy2025",
        likelihood: str = "bernoulli",
        image_size: int = IMAGE_SIZE,
        lambda_od: float = 10.0,
        lambda_d: float | None = None,
        kl_warmup: int = 0,
    ) -> None:
        super().__init__(
            in_channels, latent_dim, width, backbone, likelihood, image_size, kl_warmup=kl_warmup
        )
        self.lambda_od = check_nonnegative("lambda_od", lambda_od)
        if lambda_d is None:
            lambda_d = self.lambda_od * (10.0 if self.dip_type == "i" else 1.0)
        self.lambda_d = check_nonnegative("lambda_d", lambda_d)

    def training_losses(
        self, x: torch.Tensor, *, step: int = 0, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """``{"loss": rec + KL + reg, "rec", "kl", "dip"}`` (``dip`` = the regulariser)."""
        t = self.elbo_terms(x, generator)
        cov = dip_covariance(t["mu"], t["logvar"], self.dip_type)
        reg = dip_regularizer(cov, self.lambda_od, self.lambda_d)
        return {
            "loss": t["rec"] + self.kl_weight(step) * t["kl"] + reg,
            "rec": t["rec"].detach(),
            "kl": t["kl"].detach(),
            "dip": reg.detach(),
        }

    def hparams(self) -> dict[str, Any]:
        return {**super().hparams(), "lambda_od": self.lambda_od, "lambda_d": self.lambda_d}


class DIPVAEI(DIPVAE):
    """DIP-VAE-I: ``C = Cov_batch(mu)``, ``lambda_d = 10 lambda_od`` by default."""

    variant = "dip_vae_i"
    dip_type = "i"


class DIPVAEII(DIPVAE):
    """DIP-VAE-II: ``C = E[diag(sigma^2)] + Cov_batch(mu)``, ``lambda_d = lambda_od`` by default."""

    variant = "dip_vae_ii"
    dip_type = "ii"
