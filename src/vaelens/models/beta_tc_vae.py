"""beta-TC-VAE (Chen et al. 2018): the KL term split into MI, total correlation and dimwise KL.

For a batch ``z_i ~ q(z | x_i)``, ``i = 1..B``, with ``log q(z)`` estimated from the batch::

    MI    = mean_i [log q(z_i | x_i) - log q(z_i)]
    TC    = mean_i [log q(z_i) - sum_j log q(z_ij)]
    dwKL  = mean_i [sum_j log q(z_ij) - log p(z_i)]
    loss  = rec + alpha * MI + beta * TC + gamma * dwKL       (alpha = gamma = 1, beta = 6)

By construction ``MI + TC + dwKL = mean_i [log q(z_i|x_i) - log p(z_i)]``, a one-sample Monte
Carlo estimate of the KL term, for either estimator of ``log q``:

* minibatch weighted sampling (``"mws"``)::

      log q(z_i)    = logsumexp_k log q(z_i | x_k) - log B
      log q(z_ij)   = logsumexp_k log q(z_ij | x_k) - log B

  i.e. ``q(z) ~ (1/B) sum_k q(z | x_k)``, whose weights sum to one. Chen et al. print the
  constant as ``log(N * B)`` (N the dataset size); that shifts ``log q(z)`` by ``-log N`` and
  each ``log q(z_j)`` by ``-log N``, which changes no gradient but would offset the reported
  MI, TC and dwKL by ``+log N``, ``(D - 1) log N`` and ``-D log N`` nats; vaelens keeps the
  normalised form so the three reported terms are comparable between estimators.

* minibatch stratified sampling (``"mss"``)::

      log q(z_i)  = logsumexp_k [log w_ik + log q(z_i | x_k)]

  with the stratified importance weights (:func:`stratified_weight_matrix`, M = B - 1)
  ``w_ii = 1/N``, ``w_{i,(i+1) mod B} = (N - M) / (N M)``, all other ``w_ik = 1/M``;
  each row sums to one. The matrix is built entry by entry (two popular implementations
  write it with a stride that lands on column 0 instead of the diagonal).

``dataset_size`` (N) is needed by ``"mss"`` only.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from vaelens.errors import ConfigError
from vaelens.models.backbones import (
    IMAGE_SIZE,
    check_choice,
    check_nonnegative,
    check_positive_int,
)
from vaelens.models.vae import GaussianVAE, gaussian_log_density

__all__ = [
    "TC_ESTIMATORS",
    "BetaTCVAE",
    "log_qz_estimates",
    "stratified_weight_matrix",
    "tc_decomposition",
]

TC_ESTIMATORS = ("mws", "mss")


def stratified_weight_matrix(
    batch_size: int, dataset_size: int, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """The ``(B, B)`` importance weights of minibatch stratified sampling (not logged).

    Row ``i`` weighs the batch members when ``z_i`` (drawn from ``x_i``) is evaluated:
    ``w_ii = 1/N`` for its own data point, ``(N - M)/(N M)`` for one other member (the
    next one, cyclically) and ``1/M`` for the remaining ``M - 1`` members, ``M = B - 1``.
    Requires ``2 <= B <= N + 1``. Every row sums to ``1``.
    """
    b = check_positive_int("batch_size", batch_size)
    n = check_positive_int("dataset_size", dataset_size)
    if b < 2:
        raise ConfigError(f"batch_size: stratified sampling needs at least 2 samples, got {b}")
    m = b - 1
    if n < m:
        raise ConfigError(
            f"dataset_size: must be at least batch_size - 1 = {m} for stratified sampling, got {n}"
        )
    w = torch.full((b, b), 1.0 / m, dtype=dtype)
    idx = torch.arange(b)
    w[idx, idx] = 1.0 / n
    w[idx, (idx + 1) % b] = (n - m) / (n * m)
    return w


def log_qz_estimates(
    z: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    estimator: str = "mws",
    dataset_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch estimates of ``log q(z_i)`` and ``sum_j log q(z_ij)``, each ``(B,)``.

    ``z, mu, logvar`` are ``(B, D)``; ``z_i`` was sampled from ``N(mu_i, exp(logvar_i))``.
    See the module docstring for the two estimators.
    """
    check_choice("estimator", estimator, TC_ESTIMATORS)
    if z.ndim != 2 or z.shape != mu.shape or z.shape != logvar.shape:
        raise ConfigError(
            f"z, mu, logvar: expected three tensors of one shape (B, D), got "
            f"{tuple(z.shape)}, {tuple(mu.shape)}, {tuple(logvar.shape)}"
        )
    b = z.shape[0]
    # mat[i, k, j] = log q(z_ij | x_k)
    mat = gaussian_log_density(z[:, None, :], mu[None, :, :], logvar[None, :, :])
    if estimator == "mws":
        log_w = torch.full((b, b), -math.log(b), dtype=z.dtype, device=z.device)
    else:
        if dataset_size is None:
            raise ConfigError("dataset_size: required by the 'mss' estimator, got None")
        log_w = stratified_weight_matrix(b, dataset_size).log().to(z.dtype).to(z.device)
    log_qz = torch.logsumexp(mat.sum(2) + log_w, dim=1)
    log_prod_qzj = torch.logsumexp(mat + log_w[:, :, None], dim=1).sum(1)
    return log_qz, log_prod_qzj


def tc_decomposition(
    z: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    estimator: str = "mws",
    dataset_size: int | None = None,
) -> dict[str, torch.Tensor]:
    """``{"mi", "tc", "dwkl", "log_qz_x", "log_pz", "log_qz", "log_prod_qzj"}`` (batch means).

    ``mi + tc + dwkl == log_qz_x - log_pz`` exactly (up to float rounding).
    """
    log_qz, log_prod = log_qz_estimates(z, mu, logvar, estimator, dataset_size)
    log_qz_x = gaussian_log_density(z, mu, logvar).sum(1)
    log_pz = gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z)).sum(1)
    return {
        "mi": (log_qz_x - log_qz).mean(),
        "tc": (log_qz - log_prod).mean(),
        "dwkl": (log_prod - log_pz).mean(),
        "log_qz_x": log_qz_x.mean(),
        "log_pz": log_pz.mean(),
        "log_qz": log_qz.mean(),
        "log_prod_qzj": log_prod.mean(),
    }


class BetaTCVAE(GaussianVAE):
    """beta-TC-VAE: ``rec + alpha MI + beta TC + gamma dwKL`` with a batch estimator of log q.

    Args (besides :class:`~vaelens.models.vae.GaussianVAE`'s):
        alpha, beta, gamma: weights of MI, TC and dimwise KL (1, 6, 1).
        estimator: ``"mws"`` (minibatch weighted) or ``"mss"`` (minibatch stratified).
        dataset_size: number of training images N (required by ``"mss"``).
    """

    variant = "beta_tc_vae"

    def __init__(
        self,
        in_channels: int = 1,
        latent_dim: int = 10,
        width: float = 1.0,
        backbone: str = "roy2025",
        likelihood: str = "bernoulli",
        image_size: int = IMAGE_SIZE,
        alpha: float = 1.0,
        beta: float = 6.0,
        gamma: float = 1.0,
        estimator: str = "mws",
        dataset_size: int | None = None,
        kl_warmup: int = 0,
    ) -> None:
        super().__init__(
            in_channels, latent_dim, width, backbone, likelihood, image_size, kl_warmup=kl_warmup
        )
        self.alpha = check_nonnegative("alpha", alpha)
        self.beta = check_nonnegative("beta", beta)
        self.gamma = check_nonnegative("gamma", gamma)
        self.estimator = check_choice("estimator", estimator, TC_ESTIMATORS)
        if dataset_size is not None:
            dataset_size = check_positive_int("dataset_size", dataset_size)
        elif self.estimator == "mss":
            raise ConfigError(
                "dataset_size: the 'mss' estimator needs the number of training images"
            )
        self.dataset_size = dataset_size

    def training_losses(
        self, x: torch.Tensor, *, step: int = 0, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """``{"loss", "rec", "kl", "mi", "tc", "dwkl"}``; ``kl`` is the closed-form KL."""
        if x.shape[0] < 2:
            raise ConfigError(
                f"x: beta-TC-VAE needs a batch of at least 2 images, got {x.shape[0]}"
            )
        t = self.elbo_terms(x, generator)
        d = tc_decomposition(t["z"], t["mu"], t["logvar"], self.estimator, self.dataset_size)
        kl = self.alpha * d["mi"] + self.beta * d["tc"] + self.gamma * d["dwkl"]
        loss = t["rec"] + self.kl_weight(step) * kl
        return {
            "loss": loss,
            "rec": t["rec"].detach(),
            "kl": t["kl"].detach(),
            "mi": d["mi"].detach(),
            "tc": d["tc"].detach(),
            "dwkl": d["dwkl"].detach(),
        }

    def hparams(self) -> dict[str, Any]:
        return {
            **super().hparams(),
            "alpha": self.alpha,
            "beta": self.beta,
            "gamma": self.gamma,
            "estimator": self.estimator,
            "dataset_size": self.dataset_size,
        }
