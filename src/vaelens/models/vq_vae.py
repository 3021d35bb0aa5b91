"""VQ-VAE (van den Oord et al. 2017) with an EMA codebook and dead-code restarts.

The encoder maps an image to a ``g x g`` grid (8x8 for the roy2025 backbone, 4x4 for dlib) of
``code_dim``-vectors ``z_e``; each is replaced by its nearest of ``num_codes`` codebook
vectors ``e_k`` (``k = argmin_k ||z_e - e_k||^2``), and the decoder reads the quantised grid.
Objective (sums over the grid and code dimensions, averages over the batch)::

    loss = rec + beta_c * ||z_e - sg[e]||^2                      (codebook="ema", default)
    loss = rec + ||sg[z_e] - e||^2 + beta_c * ||z_e - sg[e]||^2  (codebook="loss")

with the straight-through estimator ``z_q = z_e + sg[e - z_e]`` (forward value ``e``,
gradient to ``z_e`` as if the quantiser were the identity). EMA codebook (training mode only),
with ``n_k`` the number of batch vectors assigned to code k and ``s_k`` their sum::

    N_k <- decay N_k + (1 - decay) n_k
    m_k <- decay m_k + (1 - decay) s_k
    e_k  = m_k / N~_k,   N~_k = (N_k + eps) / (sum_l N_l + K eps) * sum_l N_l   (Laplace)

Initialisation: on the first training step the codebook is set to randomly chosen encoder
outputs of the batch (a random normal codebook far from the encoder's outputs would map every
vector to one code). Dead codes: after each training step, codes whose EMA usage ``N_k`` (expected assignments per
batch) is under ``restart_threshold`` are reset to randomly chosen encoder outputs of the batch,
with ``N_k = 1`` and ``m_k = e_k``. Logged (detached): ``perplexity = exp(-sum_k p_k log p_k)``
of the batch's code frequencies (``K`` for a uniform assignment; it grows with the batch size,
so :meth:`VQVAE.take_usage_counts` also gives counts accumulated over, e.g., an epoch),
``codes_used`` in the batch, ``restarted`` codes, and ``kl = g^2 log K`` (the constant KL of a
one-hot posterior against the uniform prior).

The lens interface: ``encode(x)`` returns ``Posterior(mean=z_e flattened to (N, D),
logvar=None, codes=(N, g, g) indices, quantized=z_q flattened to (N, D))``, ``D = code_dim g^2``
(channel-major flattening of ``(code_dim, g, g)``). ``decode(z)`` quantises a continuous
``(N, D)`` code first, so a small continuous perturbation of ``z_e`` snaps back to the same
codes; :meth:`VQVAE.decode_codes` takes discrete codes (for code-swap interventions) and
:meth:`VQVAE.decode_quantized` an already quantised ``z_q``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from vaelens.errors import ConfigError
from vaelens.models.backbones import (
    IMAGE_SIZE,
    LIKELIHOODS,
    SpatialDecoder,
    SpatialEncoder,
    check_choice,
    check_images,
    check_latents,
    check_nonnegative,
    check_positive,
    check_positive_int,
    resolve_backbone,
)
from vaelens.models.base import Posterior, VAEBase
from vaelens.models.vae import reconstruction_loss

__all__ = ["CODEBOOK_MODES", "VQVAE", "VectorQuantizer", "perplexity"]

CODEBOOK_MODES = ("ema", "loss")


def perplexity(codes: torch.Tensor, num_codes: int) -> torch.Tensor:
    """``exp(-sum_k p_k log p_k)`` of the code frequencies ``p_k`` in ``codes`` (any shape)."""
    counts = torch.bincount(codes.reshape(-1), minlength=num_codes).to(torch.float64)
    p = counts / counts.sum()
    ent = -(p * torch.log(p.clamp_min(1e-300))).sum()
    return torch.exp(ent).float()


def _sample_rows(
    flat: torch.Tensor, k: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``k`` random rows of ``flat``: without replacement when there are enough, else with."""
    m = flat.shape[0]
    if m >= k:
        pick = torch.randperm(m, generator=generator, device=flat.device)[:k]
    else:
        pick = torch.randint(0, m, (k,), generator=generator, device=flat.device)
    return flat.detach()[pick]


class VectorQuantizer(nn.Module):
    """Codebook of ``num_codes x code_dim`` vectors; ``forward(z_e) -> (z_q, codes)``.

    ``z_e`` is ``(N, code_dim, g, g)``; ``z_q`` the straight-through quantisation of the same
    shape and ``codes`` the ``(N, g, g)`` indices. The forward has no side effects; the EMA
    update and restarts are explicit calls (:meth:`ema_update`, :meth:`restart_dead_codes`).
    """

    def __init__(
        self,
        num_codes: int = 512,
        code_dim: int = 64,
        *,
        codebook: str = "ema",
        decay: float = 0.99,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.num_codes = check_positive_int("num_codes", num_codes)
        self.code_dim = check_positive_int("code_dim", code_dim)
        self.codebook = check_choice("codebook", codebook, CODEBOOK_MODES)
        self.decay = check_nonnegative("decay", decay)
        if not self.decay < 1.0:
            raise ConfigError(f"decay: expected a number in [0, 1), got {decay!r}")
        self.eps = check_positive("eps", eps)
        init = torch.empty(self.num_codes, self.code_dim)
        if self.codebook == "ema":
            init.normal_()
            self.register_buffer("embedding", init)
        else:
            init.uniform_(-1.0 / self.num_codes, 1.0 / self.num_codes)
            self.embedding = nn.Parameter(init)
        self.register_buffer("ema_cluster_size", torch.ones(self.num_codes))
        self.register_buffer("ema_w", init.detach().clone())
        self.register_buffer("usage_counts", torch.zeros(self.num_codes, dtype=torch.long))
        self.register_buffer("initialized", torch.tensor(False))

    # -- lookups -----------------------------------------------------------------------
    def nearest(self, flat: torch.Tensor) -> torch.Tensor:
        """Indices ``argmin_k ||flat_m - e_k||^2`` of ``flat (M, code_dim)``, shape ``(M,)``."""
        with torch.no_grad():
            f = flat.detach()
            e = self.embedding.detach()
            dist = f.pow(2).sum(1, keepdim=True) - 2.0 * f @ e.T + e.pow(2).sum(1)[None, :]
            return dist.argmin(1)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """Code vectors of ``codes (N, g, g)`` as a ``(N, code_dim, g, g)`` grid."""
        return nn.functional.embedding(codes, self.embedding).permute(0, 3, 1, 2)

    def quantize(self, z_e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(e, codes)``: nearest code vectors (not straight-through) and their indices."""
        n, c, h, w = z_e.shape
        flat = z_e.permute(0, 2, 3, 1).reshape(-1, c)
        codes = self.nearest(flat).view(n, h, w)
        return self.lookup(codes), codes

    def forward(self, z_e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        e, codes = self.quantize(z_e)
        return z_e + (e - z_e).detach(), codes

    # -- training-time updates -----------------------------------------------------------
    @torch.no_grad()
    def ema_update(self, flat: torch.Tensor, codes: torch.Tensor) -> None:
        """One EMA step from batch vectors ``flat (M, code_dim)`` assigned to ``codes (M,)``.

        Updates the usage ``N_k`` in both modes; the sums ``m_k`` and the codebook itself only
        in ``"ema"`` mode (see the module docstring for the formulas).
        """
        flat = flat.detach().to(self.ema_w.dtype)
        counts = torch.bincount(codes, minlength=self.num_codes).to(flat.dtype)
        self.usage_counts += counts.long()
        self.ema_cluster_size.mul_(self.decay).add_(counts, alpha=1.0 - self.decay)
        if self.codebook != "ema":
            return
        sums = torch.zeros_like(self.ema_w).index_add_(0, codes, flat)
        self.ema_w.mul_(self.decay).add_(sums, alpha=1.0 - self.decay)
        total = self.ema_cluster_size.sum()
        smoothed = (self.ema_cluster_size + self.eps) / (total + self.num_codes * self.eps) * total
        self.embedding.copy_(self.ema_w / smoothed[:, None])

    @torch.no_grad()
    def restart_dead_codes(
        self, flat: torch.Tensor, threshold: float, generator: torch.Generator | None = None
    ) -> int:
        """Reset codes with ``N_k < threshold`` to random rows of ``flat``; return how many."""
        dead = torch.nonzero(self.ema_cluster_size < threshold).flatten()
        k = int(dead.numel())
        if k == 0 or flat.shape[0] == 0:
            return 0
        new = _sample_rows(flat, k, generator).to(self.ema_w.dtype)
        self.embedding.data[dead] = new
        self.ema_w[dead] = new
        self.ema_cluster_size[dead] = 1.0
        return k

    @torch.no_grad()
    def init_from_data(self, flat: torch.Tensor, generator: torch.Generator | None = None) -> None:
        """Set every code to a random row of ``flat (M, code_dim)`` (distinct rows when
        ``M >= K``), with usage 1; marks the codebook initialised."""
        new = _sample_rows(flat, self.num_codes, generator).to(self.ema_w.dtype)
        self.embedding.data.copy_(new)
        self.ema_w.copy_(new)
        self.ema_cluster_size.fill_(1.0)
        self.initialized.fill_(True)

    def take_usage_counts(self) -> torch.Tensor:
        """Assignments per code accumulated since the last call (then reset to zero)."""
        out = self.usage_counts.clone()
        self.usage_counts.zero_()
        return out


class VQVAE(VAEBase):
    """VQ-VAE on the roy2025 (or dlib) conv backbone.

    Args:
        in_channels, width, backbone, likelihood, image_size: as for the Gaussian variants.
        num_codes: codebook size K (512).
        code_dim: dimension of each code vector (64).
        beta_c: commitment weight (0.25).
        codebook: ``"ema"`` (EMA updates, default) or ``"loss"`` (codebook loss term).
        decay: EMA decay (0.99), also of the usage counts that drive restarts.
        eps: Laplace smoothing of the EMA cluster sizes (1e-5).
        restart_threshold: EMA usage under which a code is restarted (0.1, i.e. an unused code
            is restarted after ~230 steps; 0 disables).
    """

    variant = "vq_vae"

    def __init__(
        self,
        in_channels: int = 1,
        width: float = 1.0,
        backbone: str = "roy2025",
        likelihood: str = "bernoulli",
        image_size: int = IMAGE_SIZE,
        num_codes: int = 512,
        code_dim: int = 64,
        beta_c: float = 0.25,
        codebook: str = "ema",
        decay: float = 0.99,
        eps: float = 1e-5,
        restart_threshold: float = 0.1,
    ) -> None:
        super().__init__()
        self.in_channels = check_positive_int("in_channels", in_channels)
        self.width = check_positive("width", width)
        self.backbone = resolve_backbone(backbone)
        self.likelihood = check_choice("likelihood", likelihood, LIKELIHOODS)
        self.image_size = check_positive_int("image_size", image_size)
        self.image_shape = (self.in_channels, self.image_size, self.image_size)
        self.num_codes = check_positive_int("num_codes", num_codes)
        self.code_dim = check_positive_int("code_dim", code_dim)
        self.beta_c = check_nonnegative("beta_c", beta_c)
        self.codebook = check_choice("codebook", codebook, CODEBOOK_MODES)
        self.decay = float(decay)
        self.eps = float(eps)
        self.restart_threshold = check_nonnegative("restart_threshold", restart_threshold)
        kw = {"backbone": self.backbone, "width": self.width, "image_size": image_size}
        self.encoder = SpatialEncoder(self.in_channels, self.code_dim, **kw)
        self.decoder = SpatialDecoder(self.in_channels, self.code_dim, **kw)
        self.quantizer = VectorQuantizer(
            self.num_codes, self.code_dim, codebook=codebook, decay=self.decay, eps=self.eps
        )
        self.grid = self.encoder.grid
        self.latent_dim = self.code_dim * self.grid * self.grid

    # -- the lens interface ------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> Posterior:
        """``Posterior(mean=z_e (N, D), logvar=None, codes=(N, g, g), quantized=z_q (N, D))``."""
        check_images(x, self.image_shape)
        z_e = self.encoder(x)
        z_q, codes = self.quantizer(z_e)
        return Posterior(mean=z_e.flatten(1), codes=codes, quantized=z_q.flatten(1))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Quantise a continuous ``z (N, D)`` to the nearest codes, then decode (logits/means).

        The gradient passes straight through the quantiser to ``z``.
        """
        check_latents(z, self.latent_dim)
        z_q, _ = self.quantizer(self._grid(z))
        return self.decoder(z_q)

    def decode_quantized(self, z_q: torch.Tensor) -> torch.Tensor:
        """Decode an already quantised code, ``(N, D)`` or ``(N, code_dim, g, g)``, as is."""
        if z_q.ndim == 4:
            shape = (self.code_dim, self.grid, self.grid)
            if tuple(z_q.shape[1:]) != shape:
                raise ConfigError(f"z_q: expected shape (N, {shape}), got {tuple(z_q.shape)}")
            return self.decoder(z_q)
        check_latents(z_q, self.latent_dim, name="z_q")
        return self.decoder(self._grid(z_q))

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Decode integer codebook indices ``codes (N, g, g)`` (values in ``[0, num_codes)``)."""
        if (
            not isinstance(codes, torch.Tensor)
            or codes.dtype not in (torch.int64, torch.int32)
            or codes.ndim != 3
            or tuple(codes.shape[1:]) != (self.grid, self.grid)
        ):
            got = (
                f"{tuple(codes.shape)} {codes.dtype}"
                if isinstance(codes, torch.Tensor)
                else type(codes).__name__
            )
            raise ConfigError(
                f"codes: expected an integer tensor of shape (N, {self.grid}, {self.grid}), "
                f"got {got}"
            )
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.num_codes):
            raise ConfigError(
                f"codes: values must lie in [0, {self.num_codes}), got "
                f"[{int(codes.min())}, {int(codes.max())}]"
            )
        return self.decoder(self.quantizer.lookup(codes.long()))

    def _grid(self, z: torch.Tensor) -> torch.Tensor:
        return z.reshape(z.shape[0], self.code_dim, self.grid, self.grid)

    # -- training ------------------------------------------------------------------------
    def training_losses(
        self, x: torch.Tensor, *, step: int = 0, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """``{"loss", "rec", "kl", "commitment", ["codebook"], "perplexity", "codes_used",
        "restarted"}``. In training mode also updates the EMA codebook / usage and restarts
        dead codes (after the loss is built; nothing the backward needs is modified).
        """
        check_images(x, self.image_shape)
        z_e = self.encoder(x)
        if self.training and not bool(self.quantizer.initialized):
            flat0 = z_e.detach().permute(0, 2, 3, 1).reshape(-1, self.code_dim)
            self.quantizer.init_from_data(flat0, generator)
        e, codes = self.quantizer.quantize(z_e)
        z_q = z_e + (e - z_e).detach()
        decoded = self.decoder(z_q)
        rec = reconstruction_loss(decoded, x, self.likelihood)
        commitment = (z_e - e.detach()).pow(2).flatten(1).sum(1).mean()
        loss = rec + self.beta_c * commitment
        out: dict[str, torch.Tensor] = {}
        if self.codebook == "loss":
            cb = (z_e.detach() - e).pow(2).flatten(1).sum(1).mean()
            loss = loss + cb
            out["codebook"] = cb.detach()
        restarted = 0
        if self.training:
            flat = z_e.detach().permute(0, 2, 3, 1).reshape(-1, self.code_dim)
            self.quantizer.ema_update(flat, codes.reshape(-1))
            if self.restart_threshold > 0:
                restarted = self.quantizer.restart_dead_codes(
                    flat, self.restart_threshold, generator
                )
        kl = self.grid * self.grid * math.log(self.num_codes)
        out.update(
            {
                "loss": loss,
                "rec": rec.detach(),
                "kl": torch.tensor(kl, dtype=rec.dtype, device=rec.device),
                "commitment": commitment.detach(),
                "perplexity": perplexity(codes, self.num_codes),
                "codes_used": torch.tensor(float(torch.unique(codes).numel()), device=rec.device),
                "restarted": torch.tensor(float(restarted), device=rec.device),
            }
        )
        return out

    def take_usage_counts(self) -> torch.Tensor:
        """Per-code assignment counts since the last call (e.g. per epoch), then reset."""
        return self.quantizer.take_usage_counts()

    def hparams(self) -> dict[str, Any]:
        return {
            "in_channels": self.in_channels,
            "width": self.width,
            "backbone": self.backbone,
            "likelihood": self.likelihood,
            "image_size": self.image_size,
            "num_codes": self.num_codes,
            "code_dim": self.code_dim,
            "beta_c": self.beta_c,
            "codebook": self.codebook,
            "decay": self.decay,
            "eps": self.eps,
            "restart_threshold": self.restart_threshold,
        }
