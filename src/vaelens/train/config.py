"""Training configuration: one validated pydantic model, loadable from TOML or YAML.

The fields are those of ``vaelens train`` (``--model --dataset --steps --seed --out``)
plus the optimisation, logging and hardware settings. A config file uses the same field
names at its top level, e.g. (TOML)::

    model = "beta_vae"
    dataset = "dsprites"
    dataset_source = "procedural"
    epochs = 50
    model_params = { beta = 4.0 }

An optional top-level ``preset = "roy2025"`` starts from :data:`PRESETS` ``["roy2025"]`` and
lets the file override any field (``"seeds"``, its old name, is still accepted: see
:data:`OLD_PRESET_NAMES`). Unknown keys raise :class:`~vaelens.errors.ConfigError`
naming the key and the file.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from vaelens.errors import ConfigError
from vaelens.io import format_validation_error, read_config_file
from vaelens.models.registry import ROY2025_PRESET

__all__ = [
    "ADAM_BETAS",
    "GRID_FIELDS",
    "OLD_PRESET_NAMES",
    "PRESETS",
    "TrainConfig",
    "check_train_section",
    "config_from_dict",
    "load_config",
    "preset_config",
]

#: the default ``adam_betas``: Adam's own (beta1, beta2), also disentanglement_lib's
ADAM_BETAS: tuple[float, float] = (0.9, 0.999)

#: Named starting points. ``variant_params[model]`` is merged into ``model_params``.
PRESETS: dict[str, dict[str, Any]] = {
    # The set-up of the extended version of Roy (2025) (section "Training parameters"): Adam
    # lr 1e-3 with cosine decay, weight decay 1e-5, batch 64, 50 epochs; beta = 4 (beta-VAE),
    # gamma = 40 and a discriminator lr of 5e-5 (FactorVAE).
    "roy2025": {
        "lr": 1e-3,
        "batch_size": 64,
        "epochs": 50,
        "weight_decay": 1e-5,
        "schedule": "cosine",
        "variant_params": ROY2025_PRESET,
    },
    # disentanglement_lib's budget (Locatello et al. 2019): its 4-conv + 256-unit network,
    # Adam lr 1e-4 (beta1 0.9, beta2 0.999, eps 1e-8), batch 64, 300,000 steps, constant lr.
    "dlib": {
        "lr": 1e-4,
        "batch_size": 64,
        "steps": 300_000,
        "schedule": "constant",
        "checkpoint_every": 10_000,
        "variant_params": {name: {"backbone": "dlib"} for name in ROY2025_PRESET},
    },
}

#: old preset names, still accepted: ``"seeds"`` was the name of ``"roy2025"``
OLD_PRESET_NAMES: dict[str, str] = {"seeds": "roy2025"}


class TrainConfig(BaseModel):
    """Everything :func:`vaelens.train.train` needs; JSON-serialisable (``model_dump(mode="json")``).

    Exactly one of ``steps`` / ``epochs`` sets the run length (``steps`` = optimiser steps;
    an epoch is ``n_train // batch_size`` steps, the last partial batch dropped). With
    neither, the run is 1000 steps.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)

    # --- the CLI's fields
    model: str = Field("beta_vae", description="registry name, or 'package.module:Class'")
    dataset: str = Field("dsprites", description="registry name of the dataset")
    steps: int | None = Field(None, ge=1, description="optimiser steps (or use epochs)")
    epochs: int | None = Field(None, ge=1, description="passes over the training set")
    seed: int = Field(0, ge=0, description="seeds weights, sampling noise and data order")
    out: Path = Field(Path("runs/run"), description="run directory")
    # --- model and data
    model_params: dict[str, Any] = Field(default_factory=dict, description="build_model kwargs")
    dataset_source: str = Field("auto", description="'auto', 'procedural' or 'file'")
    dataset_root: Path | None = Field(None, description="directory of the official files")
    dataset_params: dict[str, Any] = Field(default_factory=dict, description="load_dataset kwargs")
    n_train: int | None = Field(None, ge=1, description="training subset size (None: all)")
    # --- optimisation
    batch_size: int = Field(64, ge=1)
    lr: float = Field(1e-3, gt=0, allow_inf_nan=False)
    weight_decay: float = Field(0.0, ge=0, allow_inf_nan=False)
    adam_betas: tuple[float, float] = Field(
        ADAM_BETAS, description="Adam's (beta1, beta2) of the main optimiser, each in [0, 1)"
    )
    schedule: Literal["constant", "cosine"] = "constant"
    warmup_steps: int = Field(0, ge=0, description="linear learning-rate warm-up steps")
    # --- stop rule (vaelens.train.stopping.PlateauRule)
    plateau_patience: int = Field(
        0, ge=0, description="stop when plateau_term has not improved for this many steps (0: off)"
    )
    plateau_rtol: float = Field(
        0.01, ge=0, lt=1, allow_inf_nan=False, description="relative improvement that counts"
    )
    plateau_term: str = Field("rec", description="loss term the plateau rule watches")
    # --- bookkeeping
    checkpoint_every: int = Field(1000, ge=0, description="steps between checkpoints (0: end only)")
    keep_checkpoints: int = Field(2, ge=1, description="most recent checkpoints kept")
    log_every: int = Field(50, ge=1, description="steps averaged into one metrics.jsonl line")
    tensorboard: bool = False
    wandb: bool = False
    # --- hardware
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # autocast: "bf16" or "fp16" (+ GradScaler) on CUDA; on the CPU only "bf16", whose speed
    # depends on the CPU's bf16 support (docs/training.md: 1.5x fp32 on an AVX512-BF16 EPYC)
    amp: Literal["off", "bf16", "fp16"] = "off"
    # "auto": channels-last (NHWC) weights and batches, the faster layout on CPU and CUDA
    channels_last: bool | Literal["auto"] = "auto"
    compile: bool = False
    num_threads: int | None = Field(None, ge=1, description="torch threads (None: unchanged)")

    @field_validator("amp", mode="before")
    @classmethod
    def _amp_bool(cls, v: Any) -> Any:
        if v is True:
            return "bf16"
        if v is False or v is None:
            return "off"
        return v

    @field_validator("adam_betas")
    @classmethod
    def _betas(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= b < 1.0 for b in v):
            raise ValueError("each of Adam's betas must be in [0, 1)")
        return v

    @model_validator(mode="after")
    def _length(self) -> TrainConfig:
        if self.steps is not None and self.epochs is not None:
            raise ValueError("give either steps or epochs, not both")
        if self.n_train is not None and self.n_train < self.batch_size:
            raise ValueError(
                f"n_train ({self.n_train}) must be at least batch_size ({self.batch_size})"
            )
        return self

    def steps_per_epoch(self, n: int) -> int:
        """Optimiser steps in one pass over ``n`` training images (last partial batch dropped)."""
        return max(n // self.batch_size, 1)

    def total_steps(self, n: int) -> int:
        """Length of the run in optimiser steps for a training set of ``n`` images."""
        if self.steps is not None:
            return self.steps
        if self.epochs is not None:
            return self.epochs * self.steps_per_epoch(n)
        return 1000

    def to_json_dict(self) -> dict[str, Any]:
        """Plain JSON types (paths as strings)."""
        return json.loads(self.model_dump_json())


def _apply_preset(data: dict[str, Any], where: str) -> dict[str, Any]:
    data = dict(data)
    name = data.pop("preset", None)
    if name is None:
        return data
    if isinstance(name, str):
        name = OLD_PRESET_NAMES.get(name, name)
    if name not in PRESETS:
        raise ConfigError(f"{where}: unknown preset {name!r}; expected one of {sorted(PRESETS)}")
    preset = copy.deepcopy(PRESETS[name])
    variant_params = preset.pop("variant_params", {})
    merged = {**preset, **data}
    if "steps" in data and "epochs" not in data:
        merged.pop("epochs", None)
    if "epochs" in data and "steps" not in data:
        merged.pop("steps", None)
    model = merged.get("model", TrainConfig.model_fields["model"].default)
    params = dict(variant_params.get(model, {}))
    params.update(data.get("model_params") or {})
    merged["model_params"] = params
    return merged


#: fields a study's grid sets for each run, never its ``[train]`` section
GRID_FIELDS = ("model", "dataset", "seed", "out")


def _validate(data: Any, source: str, prefix: str = "", hide: tuple[str, ...] = ()) -> TrainConfig:
    where = f"{source}: {prefix}" if prefix else source
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of field names, got {type(data).__name__}")
    try:
        return TrainConfig(**_apply_preset(data, where))
    except ValidationError as exc:
        msg = format_validation_error(
            exc, source, TrainConfig, prefix=prefix, hide=hide, also_known=("preset",)
        )
        raise ConfigError(msg) from None


def config_from_dict(data: dict[str, Any], *, source: str = "config") -> TrainConfig:
    """Validate a mapping of field names (plus an optional ``preset``) into a :class:`TrainConfig`.

    ``source`` names where the mapping came from in error messages.
    """
    return _validate(data, source)


def check_train_section(data: dict[str, Any], *, source: str, prefix: str = "train") -> None:
    """Validate a study's ``[train]`` mapping against :class:`TrainConfig` (same schema as
    ``vaelens train``, without the :data:`GRID_FIELDS`).

    Raises :class:`ConfigError` naming ``source`` and the key as ``prefix.key`` (e.g.
    ``"study.toml: unknown key 'train.lrr'; known keys: ..."``).
    """
    clash = sorted(set(data) & set(GRID_FIELDS)) if isinstance(data, dict) else []
    if clash:
        raise ConfigError(f"{source}: {prefix}: {clash} are set by the grid, not by [{prefix}]")
    _validate(data, source, prefix=prefix, hide=GRID_FIELDS)


def preset_config(name: str, **overrides: Any) -> TrainConfig:
    """The preset ``name`` with ``overrides`` applied (``model_params`` merged over the preset's)."""
    return config_from_dict({"preset": name, **overrides}, source=f"preset {name!r}")


def load_config(path: str | Path, **overrides: Any) -> TrainConfig:
    """Read a TOML (``.toml``), YAML (``.yaml``/``.yml``) or JSON config file; ``overrides`` win.

    ``None`` overrides mean "not given". Raises :class:`ConfigError` naming the file for a
    missing/unparsable file, an unknown key or a field of the wrong type.
    """
    data = read_config_file(path)
    data.update({k: v for k, v in overrides.items() if v is not None})
    return config_from_dict(data, source=str(Path(path)))
