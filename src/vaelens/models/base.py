"""The interface every vaelens model offers to the trainer and the lens.

The lens needs only ``encode(x)`` and ``decode(z)``; the trainer needs
:meth:`VAEBase.training_losses` and, for models with a second network trained by its own
optimiser (FactorVAE's discriminator), :meth:`VAEBase.aux_module`.

Training contract (one step of :mod:`vaelens.train`)::

    out = model.training_losses(x, step=step)     # dict of scalar tensors
    main_opt.zero_grad(); aux_opt.zero_grad()
    out["loss"].backward()                         # every term of the main objective
    if "aux_loss" in out:                          # e.g. the FactorVAE discriminator
        for p in model.aux_module().parameters(): p.grad = None
        out["aux_loss"].backward()
    main_opt.step(); aux_opt.step()

``out["loss"]`` must not depend on the aux parameters' *updates* (they are stepped after
both backwards), and ``out["aux_loss"]`` must only reach the aux parameters (detach the
main network's outputs it uses). Every other entry of ``out`` is a detached scalar logged
as a loss term (``rec``, ``kl``, ``tc``, ...). The main optimiser gets
:meth:`VAEBase.main_parameters`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = ["Posterior", "VAEBase"]


@dataclass
class Posterior:
    """Output of ``encode``: the posterior's mean and log-variance, each ``(N, latent_dim)``.

    For VQ-VAE, ``mean`` is the pre-quantisation code ``z_e`` flattened to ``(N, D)``,
    ``logvar`` is ``None`` and ``codes`` holds the selected codebook indices.
    """

    mean: torch.Tensor
    logvar: torch.Tensor | None = None
    codes: torch.Tensor | None = None
    quantized: torch.Tensor | None = None

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """Reparameterised sample ``mean + exp(logvar / 2) * eps`` (the mean when no variance)."""
        if self.logvar is None:
            return self.mean
        eps = torch.randn(
            self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype
        )
        return self.mean + torch.exp(0.5 * self.logvar) * eps


class VAEBase(nn.Module):
    """Base class of the built-in models (user models need not subclass it).

    Subclasses set ``latent_dim`` and ``image_shape`` and implement :meth:`encode`,
    :meth:`decode` and :meth:`training_losses`.
    """

    #: registry name of the variant, e.g. ``"beta_vae"``
    variant: str = "vae"
    latent_dim: int
    image_shape: tuple[int, int, int]
    #: "bernoulli" (BCE with logits; decode returns logits) or "gaussian" (decode returns means)
    likelihood: str = "bernoulli"

    def encode(self, x: torch.Tensor) -> Posterior:
        raise NotImplementedError

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Deterministic reconstruction in image space ``[0, 1]``: ``mean(decode(encode(x).mean))``."""
        return self.output_mean(self.decode(self.encode(x).mean))

    def output_mean(self, decoded: torch.Tensor) -> torch.Tensor:
        """Map ``decode``'s output to image space: sigmoid of logits, or the means themselves."""
        return torch.sigmoid(decoded) if self.likelihood == "bernoulli" else decoded

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``decode(encode(x).mean)``: the deterministic reconstruction's logits/means."""
        return self.decode(self.encode(x).mean)

    def training_losses(self, x: torch.Tensor, *, step: int = 0) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def aux_module(self) -> nn.Module | None:
        """A second network trained with its own optimiser on ``aux_loss`` (or ``None``)."""
        return None

    def aux_optimizer_config(self) -> dict[str, Any]:
        """Keyword arguments of the aux network's Adam (``lr``, ``betas``)."""
        return {}

    def main_parameters(self) -> list[nn.Parameter]:
        """Parameters of the main objective: everything outside :meth:`aux_module`."""
        aux = self.aux_module()
        aux_ids = {id(p) for p in aux.parameters()} if aux is not None else set()
        return [p for p in self.parameters() if id(p) not in aux_ids]

    def hparams(self) -> dict[str, Any]:
        """The constructor arguments (JSON-serialisable), enough to rebuild the model by name."""
        raise NotImplementedError
