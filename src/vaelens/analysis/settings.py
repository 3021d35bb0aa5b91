"""The settings of an analysis: one default and one bound per setting.

:class:`AnalysisSettings` is the one place where the analysis options are defined. The
Python API (``vaelens.analyze(model, dataset, n_samples=128)``), the command line
(``vaelens analyze RUN_DIR --n-samples 128 --set n_boot=200``) and a study's ``[analysis]``
table all validate through it, so a bad value ends in the same one-line
:class:`~vaelens.errors.ConfigError` wherever it was given.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vaelens.errors import ConfigError
from vaelens.lens import DEFAULT_VALUES

__all__ = ["AnalysisSettings", "settings_from"]

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


class AnalysisSettings(BaseModel):
    """What :func:`vaelens.analyze` computes, and on how much data.

    ``max_batch=None`` lets the lens choose the rows of a stacked forward for the model's
    device (64 on CPU, 2048 on an accelerator); ``n_probe=None`` is ``max(256, 4 n_samples)``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_samples: int = Field(64, ge=2, description="examples and intervention pairs per factor")
    seed: int = Field(0, ge=0, description="random seed of samples, pairs, bootstrap, baseline")
    latent_values: tuple[FiniteFloat, ...] = Field(
        DEFAULT_VALUES, min_length=1, description="values each latent dimension is set to"
    )
    layers: tuple[str, ...] | None = Field(
        None, description="hook points (None: one per activation)"
    )
    channel_layers: tuple[str, ...] | None = Field(
        None, description="encoder hook points mediated channel by channel (None: the last one)"
    )
    baseline: bool = Field(True, description="analyse a randomly initialised twin as the null")
    n_probe: int | None = Field(None, ge=2, description="images for the pixel-space factor probe")
    edge_threshold: float = Field(0.1, ge=0, allow_inf_nan=False, description="causal-graph edge")
    probe_r2_min: float = Field(0.2, le=1, allow_inf_nan=False, description="probe R^2 for edges")
    mono_threshold: float = Field(1.5, ge=1, allow_inf_nan=False, description="participation")
    n_boot: int = Field(1000, ge=1, description="bootstrap resamples of every interval")
    vq_swaps: int = Field(3, ge=1, description="code swaps per VQ position")
    vq_samples: int = Field(32, ge=1, description="examples of the VQ code swaps")
    max_batch: int | None = Field(None, ge=1, description="rows of a stacked forward")
    n_show: int = Field(3, ge=1, description="examples shown in the traversal figure")
    controls: bool = Field(
        False, description="run the referee's controls (a decoder retraining; docs/controls.md)"
    )
    control_steps: int = Field(
        500, ge=1, description="Adam steps of the retrained decoder (a study: its training's)"
    )
    control_batch_size: int = Field(64, ge=1, description="images per retraining step")
    control_lr: float = Field(1e-3, gt=0, le=1, allow_inf_nan=False, description="retraining lr")
    control_n_train: int = Field(1024, ge=2, description="dataset images the decoder retrains on")
    control_aggregate: str = Field(
        "shuffle",
        pattern="^(shuffle|gaussian)$",
        description="aggregate-posterior codes: each mu permuted, or N(mean, Var mu) per latent",
    )

    def probe_size(self) -> int:
        """Images of the pixel-space probe: ``n_probe`` or ``max(256, 4 n_samples)``."""
        return self.n_probe if self.n_probe is not None else max(256, 4 * self.n_samples)


def _format(exc: ValidationError, source: str) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(settings)"
        if err["type"] == "extra_forbidden":
            parts.append(f"unknown setting {loc!r}")
        else:
            parts.append(f"{loc!r}: {err['msg']} (got {err.get('input')!r})")
    known = ", ".join(AnalysisSettings.model_fields)
    hint = f"; known settings: {known}" if any("unknown" in p for p in parts) else ""
    return f"{source}: " + "; ".join(parts) + hint


def settings_from(
    settings: AnalysisSettings | None = None, *, source: str = "analysis settings", **overrides: Any
) -> AnalysisSettings:
    """``settings`` (default :class:`AnalysisSettings()`) with ``overrides`` validated over it.

    Raises :class:`ConfigError` naming ``source`` and the setting for an unknown name or a
    value out of its bound.
    """
    if settings is not None and not isinstance(settings, AnalysisSettings):
        raise ConfigError(f"{source}: expected an AnalysisSettings, got {type(settings).__name__}")
    base = settings.model_dump() if settings is not None else {}
    try:
        return AnalysisSettings.model_validate({**base, **overrides})
    except ValidationError as exc:
        raise ConfigError(_format(exc, source)) from None
