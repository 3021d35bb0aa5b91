"""Training: config, data pipeline, checkpoints, the resumable training loop.

``train(config)`` trains a model into a run directory and resumes it when the directory
already holds a checkpoint; ``Run.open(run_dir)`` gives the run's config, status,
checkpoints, model and dataset (``load_run(run_dir)`` rebuilds just the model);
``export_run(run_dir, dest)`` copies a finished run without its optimiser state.

Run directories and configs are untrusted input: a model named ``"package.module:Class"``
in one is imported only when the caller passes ``trust_code=[...]`` naming it (see
:func:`check_model_trust`); registry models need no trust.

Imports from: data, models, errors, io.
"""

from vaelens.train.checkpoint import (
    Checkpoint,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from vaelens.train.config import PRESETS, TrainConfig, config_from_dict, load_config, preset_config
from vaelens.train.data import EpochOrder, TrainingSet, build_training_set
from vaelens.train.export import export_run
from vaelens.train.logging import read_metrics, read_status
from vaelens.train.run import Run, TrustCode, check_model_trust, normalize_trust
from vaelens.train.trainer import (
    RunResult,
    build_model_from_config,
    load_run,
    resolve_device,
    train,
)

__all__ = [
    "PRESETS",
    "Checkpoint",
    "EpochOrder",
    "Run",
    "RunResult",
    "TrainConfig",
    "TrainingSet",
    "TrustCode",
    "build_model_from_config",
    "build_training_set",
    "check_model_trust",
    "config_from_dict",
    "export_run",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "load_config",
    "load_run",
    "normalize_trust",
    "preset_config",
    "read_metrics",
    "read_status",
    "resolve_device",
    "save_checkpoint",
    "train",
]
