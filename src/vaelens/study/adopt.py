"""Adopting finished training: study runs analysed from trained run directories.

``run_study(trained=FOLDER)`` looks in ``FOLDER`` for run directories (each a
``config.json`` beside a checkpoint, e.g. written by ``vaelens export`` or by another
study) whose training settings equal a pending study run's, and copies that training
(its newest checkpoint and ``metrics.jsonl``) into the run's directory before the run
starts, with ``adopted.json`` saying where from (folder, step, the tensors' SHA-256):
training then returns at once (:func:`vaelens.train.train`) and
the run goes on to the analysis. "Equal" is every setting that changes how the model
trains (:data:`vaelens.train.trainer.TRAINING_FIELDS`: model and its parameters, data,
seed, length, optimiser, schedule, stop rule), as its checkpoint records them; not the
run directory, logging and checkpoint cadence, device, threads or ``compile``.

The folder is untrusted input: each ``config.json`` is validated, each checkpoint's size
and SHA-256 are checked before it is copied, and its model is built from the registry
only unless the study's ``trust_code`` names it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from vaelens.errors import CheckpointError, ConfigError
from vaelens.io import atomic_write_bytes, atomic_write_json
from vaelens.study.config import RunSpec
from vaelens.study.job import train_config
from vaelens.train import TrainConfig, config_from_dict, latest_checkpoint
from vaelens.train.export import finished_training, metrics_until
from vaelens.train.trainer import TRAINING_FIELDS, config_differences

__all__ = ["adopt_trained", "find_trained"]


def find_trained(folder: str | Path) -> dict[Path, TrainConfig]:
    """``{run directory: the config it was trained with}`` of the run directories directly
    under ``folder`` (subfolders with a ``config.json``; others are skipped), each checked
    to be finished (:func:`~vaelens.train.export.finished_training`)."""
    root = Path(folder)
    if not root.is_dir():
        raise ConfigError(f"{root}: not a directory (expected a folder of trained run directories)")
    found = {
        sub: finished_training(sub)[1]
        for sub in sorted(root.iterdir())
        if not sub.name.startswith(".") and (sub / "config.json").is_file()
    }
    if not found:
        raise ConfigError(f"{root}: no finished run directories (each a folder with a config.json)")
    return found


def _match(config: TrainConfig, trained: dict[Path, TrainConfig]) -> Path | None:
    saved = {p: c.to_json_dict() for p, c in trained.items()}
    hits = [
        p for p, c in saved.items() if not config_differences(c, config, fields=TRAINING_FIELDS)
    ]
    if len(hits) > 1:
        raise ConfigError(
            f"{hits[0].parent}: {hits[0].name} and {hits[1].name} have the same training settings"
        )
    return hits[0] if hits else None


def _copy_training(src: Path, run_dir: Path, config: TrainConfig) -> None:
    """Copy the finished checkpoint of ``src`` (its tensors checked against the sidecar as
    read) and its training log into ``run_dir``, with an ``adopted.json`` and the study
    run's ``config.json``; the checkpoint's sidecar, the commit marker, last."""
    ckpt, _ = finished_training(src)
    blob = (ckpt.path.parent / ckpt.meta["tensors_file"]).read_bytes()
    if hashlib.sha256(blob).hexdigest() != ckpt.meta["tensors_sha256"]:
        raise CheckpointError(f"checkpoint {ckpt.path}: tensors changed while being adopted")
    dest = run_dir / "checkpoints"
    dest.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(dest / ckpt.meta["tensors_file"], blob)
    log = metrics_until(src, ckpt.step)
    atomic_write_bytes(run_dir / "metrics.jsonl", log.encode("utf-8"))
    record = {"from": str(src), "step": ckpt.step, "tensors_sha256": ckpt.meta["tensors_sha256"]}
    atomic_write_json(run_dir / "adopted.json", record)
    atomic_write_json(run_dir / "config.json", config.to_json_dict())
    atomic_write_json(dest / ckpt.path.name, ckpt.meta, indent=None)


def adopt_trained(
    specs: list[RunSpec], storage: str | Path, trained: dict[Path, TrainConfig]
) -> dict[str, Path]:
    """Copy into ``storage/runs/RUN_ID`` the training of each run of ``specs`` that has
    no committed checkpoint yet and whose training settings a finished run of ``trained``
    (:func:`find_trained` of the folder) shares; returns ``{run_id: the run directory
    adopted}``."""
    adopted: dict[str, Path] = {}
    for spec in specs:
        run_dir = Path(storage) / "runs" / spec.run_id
        if latest_checkpoint(run_dir / "checkpoints") is not None:
            continue
        config = config_from_dict(train_config(spec, run_dir), source=f"study run {spec.run_id}")
        src = _match(config, trained)
        if src is None:
            continue
        run_dir.mkdir(parents=True, exist_ok=True)
        _copy_training(src, run_dir, config)
        adopted[spec.run_id] = src
    return adopted
