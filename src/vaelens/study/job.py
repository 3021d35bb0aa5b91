"""One run of a study: train, analyse (lens + causal metrics), score (disentanglement), store.

Each stage leaves its output in the run directory, and a stage whose output is there is
not redone, so a run interrupted anywhere resumes where it stopped:

- training resumes from its last checkpoint (``vaelens.train.train``);
- ``analysis.json`` and ``figures/`` come from :func:`vaelens.analysis.analyze_run`;
- ``disentanglement.json`` holds the disentanglement metrics;
- ``result.json`` (written last) holds the scalar summary the driver records: the analysis'
  :meth:`~vaelens.analysis.AnalysisResult.scalars` and the disentanglement scores.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from vaelens.analysis import load_analysis
from vaelens.io import atomic_write_json
from vaelens.study.config import RunSpec

__all__ = ["execute_run"]

#: dataset options that are TrainConfig fields rather than load_dataset keywords
_SOURCE_KEYS = {"source": "dataset_source", "root": "dataset_root"}


def _train_config(run: RunSpec, run_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = dict(run.train)
    data.pop("sleep", None)
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


def execute_run(spec: dict[str, Any], storage: str) -> dict[str, Any]:
    """Run one study run (see the module docstring); returns the driver's result dict."""
    from vaelens.train import config_from_dict, load_run, train

    run = RunSpec.model_validate(spec)
    run_dir = Path(storage) / "runs" / run.run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    result_path = run_dir / "result.json"
    if result_path.is_file():
        return json.loads(result_path.read_text())

    t0 = time.perf_counter()
    cfg = config_from_dict(_train_config(run, run_dir), source=f"study run {run.run_id}")
    trained = train(cfg, progress=False)
    if trained.status != "completed":
        raise RuntimeError(f"training ended with status {trained.status!r}")
    train_seconds = time.perf_counter() - t0

    t1 = time.perf_counter()
    analysis_path = run_dir / "analysis.json"
    if not analysis_path.is_file():
        from vaelens.analysis import analyze_run

        analyze_run(run_dir, run.analysis.for_run(run.seed))
    analysis = load_analysis(analysis_path)

    dis_path = run_dir / "disentanglement.json"
    if dis_path.is_file():
        dis = json.loads(dis_path.read_text())
    else:
        from vaelens.data import load_dataset
        from vaelens.metrics import compute_metrics, representation_fn

        model, tcfg = load_run(run_dir)
        dataset = load_dataset(
            tcfg.dataset, source=tcfg.dataset_source, root=tcfg.dataset_root, **tcfg.dataset_params
        )
        dis = compute_metrics(
            run.analysis.metrics,
            repr_fn=representation_fn(model),
            dataset=dataset,
            preset=run.analysis.metrics_preset,
            random_state=run.seed,
            overrides=run.analysis.metrics_overrides or None,
            num_train=run.analysis.metrics_num_train,
            num_test=run.analysis.metrics_num_test,
        )
        atomic_write_json(dis_path, dis)
    analysis_seconds = time.perf_counter() - t1

    metrics: dict[str, Any] = analysis.scalars()
    metrics.update(dis)
    result = {
        "metrics": metrics,
        "train_seconds": train_seconds,
        "analysis_seconds": analysis_seconds,
    }
    atomic_write_json(result_path, result)
    return json.loads(result_path.read_text())
