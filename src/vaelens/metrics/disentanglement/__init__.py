"""Disentanglement metrics that agree with disentanglement_lib: DCI, MIG, SAP, FactorVAE,
BetaVAE, IRS and modularity/explicitness, with a registry and :func:`compute_metrics`.

See docs/metrics.md for the protocols, every difference from disentanglement_lib and the
fast-DCI benchmark.
"""

from vaelens.metrics.disentanglement._utils import histogram_discretize, sample_codes
from vaelens.metrics.disentanglement.beta_vae import beta_vae_score
from vaelens.metrics.disentanglement.dci import (
    completeness,
    dci,
    disentanglement,
    importance_matrix,
)
from vaelens.metrics.disentanglement.factor_vae import factor_vae_score
from vaelens.metrics.disentanglement.irs import irs, irs_matrix
from vaelens.metrics.disentanglement.mig import mig, mutual_info_matrix
from vaelens.metrics.disentanglement.modularity import (
    modularity,
    modularity_explicitness,
    modularity_score,
)
from vaelens.metrics.disentanglement.registry import (
    METRICS,
    PRESETS,
    SAMPLE_SIZES,
    MetricSpec,
    compute_metrics,
)
from vaelens.metrics.disentanglement.sap import sap, sap_score_matrix

__all__ = [
    "METRICS",
    "PRESETS",
    "SAMPLE_SIZES",
    "MetricSpec",
    "beta_vae_score",
    "completeness",
    "compute_metrics",
    "dci",
    "disentanglement",
    "factor_vae_score",
    "histogram_discretize",
    "importance_matrix",
    "irs",
    "irs_matrix",
    "mig",
    "modularity",
    "modularity_explicitness",
    "modularity_score",
    "mutual_info_matrix",
    "sample_codes",
    "sap",
    "sap_score_matrix",
]
