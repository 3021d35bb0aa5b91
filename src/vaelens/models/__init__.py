"""VAE variants behind one interface (:class:`VAEBase`), built by name with :func:`build_model`.

Variants: ``vae``, ``beta_vae``, ``factor_vae``, ``beta_tc_vae``, ``dip_vae_i``, ``dip_vae_ii``,
``vq_vae``; backbones ``"roy2025"`` (3 conv layers) and ``"dlib"`` (disentanglement_lib).

Imports from: errors.
"""

from __future__ import annotations

from vaelens.models.base import Posterior, VAEBase
from vaelens.models.beta_tc_vae import BetaTCVAE
from vaelens.models.beta_vae import BetaVAE
from vaelens.models.dip_vae import DIPVAEI, DIPVAEII
from vaelens.models.factor_vae import FactorVAE
from vaelens.models.registry import (
    MODELS,
    ROY2025_PRESET,
    build_model,
    get_model_class,
    list_models,
    model_defaults,
)
from vaelens.models.vae import VAE
from vaelens.models.vq_vae import VQVAE

__all__ = [
    "DIPVAEI",
    "DIPVAEII",
    "MODELS",
    "ROY2025_PRESET",
    "VAE",
    "VQVAE",
    "BetaTCVAE",
    "BetaVAE",
    "FactorVAE",
    "Posterior",
    "VAEBase",
    "build_model",
    "get_model_class",
    "list_models",
    "model_defaults",
]
