"""Training configuration: one validated pydantic model, loadable from TOML or YAML.

The fields are those of ``vaelens train`` (``--model --dataset --steps --seed --out``)
plus the optimisation, logging and hardware settings. A config file uses the same field
names at its top level, e.g. (TOML)::

    model = "beta_vae"
    dataset = "dsprites"
    dataset_source = "procedural"
    epochs = 50
    model_params = { beta = 4.0 }

An optional top-level ``preset = "seeds"`` starts from :data:`PRESETS` ``["seeds"]`` and
lets the file override any field. Unknown keys raise :class:`~vaelens.errors.ConfigError`
naming the key and the file.
"""

from __future__ import annotations

import copy
import json
import tomllib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from vaelens.errors import ConfigError
from vaelens.models.registry import SEEDS_PRESET

__all__ = [
    "PRESETS",
    "TrainConfig",
    "config_from_dict",
    "load_config",
    "preset_config",
]

#: Named starting points. ``variant_params[model]`` is merged into ``model_params``.
PRESETS: dict[str, dict[str, Any]] = {
    # The seeds' extended set-up (section "Training parameters"): Adam lr 1e-3 with cosine
    # decay, weight decay 1e-5, batch 64, 50 epochs; beta = 4 (beta-VAE), gamma = 40 and a
    # discriminator lr of 5e-5 (FactorVAE).
    "seeds": {
        "lr": 1e-3,
        "batch_size": 64,
        "epochs": 50,
        "weight_decay": 1e-5,
        "schedule": "cosine",
        "variant_params": SEEDS_PRESET,
    },
}


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
    schedule: Literal["constant", "cosine"] = "constant"
    # --- bookkeeping
    checkpoint_every: int = Field(1000, ge=0, description="steps between checkpoints (0: end only)")
    keep_checkpoints: int = Field(2, ge=1, description="most recent checkpoints kept")
    log_every: int = Field(50, ge=1, description="steps averaged into one metrics.jsonl line")
    tensorboard: bool = False
    wandb: bool = False
    # --- hardware
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # autocast: "bf16" or "fp16" (+ GradScaler) on CUDA; on the CPU only "bf16", and slow there
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


def _format_validation_error(exc: ValidationError, where: str) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(config)"
        if err["type"] == "extra_forbidden":
            parts.append(f"unknown key {loc!r}")
        else:
            got = err.get("input")
            parts.append(f"field {loc!r}: {err['msg']} (got {got!r})")
    known = ", ".join(TrainConfig.model_fields)
    hint = f"; known keys: {known}" if any("unknown key" in p for p in parts) else ""
    return f"{where}: " + "; ".join(parts) + hint


def _apply_preset(data: dict[str, Any], where: str) -> dict[str, Any]:
    data = dict(data)
    name = data.pop("preset", None)
    if name is None:
        return data
    if name not in PRESETS:
        raise ConfigError(f"{where}: unknown preset {name!r}; expected one of {sorted(PRESETS)}")
    preset = copy.deepcopy(PRESETS[name])
    variant_params = preset.pop("variant_params", {})
    merged = {**preset, **data}
    if "steps" in data and "epochs" not in data:
        merged.pop("epochs", None)
    model = merged.get("model", TrainConfig.model_fields["model"].default)
    params = dict(variant_params.get(model, {}))
    params.update(data.get("model_params") or {})
    merged["model_params"] = params
    return merged


def config_from_dict(data: dict[str, Any], *, source: str = "config") -> TrainConfig:
    """Validate a mapping of field names (plus an optional ``preset``) into a :class:`TrainConfig`.

    ``source`` names where the mapping came from in error messages.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of field names, got {type(data).__name__}")
    try:
        return TrainConfig(**_apply_preset(data, source))
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, source)) from None


def preset_config(name: str, **overrides: Any) -> TrainConfig:
    """The preset ``name`` with ``overrides`` applied (``model_params`` merged over the preset's)."""
    return config_from_dict({"preset": name, **overrides}, source=f"preset {name!r}")


def load_config(path: str | Path, **overrides: Any) -> TrainConfig:
    """Read a TOML (``.toml``) or YAML (``.yaml``/``.yml``) config file; ``overrides`` win.

    Raises :class:`ConfigError` naming the file for a missing/unparsable file, an unknown
    key or a field of the wrong type.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p}: not found")
    suffix = p.suffix.lower()
    try:
        if suffix == ".toml":
            with p.open("rb") as fh:
                data = tomllib.load(fh)
        elif suffix in (".yaml", ".yml"):
            with p.open("r", encoding="utf-8") as fh:
                data = yaml.safe_load(fh)
            data = {} if data is None else data
        elif suffix == ".json":
            data = json.loads(p.read_text(encoding="utf-8"))
        else:
            raise ConfigError(f"config file {p}: expected a .toml, .yaml/.yml or .json file")
    except (
        tomllib.TOMLDecodeError,
        yaml.YAMLError,
        json.JSONDecodeError,
        UnicodeDecodeError,
    ) as exc:
        raise ConfigError(f"config file {p}: cannot parse: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {p}: expected a mapping at the top level, got {type(data).__name__}"
        )
    data.update({k: v for k, v in overrides.items() if v is not None})
    return config_from_dict(data, source=f"config file {p}")
