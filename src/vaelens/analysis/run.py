"""Analyse a trained run directory: ``analysis.json`` and ``figures/`` beside the checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vaelens.analysis.core import analyze
from vaelens.analysis.figures import write_figures
from vaelens.analysis.result import AnalysisResult
from vaelens.analysis.settings import AnalysisSettings
from vaelens.train import Run

__all__ = ["analyze_run", "write_analysis"]


def write_analysis(result: AnalysisResult, out: str | Path) -> Path:
    """Write ``<out>/analysis.json`` (atomic, strict JSON) and ``<out>/figures/*.png``."""
    dest = Path(out)
    dest.mkdir(parents=True, exist_ok=True)
    write_figures(result, dest / "figures")
    return result.save(dest / "analysis.json")


def analyze_run(
    run: str | Path | Run,
    settings: AnalysisSettings | None = None,
    *,
    out: str | Path | None = None,
    **overrides: Any,
) -> Path:
    """Analyse a trained run; return the path of the ``analysis.json`` written.

    ``run``: a run directory or an open :class:`~vaelens.train.Run` (whose cached model and
    dataset are used, so a study run builds and loads them once). ``settings`` and keyword
    ``overrides`` go to :func:`analyze`. ``out`` defaults to the run directory.
    """
    r = run if isinstance(run, Run) else Run.open(run)
    result = analyze(r.model(), r.dataset(), settings, **overrides)
    return write_analysis(result, out if out is not None else r.path)
