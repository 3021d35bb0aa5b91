"""A user's own model, outside the vaelens registry (imported by name as ``_custom_models``).

``MLPVAE`` is a one-linear-layer encoder and decoder on C x 64 x 64 images: the smallest
model that meets the training contract, for the tests of ``trust_code``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vaelens.models.base import Posterior, VAEBase

NAME = "_custom_models:MLPVAE"


class MLPVAE(VAEBase):
    """``C*64*64 -> 2 * latent`` and back, Bernoulli-logit reconstruction."""

    variant = "mlp"

    def __init__(self, in_channels: int = 1, latent_dim: int = 3) -> None:
        super().__init__()
        self.in_channels, self.latent_dim = in_channels, latent_dim
        self.image_shape = (in_channels, 64, 64)
        d = in_channels * 64 * 64
        self.enc = nn.Sequential(nn.Flatten(), nn.Linear(d, 2 * latent_dim))
        self.dec = nn.Linear(latent_dim, d)

    def encode(self, x: torch.Tensor) -> Posterior:
        mu, logvar = self.enc(x).chunk(2, dim=1)
        return Posterior(mean=mu, logvar=logvar)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.dec(z).view(-1, *self.image_shape)

    def training_losses(self, x: torch.Tensor, *, step: int = 0) -> dict[str, torch.Tensor]:
        post = self.encode(x)
        rec = (
            F.binary_cross_entropy_with_logits(self.decode(post.sample()), x, reduction="sum")
            / x.shape[0]
        )
        kl = 0.5 * (post.mean.pow(2) + post.logvar.exp() - 1 - post.logvar).sum(1).mean()
        return {"loss": rec + kl, "rec": rec.detach(), "kl": kl.detach()}

    def hparams(self) -> dict[str, Any]:
        return {"in_channels": self.in_channels, "latent_dim": self.latent_dim}


def record_job(spec: dict[str, Any], storage: str) -> dict[str, Any]:
    """A study job that trains nothing: it writes what it received (and its pid) to
    ``runs/<run_id>/spec.json``, so that a test can see what reached the worker."""
    import json
    import os
    from pathlib import Path

    run_dir = Path(storage) / "runs" / spec["run_id"]
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "spec.json").write_text(json.dumps({**spec, "pid": os.getpid()}))
    return {"metrics": {"ok": 1.0}, "train_seconds": 0.0, "analysis_seconds": 0.0}
