"""``vaelens.analyze``: the four causal interventions and the causal metrics on any VAE.

:func:`analyze` (one model and a ground-truth dataset -> :class:`AnalysisResult`),
:func:`analyze_run` (a trained run directory -> ``analysis.json`` and ``figures/``),
:func:`random_baseline` (the randomly initialised twin analysed beside every model) and
:func:`write_figures`.
"""

from vaelens.analysis.core import AnalysisResult, analyze, default_layers, random_baseline
from vaelens.analysis.figures import write_figures
from vaelens.analysis.run import analyze_run

__all__ = [
    "AnalysisResult",
    "analyze",
    "analyze_run",
    "default_layers",
    "random_baseline",
    "write_figures",
]
