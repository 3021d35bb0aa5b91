"""One run of a study: train, analyse (lens + causal metrics), score (disentanglement), store.

Each stage leaves its output in the run directory, and a stage whose output is there is
not redone, so a run interrupted anywhere resumes where it stopped:

- training resumes from its last checkpoint (``vaelens.train.train``);
- ``analysis.json`` and ``figures/`` come from :func:`vaelens.analysis.analyze_run`;
- ``disentanglement.json`` holds the disentanglement metrics;
- ``result.json`` (written last) holds the scalar summary the driver records: the analysis'
  :meth:`~vaelens.analysis.AnalysisResult.scalars` and the disentanglement scores.

``stage.json`` says which stage the run is in (``train``, ``analyze``, ``metrics``,
``done``) and since when; ``vaelens study status`` reads it beside training's
``status.json`` (step of total). Each stage also prints one line (``RUN_ID: stage``).
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vaelens.analysis import AnalysisResult, load_analysis
from vaelens.io import atomic_write_json
from vaelens.study.config import RunSpec, StudyAnalysis
from vaelens.train import Run

__all__ = ["STAGES", "analysis_of", "execute_run", "read_stage", "scores_of", "train_config"]

#: the stages of a study run, in order
STAGES = ("train", "analyze", "metrics", "done")

#: dataset options that are TrainConfig fields rather than load_dataset keywords
_SOURCE_KEYS = {"source": "dataset_source", "root": "dataset_root"}


def train_config(run: RunSpec, run_dir: Path) -> dict[str, Any]:
    """The training config (a ``TrainConfig`` mapping) of study run ``run`` in ``run_dir``."""
    data: dict[str, Any] = dict(run.train)
    params = {k: v for k, v in run.dataset_options.items() if k not in _SOURCE_KEYS}
    for key, field in _SOURCE_KEYS.items():
        if key in run.dataset_options:
            data[field] = run.dataset_options[key]
    data.update(
        model=run.architecture,
        dataset=run.dataset,
        seed=run.seed,
        out=str(run_dir),
        model_params=dict(run.hparams),
        dataset_params=params,
    )
    return data


def _stage(run_dir: Path, run_id: str, stage: str) -> None:
    """Record and print that run ``run_id`` enters ``stage``."""
    now = datetime.now(UTC).isoformat(timespec="seconds")
    atomic_write_json(run_dir / "stage.json", {"stage": stage, "since": now})
    print(f"{run_id}: {stage}", file=sys.stdout, flush=True)


def read_stage(run_dir: str | Path) -> dict[str, Any] | None:
    """``stage.json`` of a study run (``{"stage", "since"}``), or None when absent or unreadable."""
    try:
        data = json.loads((Path(run_dir) / "stage.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("stage") in STAGES else None


def _train(run: RunSpec, run_dir: Path) -> Run:
    from vaelens.train import config_from_dict, train

    cfg = config_from_dict(train_config(run, run_dir), source=f"study run {run.run_id}")
    # the trust the driver was given (run_study(trust_code=...)), set at dispatch
    trained = train(cfg, progress=False, trust_code=run.trust_code)
    if trained.status != "completed" or trained.run is None:
        raise RuntimeError(f"training ended with status {trained.status!r}")
    return trained.run


def analysis_of(trained: Run, settings: StudyAnalysis, seed: int) -> AnalysisResult:
    """The run's ``analysis.json`` (written now unless there), with ``settings`` and ``seed``."""
    path = trained.artifact("analysis.json")
    if not path.is_file():
        from vaelens.analysis import analyze_run

        analyze_run(trained, settings.for_run(seed))
    return load_analysis(path)


def scores_of(trained: Run, settings: StudyAnalysis, seed: int) -> dict[str, Any]:
    """The run's ``disentanglement.json`` (computed now unless there): the study's metrics."""
    path = trained.artifact("disentanglement.json")
    if path.is_file():
        return json.loads(path.read_text())
    from vaelens.metrics import compute_metrics, representation_fn

    dis = compute_metrics(
        settings.metrics,
        repr_fn=representation_fn(trained.model()),
        dataset=trained.dataset(),
        preset=settings.metrics_preset,
        random_state=seed,
        overrides=settings.metrics_overrides or None,
        num_train=settings.metrics_num_train,
        num_test=settings.metrics_num_test,
    )
    atomic_write_json(path, dis)
    return dis


def execute_run(spec: dict[str, Any], storage: str) -> dict[str, Any]:
    """Run one study run (see the module docstring); returns the driver's result dict.

    ``spec["trust_code"]`` (set by the driver, never by a study file) lists the
    ``"module:attr"`` architectures whose code may be imported. The run's model is built
    once and its dataset loaded once: training hands its
    :class:`~vaelens.train.Run` (with both cached) to the analysis and the scoring.
    """
    run = RunSpec.model_validate(spec)
    run_dir = Path(storage) / "runs" / run.run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    result_path = run_dir / "result.json"
    if result_path.is_file():
        return json.loads(result_path.read_text())
    t0 = time.perf_counter()
    _stage(run_dir, run.run_id, "train")
    trained = _train(run, run_dir)
    t1 = time.perf_counter()
    _stage(run_dir, run.run_id, "analyze")
    metrics: dict[str, Any] = analysis_of(trained, run.analysis, run.seed).scalars()
    _stage(run_dir, run.run_id, "metrics")
    metrics.update(scores_of(trained, run.analysis, run.seed))
    result = {
        "metrics": metrics,
        "train_seconds": t1 - t0,
        "analysis_seconds": time.perf_counter() - t1,
    }
    atomic_write_json(result_path, result)
    _stage(run_dir, run.run_id, "done")
    return json.loads(result_path.read_text())
