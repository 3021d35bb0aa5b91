"""A study over a folder of disentanglement_lib zoo models: import, analyse, score, record.

:func:`zoo_study` takes every model of a folder (each ``<name>.zip`` or ``<name>/``
directory holding a ``model/tfhub/variables/variables.index``), imports it with
:func:`vaelens.zoo.import_model` into ``<study_dir>/runs/zoo-<name>``, runs the analysis
(:func:`vaelens.analysis.analyze_run`) and the disentanglement metrics on it the way a
study run does (:mod:`vaelens.study.job`), and records it in ``<study_dir>/study.sqlite``
(:class:`~vaelens.study.store.ResultStore`), so that ``vaelens report`` and
``vaelens study export`` read it like any study. The library's own scores from the
model's ``zoo.json`` are stored beside ours as ``dlib.<metric>.<score>`` (representation
``mean``; another representation is ``dlib.<representation>.<metric>.<score>``), e.g.
``dlib.mig.discrete_mig`` next to our ``mig.mig``.

Like :func:`~vaelens.study.runner.run_study` it is resumable (each stage's output in the
run directory is kept; completed runs are skipped, failed ones retried only with
``retry_failed``), holds the study lock, and one bad model fails its own run only (its
one-line error recorded), not the study.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vaelens.errors import ConfigError
from vaelens.io import atomic_write_json
from vaelens.study.config import StudyAnalysis
from vaelens.study.lock import study_lock
from vaelens.study.store import ResultStore

__all__ = ["dlib_scores", "find_zoo_models", "zoo_study"]

DB_NAME = "study.sqlite"  # same as vaelens.study.runner.DB_NAME
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")
_INDEX = "model/tfhub/variables/variables.index"


def find_zoo_models(folder: str | Path) -> dict[str, Path]:
    """``{name: path}`` of the models in ``folder``: ``*.zip`` files and directories that
    hold ``model/tfhub/variables/variables.index`` (directly or under one top folder)."""
    root = Path(folder)
    if not root.is_dir():
        raise ConfigError(f"{root}: not a directory (expected a folder of zoo models)")
    found: dict[str, Path] = {}
    for p in sorted(root.iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_file() and p.suffix == ".zip":
            name = p.stem
        elif p.is_dir() and ((p / _INDEX).is_file() or any(p.glob(f"*/{_INDEX}"))):
            name = p.name
        else:
            continue
        if not _NAME.fullmatch(name):
            raise ConfigError(f"{p}: name {name!r} cannot name a run directory")
        if name in found:
            raise ConfigError(f"{root}: two models named {name!r} ({found[name].name}, {p.name})")
        found[name] = p
    if not found:
        raise ConfigError(f"{root}: no zoo models (expected <n>.zip files or model directories)")
    return found


def dlib_scores(info: dict[str, Any]) -> dict[str, Any]:
    """The library's scores of a ``zoo.json`` as ``{"dlib": {metric: {score: value}}}``."""
    out: dict[str, dict[str, Any]] = {}
    for key, scores in sorted(info.get("scores", {}).items()):
        rep, _, metric = key.partition("/")
        name = metric if rep == "mean" else f"{rep}.{metric}"
        values = {
            k: v
            for k, v in scores.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and "elapsed" not in k
        }
        if values:
            out[name] = values
    return {"dlib": out}


def _analysis_settings(analysis: StudyAnalysis | dict[str, Any] | None) -> StudyAnalysis:
    if isinstance(analysis, StudyAnalysis):
        return analysis
    from pydantic import ValidationError

    from vaelens.io import format_validation_error

    try:
        return StudyAnalysis.model_validate(dict(analysis or {}))
    except ValidationError as exc:
        msg = format_validation_error(exc, "zoo study", StudyAnalysis, prefix="analysis")
        raise ConfigError(msg) from None


def _one_run(src: Path, run_dir: Path, s: StudyAnalysis) -> dict[str, Any]:
    """Import (unless done), analyse, score; returns the driver's result dict."""
    from vaelens.analysis import analyze_run, load_analysis
    from vaelens.metrics import compute_metrics, representation_fn
    from vaelens.train import Run
    from vaelens.zoo import import_model, read_zoo_info

    result_path = run_dir / "result.json"
    if result_path.is_file():
        return json.loads(result_path.read_text())
    t0 = time.perf_counter()
    if not ((run_dir / "zoo.json").is_file() and (run_dir / "status.json").is_file()):
        import_model(src, run_dir, overwrite=True)
    run = Run.open(run_dir)
    info = read_zoo_info(run_dir)
    t1 = time.perf_counter()
    path = run.artifact("analysis.json")
    if not path.is_file():
        analyze_run(run, s.for_run(run.config.seed))
    metrics: dict[str, Any] = load_analysis(path).scalars()
    dis_path = run.artifact("disentanglement.json")
    if dis_path.is_file():
        dis = json.loads(dis_path.read_text())
    else:
        dis = compute_metrics(
            s.metrics,
            repr_fn=representation_fn(run.model()),
            dataset=run.dataset(),
            preset=s.metrics_preset,
            random_state=run.config.seed,
            overrides=s.metrics_overrides or None,
            num_train=s.metrics_num_train,
            num_test=s.metrics_num_test,
        )
        atomic_write_json(dis_path, dis)
    metrics.update(dis)
    metrics.update(dlib_scores(info))
    result = {
        "metrics": metrics,
        "train_seconds": t1 - t0,  # the import
        "analysis_seconds": time.perf_counter() - t1,
    }
    atomic_write_json(result_path, result)
    return json.loads(result_path.read_text())


def zoo_study(
    folder: str | Path,
    study_dir: str | Path,
    *,
    analysis: StudyAnalysis | dict[str, Any] | None = None,
    retry_failed: bool = False,
    on_event: Callable[[str, str, dict[str, Any]], None] | None = None,
) -> dict[str, int]:
    """Import, analyse and score every zoo model in ``folder`` as a study in ``study_dir``.

    ``analysis``: the study's ``[analysis]`` settings (a :class:`StudyAnalysis` or its
    fields; default the study defaults), used for every model with the model's own seed.
    Returns the status counts. ``on_event(kind, run_id, info)`` is called with
    ``"start"`` and ``"done"`` (``info["ok"]``, ``info["error"]``) like ``run_study``'s.
    """
    settings = _analysis_settings(analysis)
    models = find_zoo_models(folder)
    study_dir = Path(study_dir)
    study_dir.mkdir(parents=True, exist_ok=True)
    with study_lock(study_dir), ResultStore(study_dir / DB_NAME) as store:
        if store.get_meta("config") is not None:
            raise ConfigError(
                f"{study_dir}: holds a grid study (vaelens study); use another directory"
            )
        saved = store.get_meta("zoo")
        current = {
            "folder": str(Path(folder).resolve()),
            "analysis": settings.model_dump(mode="json"),
        }
        if saved is not None and saved["analysis"] != current["analysis"]:
            raise ConfigError(
                f"{study_dir}: holds a zoo study with other analysis settings; use another "
                "directory or the same settings to resume"
            )
        store.set_meta("zoo", current)
        store.set_meta("name", f"zoo: {Path(folder).name}")
        store.reset_interrupted()
        if retry_failed:
            store.reset_failed()
        known = set(store.runs().run_id)
        for name, src in models.items():
            run_id = f"zoo-{name}"
            if run_id not in known:
                store.add_runs([_planned(run_id, src, settings)])
        pending = set(store.pending_ids())
        for name, src in models.items():
            run_id = f"zoo-{name}"
            if run_id not in pending:
                continue
            if on_event:
                on_event("start", run_id, {})
            store.mark_running(run_id)
            try:
                result = _one_run(src, study_dir / "runs" / run_id, settings)
            except Exception as exc:  # one model's failure is its run's, not the study's
                error = " ".join(f"{type(exc).__name__}: {exc}".split())
                store.mark_failed(run_id, error)
                if on_event:
                    on_event("done", run_id, {"ok": False, "error": error})
                continue
            _record(store, run_id, result)
            if on_event:
                on_event("done", run_id, {"ok": True})
        return store.counts()


def _planned(run_id: str, src: Path, settings: StudyAnalysis) -> dict[str, Any]:
    """The runs-table row of a model, from its gin file (read now, nothing written)."""
    from vaelens.errors import CheckpointError, DatasetError
    from vaelens.zoo.archive import TRAIN_GIN, read_model
    from vaelens.zoo.gin import parse_gin
    from vaelens.zoo.importer import zoo_settings

    row: dict[str, Any] = {
        "run_id": run_id,
        "architecture": "unknown",
        "dataset": "unknown",
        "seed": 0,
        "hparams": {},
        "config": {"zoo_source": str(src.resolve()), "analysis": settings.model_dump(mode="json")},
        "run_dir": str(Path("runs") / run_id),
    }
    try:
        files = read_model(src)
        s = zoo_settings(parse_gin(files.gin, f"{files.source}: {TRAIN_GIN}"), files.source)
    except (CheckpointError, ConfigError, DatasetError):
        return row  # the run fails with the same error when it runs
    params = {k: v for k, v in s["model_params"].items() if k not in ("backbone", "likelihood")}
    row.update(architecture=s["model"], dataset=s["dataset"], seed=s["seed"], hparams=params)
    return row


def _record(store: ResultStore, run_id: str, result: dict[str, Any]) -> None:
    store.mark_completed(
        run_id,
        result.get("metrics", {}),
        train_seconds=result.get("train_seconds"),
        analysis_seconds=result.get("analysis_seconds"),
    )
