"""Study configuration: a grid of architectures x datasets x seeds x hyperparameters.

A study file (TOML or YAML) looks like::

    name = "my-study"
    architectures = ["vae", "beta_vae", "factor_vae"]
    datasets = ["synthetic", "dsprites"]
    seeds = [0, 1, 2]

    [train]                    # fields of vaelens.train.TrainConfig except model/dataset/seed/out
    steps = 2000
    batch_size = 64

    [model_params.beta_vae]    # fixed hyperparameters of one architecture
    beta = 4.0

    [grid]                     # swept hyperparameters, "architecture.param" = [values]
    "beta_vae.beta" = [1.0, 4.0]

    [dataset_options.dsprites] # load_dataset keywords of one dataset
    source = "procedural"

    [analysis]                 # vaelens.analysis.AnalysisSettings + the metrics to score
    n_samples = 256
    metrics_preset = "fast"

Unknown keys are rejected with an error naming the key and the file; ``[train]`` is
validated against :class:`~vaelens.train.TrainConfig` when the study is loaded, so a
mistyped training key stops the study before any run starts.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from vaelens.analysis.settings import AnalysisSettings
from vaelens.errors import ConfigError
from vaelens.io import format_validation_error, read_config_file

__all__ = ["RunSpec", "StudyAnalysis", "StudyConfig", "load_study_config", "plan_runs"]


class StudyAnalysis(AnalysisSettings):
    """A study's ``[analysis]`` table: :class:`vaelens.analysis.AnalysisSettings` (same
    defaults and bounds as ``vaelens analyze``) plus the disentanglement metrics to score.

    ``seed`` is not set here: each run's analysis uses the run's seed.
    """

    metrics: list[str] = Field(
        default_factory=lambda: ["dci", "mig", "sap", "factor_vae", "beta_vae"],
        description="disentanglement metrics",
    )
    metrics_preset: str = Field("fast", pattern="^(fast|faithful)$")
    metrics_num_train: int | None = Field(
        None, ge=2, description="points sampled for the array metrics (default: the preset's)"
    )
    metrics_num_test: int | None = Field(None, ge=2, description="held-out points likewise")
    metrics_overrides: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="per-metric keyword arguments replacing the preset's"
    )

    #: not a setting of a study: each run's analysis uses the run's seed (see StudyConfig)
    seed: int = Field(0, ge=0, exclude=True)

    def for_run(self, seed: int) -> AnalysisSettings:
        """The analysis settings of one run: these, with the run's ``seed``."""
        fields = self.model_dump(include=set(AnalysisSettings.model_fields))
        return AnalysisSettings.model_validate({**fields, "seed": seed})


#: a registry name (architectures, datasets); ``package.module:Class`` (custom models) for
#: an architecture. Each is part of a run directory's name: no path separator, no ``..``
#: (refused apart), no whitespace, not empty
_REGISTRY_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")
_ARCH_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*(:[A-Za-z0-9_][A-Za-z0-9_.]*)?")


class StudyConfig(BaseModel):
    """A study: the grid, the training settings and the analysis settings."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    architectures: list[str] = Field(..., min_length=1)
    datasets: list[str] = Field(..., min_length=1)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    train: dict[str, Any] = Field(default_factory=dict)
    model_params: dict[str, dict[str, Any]] = Field(default_factory=dict)
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    dataset_options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    analysis: StudyAnalysis = Field(default_factory=StudyAnalysis)
    resources: dict[str, float] = Field(
        default_factory=lambda: {"num_cpus": 1.0, "num_gpus": 0.0},
        description="per-run request of the Ray executor",
    )

    @field_validator("architectures", "datasets")
    @classmethod
    def _plain_names(cls, v: list[str], info: ValidationInfo) -> list[str]:
        # each name becomes part of a run directory's name (see _run_id)
        arch = info.field_name == "architectures"
        pattern = _ARCH_NAME if arch else _REGISTRY_NAME
        for entry in v:
            if not pattern.fullmatch(entry) or ".." in entry:
                legal = "a registry name or 'package.module:Class'" if arch else "a registry name"
                raise ValueError(
                    f"entry {entry[:80]!r} is not a plain name: expected {legal} (letters, "
                    "digits, '_', '-', '.'), without path separators, '..', whitespace or an "
                    "empty name"
                )
        return v

    @field_validator("train")
    @classmethod
    def _no_grid_fields_in_train(cls, v: dict[str, Any]) -> dict[str, Any]:
        clash = sorted(set(v) & {"model", "dataset", "seed", "out"})
        if clash:
            raise ValueError(f"{clash} are set by the grid, not by [train]")
        return v

    @model_validator(mode="after")
    def _analysis_seed_from_grid(self) -> StudyConfig:
        if "seed" in self.analysis.model_fields_set:
            raise ValueError("analysis.seed: set by the grid (each run's analysis uses its seed)")
        return self

    @field_validator("grid")
    @classmethod
    def _grid_keys(cls, v: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in v.items():
            if key.count(".") != 1:
                raise ValueError(f"grid: key {key!r} must be 'architecture.param'")
            if not values:
                raise ValueError(f"grid: {key!r} has no values")
        return v


class RunSpec(BaseModel):
    """One run of a study: everything a worker needs, JSON-serialisable.

    ``trust_code`` (the ``"module:attr"`` model names the worker may import, or ``True``
    for any) is set by the study driver at dispatch from the ``trust_code`` given to
    :func:`~vaelens.study.runner.run_study`; :func:`plan_runs` never sets it, so a study
    file cannot grant trust.
    """

    model_config = ConfigDict(extra="forbid")

    run_id: str
    architecture: str
    dataset: str
    seed: int
    hparams: dict[str, Any]
    train: dict[str, Any]
    dataset_options: dict[str, Any]
    analysis: StudyAnalysis
    trust_code: StrictBool | list[StrictStr] = Field(
        default_factory=list, description="set by the driver at dispatch, never by a study file"
    )


def _run_id(arch: str, dataset: str, seed: int, hparams: dict[str, Any]) -> str:
    base = f"{arch}-{dataset}-s{seed}"
    if not hparams:
        return base
    digest = hashlib.sha1(json.dumps(hparams, sort_keys=True).encode()).hexdigest()[:8]
    return f"{base}-{digest}"


def plan_runs(cfg: StudyConfig) -> list[RunSpec]:
    """Expand the grid into runs, in a stable order, each with a stable id.

    An architecture's runs cross its own ``grid`` entries; its ``model_params`` are fixed.
    The id is ``arch-dataset-sSEED`` plus a hash of the swept hyperparameters.
    """
    runs = []
    for arch in cfg.architectures:
        swept = {
            k.split(".", 1)[1]: vals for k, vals in cfg.grid.items() if k.split(".", 1)[0] == arch
        }
        names = sorted(swept)
        combos = list(itertools.product(*[swept[n] for n in names])) or [()]
        for dataset in cfg.datasets:
            for combo in combos:
                sweep = dict(zip(names, combo, strict=True))
                hparams = {**cfg.model_params.get(arch, {}), **sweep}
                for seed in cfg.seeds:
                    runs.append(
                        RunSpec(
                            run_id=_run_id(arch, dataset, seed, sweep),
                            architecture=arch,
                            dataset=dataset,
                            seed=seed,
                            hparams=hparams,
                            train=dict(cfg.train),
                            dataset_options=dict(cfg.dataset_options.get(dataset, {})),
                            analysis=cfg.analysis,
                        )
                    )
    ids = [r.run_id for r in runs]
    if len(set(ids)) != len(ids):
        raise ConfigError(
            "study: the grid has duplicate runs (repeated architectures, datasets or seeds?)"
        )
    return runs


def study_config_from_dict(data: dict[str, Any], source: str = "study config") -> StudyConfig:
    """Validate a dict as a :class:`StudyConfig`, its ``train`` section against
    :class:`~vaelens.train.TrainConfig`; :class:`ConfigError` names the key and the source."""
    from vaelens.train.config import check_train_section

    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of settings, got {type(data).__name__}")
    try:
        cfg = StudyConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source, StudyConfig)) from None
    check_train_section(cfg.train, source=source)
    return cfg


def load_study_config(path: str | Path) -> StudyConfig:
    """Read a study from a ``.toml``, ``.yaml``/``.yml`` or ``.json`` file, validated in full
    (``[train]`` included) before anything runs."""
    return study_config_from_dict(read_config_file(path), str(Path(path)))
