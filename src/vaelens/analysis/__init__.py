"""``vaelens.analyze``: the four causal interventions and the causal metrics on any VAE.

:func:`analyze` (one model and a ground-truth dataset -> :class:`AnalysisResult`, configured
by :class:`AnalysisSettings`), :func:`analyze_run` (a trained run directory ->
``analysis.json`` and ``figures/``), :func:`load_analysis` (an ``analysis.json`` -> the
typed result), :func:`run_controls` (the referee's controls, ``controls=True``; docs/controls.md),
:func:`random_baseline` (the randomly initialised twin analysed beside every
model), :func:`interchange_matrix` (interchange interventions per latent and factor;
docs/interchange.md), :func:`unit_circuits` (the channel sets of each encoder layer that
carry a factor, with path patching; docs/circuits.md), :func:`alignment_search` (a learned
rotation per factor against the best axis-aligned latents; docs/interchange.md) and
:func:`write_figures`.

Imports from: data, train, lens, metrics, stats, errors, io, progress.
"""

from vaelens.analysis.alignment import alignment_search
from vaelens.analysis.circuits import unit_circuits
from vaelens.analysis.controls import (
    decoder_retrain_control,
    draw_latents,
    posterior_source_control,
    recon_normalised_ces,
    run_controls,
)
from vaelens.analysis.core import (
    analyze,
    analyze_network,
    baseline_seed,
    default_layers,
    random_baseline,
)
from vaelens.analysis.figures import write_figures
from vaelens.analysis.interchange import interchange_matrix
from vaelens.analysis.result import (
    SCHEMA_VERSION,
    Alignment,
    AnalysisMeta,
    AnalysisResult,
    CausalGraph,
    Circuits,
    Clusters,
    Controls,
    DecoderRetrainControl,
    FactorGraph,
    Interchange,
    LatentEffects,
    LatentPosterior,
    LayerMetrics,
    Mediation,
    ModelAnalysis,
    Modularity,
    Monosemanticity,
    Polysemanticity,
    PosteriorSourceControl,
    ReconNormalisedCES,
    VQEffects,
    load_analysis,
)
from vaelens.analysis.run import analyze_run, write_analysis
from vaelens.analysis.settings import AnalysisSettings, settings_from

__all__ = [
    "SCHEMA_VERSION",
    "Alignment",
    "AnalysisMeta",
    "AnalysisResult",
    "AnalysisSettings",
    "CausalGraph",
    "Circuits",
    "Clusters",
    "Controls",
    "DecoderRetrainControl",
    "FactorGraph",
    "Interchange",
    "LatentEffects",
    "LatentPosterior",
    "LayerMetrics",
    "Mediation",
    "ModelAnalysis",
    "Modularity",
    "Monosemanticity",
    "Polysemanticity",
    "PosteriorSourceControl",
    "ReconNormalisedCES",
    "VQEffects",
    "alignment_search",
    "analyze",
    "analyze_network",
    "analyze_run",
    "baseline_seed",
    "decoder_retrain_control",
    "default_layers",
    "draw_latents",
    "interchange_matrix",
    "load_analysis",
    "posterior_source_control",
    "random_baseline",
    "recon_normalised_ces",
    "run_controls",
    "settings_from",
    "unit_circuits",
    "write_analysis",
    "write_figures",
]
