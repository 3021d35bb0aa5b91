"""A run directory as one object: its config, status, checkpoints, model, dataset and artifacts.

A run directory (what :func:`vaelens.train.train` writes) holds ``config.json``,
``status.json``, ``metrics.jsonl``, ``checkpoints/`` and, once analysed, artifacts such as
``analysis.json``, ``disentanglement.json``, ``result.json`` and ``figures/``.

:meth:`Run.open` reads an existing directory; :meth:`Run.create` describes a new one from a
:class:`TrainConfig` (nothing is written until :func:`~vaelens.train.train` runs it). The
config is read once; :meth:`Run.model` and :meth:`Run.dataset` are built once and cached,
and :func:`~vaelens.train.train` fills both caches with what it trained and trained on,
so that training, analysis and scoring of a run share one model and one dataset load.
"""

from __future__ import annotations

import importlib
import inspect
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vaelens.errors import CheckpointError, ConfigError, ModelContractError
from vaelens.train.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint
from vaelens.train.checkpoint import restore_model as _restore_model
from vaelens.train.config import TrainConfig, config_from_dict
from vaelens.train.logging import read_status

__all__ = ["ARTIFACTS", "Run", "build_model_from_config"]

#: the artifacts the analysis and the study leave beside the checkpoints
ARTIFACTS = ("analysis.json", "disentanglement.json", "result.json", "figures")


def _import_object(path: str) -> Any:
    module_name, _, attr = path.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"model: cannot import {path!r} ({exc})") from None
    return obj


def build_model_from_config(
    name: str,
    params: dict[str, Any],
    image_shape: tuple[int, ...] | None,
    n_train: int | None = None,
) -> nn.Module:
    """Build the model ``name`` (registry name or ``"package.module:Class"``) with ``params``.

    When the constructor takes them and ``params`` does not set them, ``in_channels``
    defaults to the dataset's channel count and ``dataset_size`` (beta-TC-VAE's stratified
    estimator) to the training-set size ``n_train``.
    """
    kwargs = dict(params)
    if ":" in name:
        factory: Any = _import_object(name)
    else:
        from vaelens.models import build_model, get_model_class

        factory = get_model_class(name)
    try:
        accepted = set(inspect.signature(factory).parameters)
    except (TypeError, ValueError):
        accepted = set()
    if "in_channels" in accepted and image_shape is not None:
        kwargs.setdefault("in_channels", int(image_shape[0]))
    if "dataset_size" in accepted and n_train is not None and kwargs.get("dataset_size") is None:
        kwargs["dataset_size"] = int(n_train)
    model = factory(**kwargs) if ":" in name else build_model(name, **kwargs)
    if not isinstance(model, nn.Module) or not callable(getattr(model, "training_losses", None)):
        raise ModelContractError(
            f"model {name!r}: expected an nn.Module with training_losses(x, step=...)"
        )
    return model


def _read_config(path: Path) -> TrainConfig:
    cfg_path = path / "config.json"
    if not path.is_dir():
        raise CheckpointError(f"run directory {path}: not found")
    if not cfg_path.is_file():
        raise CheckpointError(f"run directory {path}: no config.json (not a vaelens run?)")
    try:
        data = json.loads(cfg_path.read_bytes().decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(
            f"{cfg_path}: not valid JSON ({' '.join(str(exc).split())})"
        ) from None
    return config_from_dict(data, source=str(cfg_path))


class Run:
    """One run directory. Use :meth:`open` or :meth:`create` rather than the constructor."""

    def __init__(self, path: str | Path, config: TrainConfig) -> None:
        self.path = Path(path)
        self.config = config
        self._model: nn.Module | None = None
        self._dataset: Any | None = None

    @classmethod
    def open(cls, path: str | Path) -> Run:
        """The run in the existing directory ``path`` (its ``config.json`` read now).

        Raises :class:`CheckpointError` naming the path when it is not a run directory and
        :class:`ConfigError` when its config does not validate.
        """
        p = Path(path)
        return cls(p, _read_config(p))

    @classmethod
    def create(cls, config: TrainConfig | dict[str, Any]) -> Run:
        """A run of ``config`` in ``config.out``; writes nothing (:func:`train` does)."""
        if isinstance(config, dict):
            config = config_from_dict(config)
        if not isinstance(config, TrainConfig):
            raise ConfigError(
                f"config: expected a TrainConfig or a dict, got {type(config).__name__}"
            )
        return cls(Path(config.out), config)

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, model={self.config.model!r}, status={self.status!r})"

    # ------------------------------------------------------------------ on disk

    @property
    def checkpoints(self) -> list[Path]:
        """Committed checkpoints (JSON sidecar paths), oldest step first."""
        return list_checkpoints(self.path / "checkpoints")

    @property
    def latest_checkpoint(self) -> Path | None:
        """The newest committed checkpoint, or ``None``."""
        return latest_checkpoint(self.path / "checkpoints")

    @property
    def status(self) -> str:
        """``"completed"``, ``"running"`` or ``"failed"`` (what the trainer last wrote to
        ``status.json``), or ``"new"`` when it has written nothing yet."""
        record = read_status(self.path)
        return str(record.get("status", "new")) if isinstance(record, dict) else "new"

    @property
    def status_record(self) -> dict[str, Any]:
        """The whole ``status.json`` (step, total_steps, error, ...), ``{}`` when absent."""
        record = read_status(self.path)
        return record if isinstance(record, dict) else {}

    def artifact(self, name: str) -> Path:
        """The path of the artifact ``name`` beside the checkpoints (e.g. ``"analysis.json"``).

        ``name`` must be a plain file name: no path separator, not ``.`` or ``..``. The file
        need not exist.
        """
        bad = not isinstance(name, str) or name in ("", ".", "..")
        if bad or any(c in name for c in ("/", "\\", "\0")):
            raise ConfigError(
                f"run {self.path}: artifact name {name!r}: expected a plain file name "
                f"(no path separators or '..'), e.g. one of {list(ARTIFACTS)}"
            )
        return self.path / name

    # ------------------------------------------------------------------ model and data

    def dataset(self) -> Any:
        """The run's dataset, loaded once (the config's source, root and parameters)."""
        if self._dataset is None:
            from vaelens.data import load_dataset

            cfg = self.config
            self._dataset = load_dataset(
                cfg.dataset, source=cfg.dataset_source, root=cfg.dataset_root, **cfg.dataset_params
            )
        return self._dataset

    def model(self) -> nn.Module:
        """The trained model, built once: weights of the latest checkpoint, CPU, eval mode.

        After :func:`~vaelens.train.train` this is the model it just trained.
        """
        if self._model is None:
            self._model = self.load_model()
        return self._model

    def load_model(
        self, checkpoint: str | Path | None = None, *, device: str | torch.device = "cpu"
    ) -> nn.Module:
        """A fresh model (not cached) with the weights of ``checkpoint`` (default: the latest).

        Raises :class:`CheckpointError` naming the file when there is no checkpoint or its
        weights do not match the model.
        """
        path = Path(checkpoint) if checkpoint is not None else self.latest_checkpoint
        if path is None:
            raise CheckpointError(
                f"run directory {self.path}: no checkpoint under {self.path / 'checkpoints'}"
            )
        ckpt = load_checkpoint(path)
        info = ckpt.meta.get("model") or {}
        name = info.get("name", self.config.model)
        if info.get("hparams") is not None:
            model = build_model_from_config(name, info["hparams"], None)
        else:
            shape = info.get("image_shape")
            params = self.config.model_params
            model = build_model_from_config(name, params, tuple(shape) if shape else None)
        _restore_model(ckpt, model)
        model.to(device)
        model.eval()
        return model

    def cache(self, *, model: nn.Module | None = None, dataset: Any | None = None) -> None:
        """Set the cached model and/or dataset (what :func:`~vaelens.train.train` used)."""
        if model is not None:
            self._model = model
        if dataset is not None:
            self._dataset = dataset
