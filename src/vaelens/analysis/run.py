"""Analyse a trained run directory: ``analysis.json`` and ``figures/`` beside the checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vaelens.analysis.core import analyze
from vaelens.analysis.figures import write_figures
from vaelens.analysis.result import AnalysisResult
from vaelens.analysis.settings import AnalysisSettings
from vaelens.data import load_dataset

__all__ = ["analyze_run", "write_analysis"]


def write_analysis(result: AnalysisResult, out: str | Path) -> Path:
    """Write ``<out>/analysis.json`` (atomic, strict JSON) and ``<out>/figures/*.png``."""
    dest = Path(out)
    dest.mkdir(parents=True, exist_ok=True)
    write_figures(result, dest / "figures")
    return result.save(dest / "analysis.json")


def analyze_run(
    run_dir: str | Path,
    settings: AnalysisSettings | None = None,
    *,
    out: str | Path | None = None,
    **overrides: Any,
) -> Path:
    """Analyse the run in ``run_dir``; return the path of the ``analysis.json`` written.

    The model and dataset come from the run directory; ``settings`` and keyword
    ``overrides`` go to :func:`analyze`. ``out`` defaults to ``run_dir``.
    """
    from vaelens.train import load_run

    rd = Path(run_dir)
    model, config = load_run(rd)
    ds = load_dataset(
        config.dataset,
        config.dataset_source,
        config.dataset_root,
        **dict(config.dataset_params),
    )
    result = analyze(model, ds, settings, **overrides)
    return write_analysis(result, out if out is not None else rd)
