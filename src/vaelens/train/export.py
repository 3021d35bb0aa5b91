"""Exported runs: a finished run's training without its optimiser state, to share or ship.

:func:`export_run` writes a run directory of its own: ``config.json``, one weights-only
checkpoint (the model's tensors and RNG states, the sidecar without optimiser state:
about a third of an Adam checkpoint), ``metrics.jsonl`` up to that step, and a
``status.json`` saying "completed". :meth:`Run.open`, ``vaelens analyze`` and
``vaelens metrics`` read it like any run; :func:`~vaelens.train.train` returns at once on
it (its checkpoint is at the configured steps) and refuses, with a one-line error, to
train it further; a study given it (``run_study(trained=...)``) analyses it instead of
training the run of the same settings.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from vaelens.errors import CheckpointError, ConfigError
from vaelens.io import atomic_write_json
from vaelens.train.checkpoint import Checkpoint, load_checkpoint, weights_only
from vaelens.train.config import TrainConfig, config_from_dict
from vaelens.train.logging import write_status
from vaelens.train.run import Run
from vaelens.train.trainer import (
    config_differences,
    finished_status,
    is_finished,
    trained_length,
)

__all__ = ["export_run", "finished_training", "metrics_until"]


def finished_training(run_dir: str | Path) -> tuple[Checkpoint, TrainConfig]:
    """The newest checkpoint of the run in ``run_dir`` and the config it was trained with
    (its sidecar's, validated), when that checkpoint finishes the training
    (:func:`~vaelens.train.trainer.is_finished`). ``status.json`` is not consulted: the
    checkpoint is the record. Raises :class:`ConfigError` naming the run when it is not
    finished or its ``config.json`` and checkpoint disagree on how it trains."""
    run = Run.open(run_dir)
    latest = run.latest_checkpoint
    if latest is None:
        raise ConfigError(f"run directory {run.path}: no checkpoint (expected a finished run)")
    ckpt = load_checkpoint(latest)
    saved = ckpt.meta.get("config")
    if not isinstance(saved, dict):
        raise CheckpointError(f"checkpoint {ckpt.path}: field 'config': expected a mapping")
    config = config_from_dict(saved, source=str(ckpt.path))
    differ = config_differences(run.config.to_json_dict(), config)
    if differ:
        raise ConfigError(
            f"run directory {run.path}: config.json and {latest.name} disagree ({sorted(differ)})"
        )
    if not is_finished(ckpt, config):
        raise ConfigError(
            f"run directory {run.path}: training is not finished (step {ckpt.step} of "
            f"{trained_length(ckpt)}); expected a finished run"
        )
    return ckpt, config


def metrics_until(run_dir: Path, step: int) -> str:
    """The lines of ``run_dir/metrics.jsonl`` up to ``step`` (each checked to be a record)."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return ""
    kept = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise ConfigError(f"{path}: line {n} is not JSON") from None
        if not isinstance(record, dict) or not isinstance(record.get("step"), int):
            raise ConfigError(f"{path}: line {n}: expected a record with an integer 'step'")
        if record["step"] <= step:
            kept.append(line)
    return "".join(f"{line}\n" for line in kept)


def _write_export(
    run_dir: Path, finished: tuple[Checkpoint, TrainConfig], tmp: Path, dest: Path
) -> None:
    ckpt, config = finished
    trained = {**config.to_json_dict(), "out": str(dest)}
    atomic_write_json(tmp / "config.json", trained)
    meta = {"config": trained, "exported": {"from_tensors_sha256": ckpt.meta["tensors_sha256"]}}
    json_path = weights_only(ckpt, tmp / "checkpoints", meta)
    (tmp / "metrics.jsonl").write_text(metrics_until(run_dir, ckpt.step), encoding="utf-8")
    checkpoint = str(dest / "checkpoints" / json_path.name)
    write_status(tmp, "completed", checkpoint=checkpoint, **finished_status(ckpt))


def export_run(run_dir: str | Path, dest: str | Path) -> Path:
    """Write the finished run in ``run_dir`` to the new directory ``dest`` without its
    optimiser state (see the module docstring); returns ``dest``.

    Written into a temporary folder beside ``dest`` and renamed into place, so ``dest``
    exists only complete. Raises :class:`ConfigError` naming the path when ``dest``
    exists or the run is not finished, :class:`~vaelens.errors.CheckpointError` when its
    checkpoint is damaged.
    """
    run_dir, dest = Path(run_dir), Path(dest)
    if dest.exists():
        raise ConfigError(f"{dest}: already exists (expected a new directory to export to)")
    finished = finished_training(run_dir)  # an unfinished run fails before anything is made
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp's 0700 would hide a shared export from others
    try:
        _write_export(run_dir, finished, tmp, dest)
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest
