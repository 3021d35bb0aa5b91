"""Running a study: plan, skip what is done, resume what is half done, record everything.

The driver owns the SQLite store; workers (processes of a local pool, or Ray tasks) run
one run each and send back a small result dict, which the driver records. A study can be
killed at any moment and started again with the same command:

- ``completed`` runs are not redone;
- ``running`` runs (the driver died under them) go back to ``pending`` and their training
  resumes from its last checkpoint in the run directory;
- ``failed`` runs keep their error and are skipped unless ``retry_failed``.

The job a worker runs is named by an import string (``"module:function"``) so that it can
cross process and machine boundaries; it takes ``(run_spec: dict, storage_dir: str)`` and
returns ``{"metrics": {...}, "train_seconds": float, "analysis_seconds": float}``. The job
name comes from the caller's code (``run_study(job=...)``), never from a study file.

A study file is untrusted input: an architecture named ``"package.module:Class"`` is
refused before anything is created unless ``run_study(trust_code=[...])`` names it; the
driver then puts that trust into each run's :class:`RunSpec` at dispatch (a study file
cannot set it), and the worker passes it to :func:`vaelens.train.train`.
"""

from __future__ import annotations

import importlib
import os
import time
import traceback
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from vaelens.errors import ConfigError
from vaelens.io import atomic_write_json
from vaelens.study.adopt import adopt_trained, find_trained
from vaelens.study.config import RunSpec, StudyConfig, plan_runs, study_config_from_dict
from vaelens.study.lock import study_lock
from vaelens.study.store import ResultStore
from vaelens.train.config import TrainConfig
from vaelens.train.run import TrustCode, check_model_trust, normalize_trust

__all__ = ["DEFAULT_JOB", "check_study_trust", "run_study", "study_status"]

DEFAULT_JOB = "vaelens.study.job:execute_run"
DB_NAME = "study.sqlite"


def _resolve(job: str) -> Callable[[dict[str, Any], str], dict[str, Any]]:
    module, _, name = job.partition(":")
    if not name:
        raise ConfigError(f"job: expected 'module:function', got {job!r}")
    return getattr(importlib.import_module(module), name)


def _call_job(job: str, spec: dict[str, Any], storage: str, threads: int) -> dict[str, Any]:
    """Worker side: run one job, never raise (the error travels back as data)."""
    try:
        import torch

        torch.set_num_threads(max(1, threads))
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    try:
        out = _resolve(job)(spec, storage)
        return {"ok": True, **out}
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        tb = traceback.format_exc(limit=8)
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": tb}


def _record(store: ResultStore, run_id: str, result: dict[str, Any]) -> None:
    if result.get("ok"):
        store.mark_completed(
            run_id,
            result.get("metrics", {}),
            train_seconds=result.get("train_seconds"),
            analysis_seconds=result.get("analysis_seconds"),
        )
    else:
        store.mark_failed(run_id, result.get("error", "unknown error"))


def _open_study(cfg: StudyConfig, study_dir: Path) -> tuple[ResultStore, dict[str, RunSpec]]:
    store = ResultStore(study_dir / DB_NAME)
    saved = store.get_meta("config")
    current = cfg.model_dump(mode="json")
    if saved is not None and saved != current:
        old = study_config_from_dict(saved)
        diff = sorted(k for k in current if current[k] != old.model_dump(mode="json").get(k))
        store.close()
        raise ConfigError(
            f"{study_dir}: holds a study with a different config (fields {diff}); "
            "use another directory or the same config to resume"
        )
    store.set_meta("config", current)
    store.set_meta("name", cfg.name)
    atomic_write_json(study_dir / "study.json", current)
    specs = {s.run_id: s for s in plan_runs(cfg)}
    store.add_runs(
        [
            {
                "run_id": s.run_id,
                "architecture": s.architecture,
                "dataset": s.dataset,
                "seed": s.seed,
                "hparams": s.hparams,
                "config": s.model_dump(mode="json", exclude={"trust_code"}),
                "run_dir": str(Path("runs") / s.run_id),
            }
            for s in specs.values()
        ]
    )
    store.reset_interrupted()
    return store, specs


def run_study(
    cfg: StudyConfig,
    study_dir: str | Path,
    *,
    executor: str = "local",
    workers: int | None = None,
    ray_address: str | None = None,
    storage: str | Path | None = None,
    retry_failed: bool = False,
    job: str = DEFAULT_JOB,
    max_runs: int | None = None,
    on_event: Callable[[str, str, dict[str, Any]], None] | None = None,
    trust_code: TrustCode = None,
    trained: str | Path | None = None,
) -> dict[str, int]:
    """Run (or resume) every pending run of ``cfg`` in ``study_dir``; returns the status counts.

    ``executor``: ``"local"`` (a pool of ``workers`` processes; ``workers=1`` runs in this
    process) or ``"ray"`` (each run a Ray task with ``cfg.resources``, on the cluster at
    ``ray_address``, or a local Ray instance when it is ``None``). ``storage``: where run
    directories go (a path every worker can reach; default ``study_dir``). ``max_runs``
    stops after that many runs have been started (for tests and partial sweeps).

    ``on_event(kind, run_id, info)`` hears ``"plan"`` once (``info``: ``pending``, ``total``,
    and with ``trained`` the number ``adopted``; ``run_id`` empty), ``"adopt"``
    (``info["from"]``) for each run whose training comes from ``trained``, then
    ``"start"`` and ``"done"`` (``info["ok"]``, ``info["error"]``) per run.

    ``trained``: a folder of finished run directories (e.g. from ``vaelens export``): a
    pending run with no checkpoint yet whose training settings one of them shares takes
    its training instead of training (:mod:`vaelens.study.adopt`), then is analysed.

    ``trust_code``: the ``"module:attr"`` architectures whose code the workers may import
    and run (``True``: any, for study files you wrote). An architecture with a ``:`` that
    it does not name raises a one-line :class:`ConfigError` before the study directory is
    created; the trust reaches each worker in its run spec.

    One driver at a time: the study directory is locked for the call
    (:func:`vaelens.study.lock.study_lock`); a second driver gets a one-line
    :class:`~vaelens.errors.StudyLockedError` naming the holder's pid.
    """
    if executor not in ("local", "ray"):
        raise ConfigError(f"executor: expected 'local' or 'ray', got {executor!r}")
    study_dir = Path(study_dir)
    _resolve(job)  # fail early on a bad job name (it comes from code, not from the file)
    trust = normalize_trust(trust_code)
    _check_before_creating(cfg, trust)
    # a bad folder fails before the study directory is created
    found = find_trained(trained) if trained is not None else None
    study_dir.mkdir(parents=True, exist_ok=True)
    with study_lock(study_dir):
        return _drive(cfg, study_dir, executor, workers, ray_address, storage, retry_failed,
                      job, max_runs, on_event, trust, found)  # fmt: skip


def check_study_trust(cfg: StudyConfig, trust_code: TrustCode, *, source: str) -> None:
    """Refuse an architecture named ``"module:attr"`` that ``trust_code`` does not trust."""
    for arch in cfg.architectures:
        check_model_trust(
            arch, trust_code, source=f"{source}: architectures", what="this study config"
        )


def _check_before_creating(cfg: StudyConfig, trust: bool | frozenset[str]) -> None:
    """What can be checked before the study directory exists (nothing is created on failure)."""
    from vaelens.train.config import check_train_section

    check_study_trust(cfg, trust, source=f"study {cfg.name}")
    # a StudyConfig built in code skipped study_config_from_dict: check [train] before any run
    check_train_section(cfg.train, source=f"study {cfg.name}")


def _dispatch(spec: RunSpec, trust: bool | frozenset[str]) -> dict[str, Any]:
    """What a worker receives: the run's spec with the driver's trust (never the file's)."""
    wire: bool | list[str] = True if trust is True else sorted(trust)  # type: ignore[arg-type]
    return spec.model_copy(update={"trust_code": wire}).model_dump(mode="json")


def _drive(
    cfg: StudyConfig,
    study_dir: Path,
    executor: str,
    workers: int | None,
    ray_address: str | None,
    storage: str | Path | None,
    retry_failed: bool,
    job: str,
    max_runs: int | None,
    on_event: Callable[[str, str, dict[str, Any]], None] | None,
    trust: bool | frozenset[str],
    trained: dict[Path, TrainConfig] | None,
) -> dict[str, int]:
    """The driver's work, under the study lock: open the store, adopt finished training,
    run what is pending."""
    store, planned = _open_study(cfg, study_dir)
    specs = {rid: _dispatch(spec, trust) for rid, spec in planned.items()}
    try:
        if retry_failed:
            store.reset_failed()
        pending = [rid for rid in store.pending_ids() if rid in specs]
        if max_runs is not None:
            pending = pending[:max_runs]
        store_dir = str(Path(storage) if storage is not None else study_dir)
        notify = on_event or (lambda *_: None)
        todo = [planned[r] for r in pending]
        adopted = adopt_trained(todo, store_dir, trained) if trained is not None else {}
        plan = {"pending": len(pending), "total": len(specs)}
        notify("plan", "", {**plan, "adopted": len(adopted)} if trained is not None else plan)
        for rid, src in adopted.items():
            notify("adopt", rid, {"from": str(src)})
        if executor == "ray":
            _run_ray(store, specs, pending, job, store_dir, cfg.resources, ray_address, notify)
        else:
            _run_local(store, specs, pending, job, store_dir, workers, notify)
        return store.counts()
    finally:
        store.close()


def _threads_per_worker(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // workers)


def _run_local(
    store: ResultStore,
    specs: dict[str, dict[str, Any]],
    pending: list[str],
    job: str,
    storage: str,
    workers: int | None,
    notify: Callable[[str, str, dict[str, Any]], None],
) -> None:
    n = workers or max(1, min(len(pending), (os.cpu_count() or 1)))
    threads = _threads_per_worker(n)
    if n == 1:
        for rid in pending:
            store.mark_running(rid)
            notify("start", rid, {})
            t0 = time.time()
            result = _call_job(job, specs[rid], storage, threads)
            _record(store, rid, result)
            notify("done", rid, {**result, "wall": time.time() - t0})
        return
    ctx = get_context("spawn")
    with ProcessPoolExecutor(max_workers=n, mp_context=ctx) as pool:
        queue = list(pending)
        running: dict[Future[dict[str, Any]], str] = {}
        while queue or running:
            while queue and len(running) < n:
                rid = queue.pop(0)
                store.mark_running(rid)
                notify("start", rid, {})
                fut = pool.submit(_call_job, job, specs[rid], storage, threads)
                running[fut] = rid
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in done:
                rid = running.pop(fut)
                try:
                    result = fut.result()
                except Exception as exc:  # a worker process died
                    result = {"ok": False, "error": f"worker died: {type(exc).__name__}: {exc}"}
                _record(store, rid, result)
                notify("done", rid, result)


def _run_ray(
    store: ResultStore,
    specs: dict[str, dict[str, Any]],
    pending: list[str],
    job: str,
    storage: str,
    resources: dict[str, float],
    address: str | None,
    notify: Callable[[str, str, dict[str, Any]], None],
) -> None:
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "executor 'ray' needs the ray package: pip install 'vaelens[ray]'"
        ) from None
    started_here = not ray.is_initialized()
    if started_here:
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if address:
            kwargs["address"] = address
        else:
            kwargs["num_cpus"] = max(1, os.cpu_count() or 1)
        ray.init(**kwargs)
    try:
        num_cpus = float(resources.get("num_cpus", 1.0))
        num_gpus = float(resources.get("num_gpus", 0.0))
        task = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus, max_retries=0)(_call_job)
        refs = {}
        for rid in pending:
            store.mark_running(rid)
            notify("start", rid, {})
            refs[task.remote(job, specs[rid], storage, max(1, int(num_cpus)))] = rid
        remaining = list(refs)
        while remaining:
            done, remaining = ray.wait(remaining, num_returns=1)
            for ref in done:
                rid = refs[ref]
                try:
                    result = ray.get(ref)
                except Exception as exc:  # the task or its node died
                    result = {"ok": False, "error": f"ray task failed: {type(exc).__name__}: {exc}"}
                _record(store, rid, result)
                notify("done", rid, result)
    finally:
        if started_here:
            ray.shutdown()


def _run_progress(run_dir: Path) -> dict[str, Any]:
    """Stage and training step of one run directory (None where it has not got there)."""
    from vaelens.study.job import read_stage
    from vaelens.train.logging import read_status

    stage = read_stage(run_dir) or {}
    train = read_status(run_dir) or {}
    return {
        "stage": stage.get("stage"),
        "since": stage.get("since"),
        "step": train.get("step"),
        "total_steps": train.get("total_steps"),
    }


def study_status(study_dir: str | Path, *, storage: str | Path | None = None) -> dict[str, Any]:
    """Progress of the study in ``study_dir``: counts by status, the failed runs' errors, and
    ``runs``: per run its status, stage (:data:`vaelens.study.job.STAGES`) and training
    step of total, read from its run directory (under ``storage`` when the runs were
    written there, else under ``study_dir``)."""
    path = Path(study_dir) / DB_NAME
    if not path.is_file():
        raise ConfigError(f"{study_dir}: no study here (missing {DB_NAME})")
    root = Path(storage) if storage is not None else Path(study_dir)
    with ResultStore(path) as store:
        runs = store.runs()
        failed = runs[runs.status == "failed"][["run_id", "error"]].to_dict("records")
        per_run = [
            {"run_id": r.run_id, "status": r.status, **_run_progress(root / "runs" / r.run_id)}
            for r in runs.itertuples()
        ]
        return {
            "name": store.get_meta("name"),
            "counts": store.counts(),
            "failed": failed,
            "total": len(runs),
            "runs": per_run,
        }
