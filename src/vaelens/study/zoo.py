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

Each model is a :func:`zoo_job` run by ``run_study``'s executors (a local pool of
processes, or Ray tasks); the driver records the results. Like
:func:`~vaelens.study.runner.run_study` it is resumable (each stage's output in the
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
from vaelens.study.runner import _run_local, _run_ray
from vaelens.study.store import ResultStore

__all__ = ["dlib_scores", "find_zoo_models", "zoo_job", "zoo_study"]

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


JOB = "vaelens.study.zoo:zoo_job"


def zoo_job(spec: dict[str, Any], storage: str) -> dict[str, Any]:
    """One model of a zoo study, in a worker: import, analyse, score; the result dict.

    ``spec``: ``{"run_id", "source", "analysis"}`` (the model's zip or directory, an
    absolute path, and the study's ``[analysis]`` fields). The model is imported into
    ``<storage>/runs/<run_id>`` unless it is there; like :mod:`vaelens.study.job` each
    stage's output is kept, so a run resumes where it stopped and ``result.json`` (written
    last) is returned as it is. An error is raised with its message on one line.
    """
    try:
        return _zoo_run(Path(spec["source"]), Path(storage) / "runs" / spec["run_id"], spec)
    except Exception as exc:
        if exc.args and isinstance(exc.args[0], str):
            exc.args = (" ".join(exc.args[0].split()), *exc.args[1:])
        raise


def _zoo_run(src: Path, run_dir: Path, spec: dict[str, Any]) -> dict[str, Any]:
    from vaelens.study.job import analysis_of, scores_of
    from vaelens.train import Run
    from vaelens.zoo import import_model, read_zoo_info

    result_path = run_dir / "result.json"
    if result_path.is_file():
        return json.loads(result_path.read_text())
    s = StudyAnalysis.model_validate(spec.get("analysis") or {})
    t0 = time.perf_counter()
    if not ((run_dir / "zoo.json").is_file() and (run_dir / "status.json").is_file()):
        import_model(src, run_dir, overwrite=True)
    run = Run.open(run_dir)
    info = read_zoo_info(run_dir)
    t1 = time.perf_counter()
    seed = run.config.seed
    metrics: dict[str, Any] = analysis_of(run, s, seed).scalars()
    metrics.update(scores_of(run, s, seed))
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
    executor: str = "local",
    workers: int | None = None,
    ray_address: str | None = None,
    resources: dict[str, float] | None = None,
) -> dict[str, int]:
    """Import, analyse and score every zoo model in ``folder`` as a study in ``study_dir``.

    ``analysis``: the study's ``[analysis]`` settings (a :class:`StudyAnalysis` or its
    fields; default the study defaults), used for every model with the model's own seed.
    Returns the status counts. ``on_event(kind, run_id, info)`` is called with
    ``"start"`` and ``"done"`` (``info["ok"]``, ``info["error"]``) like ``run_study``'s.

    ``executor``: like :func:`~vaelens.study.runner.run_study`'s, each model a
    :func:`zoo_job`: ``"local"`` (a pool of ``workers`` spawned processes, default one per
    CPU up to the number of models; ``workers=1`` runs in this process) or ``"ray"`` (each
    model a Ray task asking for ``resources``, default ``{"num_cpus": 1, "num_gpus": 0}``,
    on the cluster at ``ray_address`` or a local Ray instance when it is ``None``; the
    folder and ``study_dir`` must then be on storage the cluster's nodes share).
    """
    if executor not in ("local", "ray"):
        raise ConfigError(f"executor: expected 'local' or 'ray', got {executor!r}")
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
        specs = {
            f"zoo-{name}": {
                "run_id": f"zoo-{name}",
                "source": str(src.resolve()),
                "analysis": current["analysis"],
            }
            for name, src in models.items()
        }
        waiting = set(store.pending_ids())
        pending = [rid for rid in specs if rid in waiting]
        storage = str(study_dir.resolve())
        notify = on_event or (lambda *_: None)
        if executor == "ray":
            res = {"num_cpus": 1.0, "num_gpus": 0.0, **(resources or {})}
            _run_ray(store, specs, pending, JOB, storage, res, ray_address, notify)
        else:
            _run_local(store, specs, pending, JOB, storage, workers, notify)
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
