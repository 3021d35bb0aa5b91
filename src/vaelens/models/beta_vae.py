"""beta-VAE (Higgins et al. 2017) and its capacity-annealed form (Burgess et al. 2018).

``mode="higgins"`` (default)::

    loss = rec + beta * KL                       (beta = 4 in Roy (2025))

``mode="capacity"``::

    loss = rec + gamma * |KL - C(step)|,   C(step) = c_max * min(1, step / c_steps)

with ``rec`` and ``KL`` scaled as in :mod:`vaelens.models.vae` (summed over pixels / latent
dimensions, averaged over the batch). Defaults of the capacity form follow
disentanglement_lib's AnnealedVAE (gamma 1000, C_max 25 nats, 100k steps).
"""

from __future__ import annotations

from typing import Any

import torch

from vaelens.errors import ConfigError
from vaelens.models.backbones import (
    IMAGE_SIZE,
    check_choice,
    check_nonnegative,
    check_positive_int,
)
from vaelens.models.vae import GaussianVAE

__all__ = ["BETA_VAE_MODES", "BetaVAE", "capacity_at"]

BETA_VAE_MODES = ("higgins", "capacity")


def capacity_at(step: int, c_max: float, c_steps: int) -> float:
    """The capacity target ``C(step) = c_max * min(1, max(step, 0) / c_steps)`` in nats."""
    return float(c_max) * min(1.0, max(int(step), 0) / int(c_steps))


class BetaVAE(GaussianVAE):
    """beta-VAE; ``mode`` picks Higgins' ``rec + beta KL`` or Burgess' ``rec + gamma |KL - C|``.

    Args (besides :class:`~vaelens.models.vae.GaussianVAE`'s):
        beta: KL weight of the Higgins form (default 4, Roy (2025)'s value).
        mode: ``"higgins"`` or ``"capacity"``.
        gamma: weight of ``|KL - C|`` in the capacity form.
        c_max: final capacity in nats.
        c_steps: number of steps over which C rises linearly from 0 to ``c_max``.
    """

    variant = "beta_vae"

    def __init__(
        self,
        in_channels: int = 1,
        latent_dim: int = 10,
        width: float = 1.0,
        backbone: str = "roy2025",
        likelihood: str = "bernoulli",
        image_size: int = IMAGE_SIZE,
        beta: float = 4.0,
        mode: str = "higgins",
        gamma: float = 1000.0,
        c_max: float = 25.0,
        c_steps: int = 100_000,
        kl_warmup: int = 0,
    ) -> None:
        super().__init__(
            in_channels, latent_dim, width, backbone, likelihood, image_size, kl_warmup=kl_warmup
        )
        self.beta = check_nonnegative("beta", beta)
        self.mode = check_choice("mode", mode, BETA_VAE_MODES)
        self.gamma = check_nonnegative("gamma", gamma)
        self.c_max = check_nonnegative("c_max", c_max)
        self.c_steps = check_positive_int("c_steps", c_steps)
        if self.mode == "capacity" and self.kl_warmup:
            raise ConfigError(
                f"kl_warmup: the capacity form schedules the KL itself; expected 0, got {kl_warmup}"
            )

    def training_losses(
        self, x: torch.Tensor, *, step: int = 0, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """``{"loss", "rec", "kl"}`` plus ``"capacity"`` (C at ``step``) in the capacity form."""
        t = self.elbo_terms(x, generator)
        out = {"rec": t["rec"].detach(), "kl": t["kl"].detach()}
        if self.mode == "higgins":
            out["loss"] = t["rec"] + self.kl_weight(step) * self.beta * t["kl"]
        else:
            c = capacity_at(step, self.c_max, self.c_steps)
            out["loss"] = t["rec"] + self.gamma * (t["kl"] - c).abs()
            out["capacity"] = torch.tensor(c, dtype=t["kl"].dtype, device=x.device)
        return out

    def hparams(self) -> dict[str, Any]:
        return {
            **super().hparams(),
            "beta": self.beta,
            "mode": self.mode,
            "gamma": self.gamma,
            "c_max": self.c_max,
            "c_steps": self.c_steps,
        }
