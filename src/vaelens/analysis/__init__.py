"""``vaelens.analyze``: the four causal interventions and the causal metrics on any VAE.

:func:`analyze` (one model and a ground-truth dataset -> :class:`AnalysisResult`, configured
by :class:`AnalysisSettings`), :func:`analyze_run` (a trained run directory ->
``analysis.json`` and ``figures/``), :func:`load_analysis` (an ``analysis.json`` -> the
typed result), :func:`random_baseline` (the randomly initialised twin analysed beside every
model) and :func:`write_figures`.

Imports from: data, train, lens, metrics, stats, errors, io.
"""

from vaelens.analysis.core import (
    analyze,
    analyze_network,
    baseline_seed,
    default_layers,
    random_baseline,
)
from vaelens.analysis.figures import write_figures
from vaelens.analysis.result import (
    SCHEMA_VERSION,
    AnalysisMeta,
    AnalysisResult,
    CausalGraph,
    Clusters,
    FactorGraph,
    LatentEffects,
    LatentPosterior,
    LayerMetrics,
    Mediation,
    ModelAnalysis,
    Modularity,
    Monosemanticity,
    Polysemanticity,
    VQEffects,
    load_analysis,
)
from vaelens.analysis.run import analyze_run, write_analysis
from vaelens.analysis.settings import AnalysisSettings, settings_from

__all__ = [
    "SCHEMA_VERSION",
    "AnalysisMeta",
    "AnalysisResult",
    "AnalysisSettings",
    "CausalGraph",
    "Clusters",
    "FactorGraph",
    "LatentEffects",
    "LatentPosterior",
    "LayerMetrics",
    "Mediation",
    "ModelAnalysis",
    "Modularity",
    "Monosemanticity",
    "Polysemanticity",
    "VQEffects",
    "analyze",
    "analyze_network",
    "analyze_run",
    "baseline_seed",
    "default_layers",
    "load_analysis",
    "random_baseline",
    "settings_from",
    "write_analysis",
    "write_figures",
]
