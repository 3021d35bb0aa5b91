"""A run directory as one object: its config, status, checkpoints, model, dataset and artifacts.

A run directory (what :func:`vaelens.train.train` writes) holds ``config.json``,
``status.json``, ``metrics.jsonl``, ``checkpoints/`` and, once analysed, artifacts such as
``analysis.json``, ``disentanglement.json``, ``result.json`` and ``figures/``.

:meth:`Run.open` reads an existing directory; :meth:`Run.create` describes a new one from a
:class:`TrainConfig` (nothing is written until :func:`~vaelens.train.train` runs it). The
config is read once; :meth:`Run.model` and :meth:`Run.dataset` are built once and cached,
and :func:`~vaelens.train.train` fills both caches with what it trained and trained on,
so that training, analysis and scoring of a run share one model and one dataset load.

A run directory is untrusted input: building its model imports nothing unless asked to.
A model name of the registry (``"beta_vae"``) is built by :func:`vaelens.models.build_model`;
a ``"package.module:Class"`` name, which would import that module and run its code, is
refused with a :class:`ConfigError` before anything is imported unless the caller trusts
it (``trust_code=["package.module:Class"]``, or ``trust_code=True`` for any name: only for
run directories and configs you wrote yourself). See docs/run-directories.md.
"""

from __future__ import annotations

import importlib
import inspect
import json
import types
from collections.abc import Collection
from pathlib import Path
from typing import Any, TypeAlias

import torch
from torch import nn

from vaelens.errors import ArgumentError, CheckpointError, ConfigError, ModelContractError
from vaelens.train.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint
from vaelens.train.checkpoint import restore_model as _restore_model
from vaelens.train.config import TrainConfig, config_from_dict
from vaelens.train.logging import read_status

__all__ = [
    "ARTIFACTS",
    "Run",
    "TrustCode",
    "build_model_from_config",
    "check_model_trust",
    "merge_trust",
    "normalize_trust",
]

#: the artifacts the analysis and the study leave beside the checkpoints
ARTIFACTS = ("analysis.json", "disentanglement.json", "result.json", "figures")


#: what ``trust_code`` accepts: ``"module:attr"`` names whose code may be imported and
#: run, ``True`` for any name (only for code you wrote), ``None``/``False``/``[]`` for none
TrustCode: TypeAlias = bool | Collection[str] | None


def _split_import_name(name: str, where: str) -> tuple[str, str]:
    """``"pkg.mod:Class"`` -> ``("pkg.mod", "Class")``; ConfigError unless both halves are
    dotted identifier paths and no part of the attribute path starts with ``__``."""
    module, _, attr = name.partition(":")
    mod_ok = bool(module) and all(p.isidentifier() for p in module.split("."))
    attr_ok = bool(attr) and all(
        p.isidentifier() and not p.startswith("__") for p in attr.split(".")
    )
    if not (mod_ok and attr_ok):
        raise ConfigError(
            f"{where}: model {name!r}: expected a registered model name or "
            "'package.module:Class' (dotted identifiers, no '__' attributes)"
        )
    return module, attr


def normalize_trust(
    trust_code: TrustCode, *, argument: str = "trust_code"
) -> bool | frozenset[str]:
    """``trust_code`` as ``True`` (any name) or a frozenset of ``"module:attr"`` names.

    Raises :class:`ArgumentError` naming ``argument`` for a bare string (write a list) or a
    name that is not ``"module:attr"``.
    """
    if trust_code is None or trust_code is False:
        return frozenset()
    if trust_code is True:
        return True
    if isinstance(trust_code, (str, bytes)) or not isinstance(trust_code, Collection):
        raise ArgumentError(
            f"{argument}: expected a list of 'module:attr' names or True, got "
            f"{type(trust_code).__name__} {trust_code!r}"
            + (f"; write [{trust_code!r}]" if isinstance(trust_code, str) else "")
        )
    names = []
    for item in trust_code:
        if not isinstance(item, str) or ":" not in item:
            raise ArgumentError(f"{argument}: expected 'module:attr' names, got {item!r}")
        try:
            _split_import_name(item, argument)
        except ConfigError as exc:
            raise ArgumentError(str(exc)) from None
        names.append(item)
    return frozenset(names)


def merge_trust(a: TrustCode, b: TrustCode) -> bool | frozenset[str]:
    """Everything ``a`` or ``b`` trusts."""
    na, nb = normalize_trust(a), normalize_trust(b)
    if na is True or nb is True:
        return True
    return na | nb  # type: ignore[operator]


def check_model_trust(
    name: str, trust_code: TrustCode, *, source: str = "model", what: str = "where it came from"
) -> None:
    """Refuse, before importing anything, a ``"module:attr"`` model name not in ``trust_code``.

    Registry names pass (nothing is imported for them). ``source`` names the file or setting
    the name came from, ``what`` what the user would be trusting (e.g. "this run
    directory"). Raises a one-line :class:`ConfigError`.
    """
    if not isinstance(name, str):
        raise ConfigError(f"{source}: model: expected a string, got {type(name).__name__}")
    if ":" not in name:
        return
    module, _ = _split_import_name(name, source)
    trusted = normalize_trust(trust_code)
    if trusted is True or name in trusted:
        return
    raise ConfigError(
        f"{source}: model {name!r} is not a registered vaelens model; building it would import "
        f"and run code from module {module!r}. If you trust {what}, pass "
        f"trust_code=[{name!r}] (CLI: --trust-code {name})"
    )


def _import_object(path: str, where: str) -> Any:
    """The class (or factory function) ``path`` names; call only once it is trusted."""
    module_name, attr = _split_import_name(path, where)
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
            if isinstance(obj, types.ModuleType):
                raise ConfigError(
                    f"{where}: model {path!r}: {part!r} is a module; expected a class"
                )
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"{where}: model: cannot import {path!r} ({exc})") from None
    is_module_class = inspect.isclass(obj) and issubclass(obj, nn.Module)
    if not (is_module_class or inspect.isfunction(obj)):
        raise ConfigError(
            f"{where}: model {path!r}: expected an nn.Module class (or a Python function "
            f"returning one), got {type(obj).__name__}"
        )
    return obj


def build_model_from_config(
    name: str,
    params: dict[str, Any],
    image_shape: tuple[int, ...] | None,
    n_train: int | None = None,
    *,
    trust_code: TrustCode = None,
    source: str = "model",
    what: str = "where it came from",
) -> nn.Module:
    """Build the model ``name`` (registry name or ``"package.module:Class"``) with ``params``.

    A ``"package.module:Class"`` name is imported only when ``trust_code`` holds it (or is
    ``True``: any name, for code you wrote); otherwise :func:`check_model_trust` raises a
    :class:`ConfigError` naming ``source`` before anything is imported. Registry names are
    built by :func:`vaelens.models.build_model`, which validates ``params``.

    When the constructor takes them and ``params`` does not set them, ``in_channels``
    defaults to the dataset's channel count and ``dataset_size`` (beta-TC-VAE's stratified
    estimator) to the training-set size ``n_train``.
    """
    check_model_trust(name, trust_code, source=source, what=what)
    if not isinstance(params, dict):
        raise ConfigError(
            f"{source}: model hyperparameters: expected a mapping, got {type(params).__name__}"
        )
    kwargs = dict(params)
    if ":" in name:
        factory: Any = _import_object(name, source)
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
    """One run directory. Use :meth:`open` or :meth:`create` rather than the constructor.

    ``trust_code`` (kept as :attr:`trust_code`) lists the ``"module:attr"`` model names this
    run may import and run when it builds its model; ``True`` trusts any name (only for
    run directories you wrote). Registry models need no trust.
    """

    def __init__(
        self, path: str | Path, config: TrainConfig, *, trust_code: TrustCode = None
    ) -> None:
        self.path = Path(path)
        self.config = config
        self.trust_code: bool | frozenset[str] = normalize_trust(trust_code)
        self._model: nn.Module | None = None
        self._dataset: Any | None = None

    @classmethod
    def open(cls, path: str | Path, *, trust_code: TrustCode = None) -> Run:
        """The run in the existing directory ``path`` (its ``config.json`` read now).

        Opening reads JSON only; the model is built (and, for a trusted
        ``"module:attr"`` name, imported) by :meth:`model` / :meth:`load_model`. Raises
        :class:`CheckpointError` naming the path when it is not a run directory and
        :class:`ConfigError` when its config does not validate.
        """
        p = Path(path)
        trust = normalize_trust(trust_code)
        return cls(p, _read_config(p), trust_code=trust)

    @classmethod
    def create(cls, config: TrainConfig | dict[str, Any], *, trust_code: TrustCode = None) -> Run:
        """A run of ``config`` in ``config.out``; writes nothing (:func:`train` does)."""
        if isinstance(config, dict):
            config = config_from_dict(config)
        if not isinstance(config, TrainConfig):
            raise ConfigError(
                f"config: expected a TrainConfig or a dict, got {type(config).__name__}"
            )
        return cls(Path(config.out), config, trust_code=trust_code)

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
        """``"completed"``, ``"stopped"`` (a time budget ran out: run it again to resume),
        ``"running"`` or ``"failed"`` (what the trainer last wrote to
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
        self,
        checkpoint: str | Path | None = None,
        *,
        device: str | torch.device = "cpu",
        trust_code: TrustCode = None,
    ) -> nn.Module:
        """A fresh model (not cached) with the weights of ``checkpoint`` (default: the latest).

        The model named by ``config.json`` and by the checkpoint's sidecar is built only
        from the registry unless the name is trusted (this run's :attr:`trust_code` plus
        ``trust_code``): an untrusted ``"module:attr"`` name in either file raises a
        one-line :class:`ConfigError` naming the file, before anything is imported. Raises
        :class:`CheckpointError` naming the file when there is no checkpoint or its weights
        do not match the model.
        """
        trust = merge_trust(self.trust_code, trust_code)
        config_file = str(self.path / "config.json")
        here = "this run directory"
        path = Path(checkpoint) if checkpoint is not None else self.latest_checkpoint
        if path is None:
            raise CheckpointError(
                f"run directory {self.path}: no checkpoint under {self.path / 'checkpoints'}"
            )
        check_model_trust(self.config.model, trust, source=config_file, what=here)
        ckpt = load_checkpoint(path)
        sidecar = str(ckpt.path)
        info = ckpt.meta.get("model") or {}
        if not isinstance(info, dict):
            raise CheckpointError(
                f"checkpoint {sidecar}: field 'model': expected a mapping, got {type(info).__name__}"
            )
        if "name" in info:
            name, source = info["name"], sidecar
        else:
            name, source = self.config.model, config_file
        build: dict[str, Any] = {"trust_code": trust, "source": source, "what": here}
        if info.get("hparams") is not None:
            model = build_model_from_config(name, info["hparams"], None, **build)
        else:
            shape = info.get("image_shape")
            params = self.config.model_params
            model = build_model_from_config(name, params, tuple(shape) if shape else None, **build)
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
