"""The lens: named hooks on any encode/decode model and the four levels of causal intervention.

1. input interventions (:func:`factor_pairs`, :func:`input_intervention`),
2. latent interventions (:func:`latent_traversal`, :func:`set_latent`),
3. activation patching (:func:`activation_patching`, :func:`attribution_patching`),
4. causal mediation (:func:`mediation`),

plus interchange interventions scored against the real counterfactual images
(:func:`interchange`, :mod:`vaelens.lens.interchange`) and discrete code swaps for VQ-VAEs
(:func:`code_swap_effects`).
Distributed alignment search (interchange on a learned rotated subspace):
:func:`fit_alignment`, :mod:`vaelens.lens.alignment`.

Imports from: data, stats, errors.

Adapters for models written for other libraries: :mod:`vaelens.lens.adapters`.
"""

from vaelens.lens.adapters import ADAPTERS, Adapter, read_image, read_posterior, register_adapter
from vaelens.lens.alignment import (
    AlignmentFit,
    best_axis_units,
    fit_alignment,
    rotated_interchange,
    subspace_interchange,
)
from vaelens.lens.hooks import (
    ActivationCache,
    AdaptedModel,
    Capture,
    FallbackWarning,
    HookPoint,
    Lens,
    latent_mean,
)
from vaelens.lens.interchange import (
    EncoderInterchange,
    InterchangeResult,
    counterfactual_accuracy,
    encoder_interchange,
    factor_direction,
    interchange,
    interchange_share,
    isolation,
    mean_share,
    pair_isolation,
    pair_shares,
    share_and_accuracy,
)
from vaelens.lens.interventions import (
    DEFAULT_VALUES,
    InputInterventionResult,
    factor_pairs,
    input_intervention,
    latent_shift_effects,
    latent_traversal,
    set_latent,
    traversal_grid,
)
from vaelens.lens.mediation import MediationResult, mediation
from vaelens.lens.patching import (
    activation_patching,
    attribution_patching,
    effect_metric,
    layer_patching,
    patch_sweep,
)
from vaelens.lens.vq import (
    code_swap_effects,
    code_swap_outputs,
    codebook_size,
    codebook_vectors,
    encode_codes,
    is_vq,
)

__all__ = [
    "ADAPTERS",
    "DEFAULT_VALUES",
    "ActivationCache",
    "AdaptedModel",
    "Adapter",
    "AlignmentFit",
    "Capture",
    "EncoderInterchange",
    "FallbackWarning",
    "HookPoint",
    "InputInterventionResult",
    "InterchangeResult",
    "Lens",
    "MediationResult",
    "activation_patching",
    "attribution_patching",
    "best_axis_units",
    "code_swap_effects",
    "code_swap_outputs",
    "codebook_size",
    "codebook_vectors",
    "counterfactual_accuracy",
    "effect_metric",
    "encode_codes",
    "encoder_interchange",
    "factor_direction",
    "factor_pairs",
    "fit_alignment",
    "input_intervention",
    "interchange",
    "interchange_share",
    "is_vq",
    "isolation",
    "latent_mean",
    "latent_shift_effects",
    "latent_traversal",
    "layer_patching",
    "mean_share",
    "mediation",
    "pair_isolation",
    "pair_shares",
    "patch_sweep",
    "read_image",
    "read_posterior",
    "register_adapter",
    "rotated_interchange",
    "set_latent",
    "share_and_accuracy",
    "subspace_interchange",
    "traversal_grid",
]
