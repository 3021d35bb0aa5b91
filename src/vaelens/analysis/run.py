"""Analyse a trained run directory: ``analysis.json`` and ``figures/`` beside the checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vaelens.analysis.core import analyze
from vaelens.analysis.figures import write_figures
from vaelens.data import load_dataset
from vaelens.io import atomic_write_json

__all__ = ["analyze_run"]


def analyze_run(
    run_dir: str | Path,
    *,
    n_samples: int | None = None,
    seed: int = 0,
    out: str | Path | None = None,
    **options: Any,
) -> Path:
    """Analyse the run in ``run_dir``; return the path of the ``analysis.json`` written.

    ``load_run(run_dir)`` rebuilds the model; the dataset comes from its config
    (``dataset``, ``dataset_source``, ``dataset_root``, ``dataset_params``). Writes
    ``<out>/analysis.json`` (atomic, strict JSON) and ``<out>/figures/*.png``; ``out``
    defaults to ``run_dir``. ``n_samples`` defaults to :func:`analyze`'s default; other
    keyword ``options`` (``values``, ``baseline``, ``layers``, ...) go to :func:`analyze`.
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
    kwargs: dict[str, Any] = dict(options)
    if n_samples is not None:
        kwargs["n_samples"] = int(n_samples)
    result = analyze(model, ds, seed=seed, **kwargs)
    dest = Path(out) if out is not None else rd
    dest.mkdir(parents=True, exist_ok=True)
    write_figures(result, dest / "figures")
    path = dest / "analysis.json"
    atomic_write_json(path, result.to_dict())
    return path
