"""The settings of an analysis: one default and one bound per setting.

:class:`AnalysisSettings` is the one place where the analysis options are defined. The
Python API (``vaelens.analyze(model, dataset, n_samples=128)``), the command line
(``vaelens analyze RUN_DIR --n-samples 128 --set n_boot=200``) and a study's ``[analysis]``
table all validate through it, so a bad value ends in the same one-line
:class:`~vaelens.errors.ConfigError` wherever it was given.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vaelens.errors import ConfigError
from vaelens.lens import DEFAULT_VALUES

__all__ = ["AnalysisSettings", "settings_from"]

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


class AnalysisSettings(BaseModel):
    """What :func:`vaelens.analyze` computes, and on how much data.

    ``max_batch=None`` lets the lens choose the rows of a stacked forward for the model's
    device (64 on CPU, 2048 on an accelerator); ``n_probe=None`` is ``max(256, 4 n_samples)``.

    Active units (see :mod:`vaelens.metrics.causal`):

    - ``dead_rtol`` (default 1e-2, in ``[0, 1)``): a unit is dead when its total response
      ``sum_f R[n, f]`` is at most ``dead_rtol`` times its layer's largest. 1e-2, not a
      round-off tolerance: below 1% of the layer's most responsive unit a unit carries under
      1e-4 of its squared response, and the 1e-3 leak of a collapsed latent is not a live unit.
    - ``collapse_kl`` (default 0.01 nats, ``>= 0``): a latent is collapsed when its mean KL to
      the prior, ``KL_i = E_x[0.5 (mu_i^2 + sigma_i^2 - log sigma_i^2 - 1)]``, is below it.
      0.01 nats (0.014 bits) per example: the latent tells the decoder almost nothing about
      ``x``, while a latent whose mean spreads over the prior's unit scale carries ~0.5 nats.
    - ``collapse_var`` (default 0.01, ``>= 0``): without a log-variance (a deterministic
      encoder), a latent is collapsed when ``Var_x(mu_i)`` is below it (a posterior-mean
      spread under 0.1 prior standard deviations).

    Collapsed latents count as dead units of the latent layer; the unit metrics use live units.

    Latent sweeps (``latent_sweep``, default ``"both"``): ``"absolute"`` sets each latent to
    ``latent_values`` (Roy (2025)'s ``[-3, 3]`` grid); ``"posterior"`` to
    ``m_i + a s_i`` for ``a`` in ``latent_values``, ``m_i = E_x mu_i`` and
    ``s_i^2 = Var_x(mu_i) + E_x[sigma_i^2]`` (the quantiles ``Phi(a)`` of the Gaussian
    approximation ``N(m_i, s_i^2)`` of the aggregate posterior: 0.13%, 2.3%, 15.9%, 50%, ...
    for the default grid); ``"both"`` does both. VQ models use code swaps either way.

    Interchange (``interchange``, default on; not for VQ models): ``interchange_pairs``
    (default None = ``n_samples``, ``>= 2``) pairs per factor, each latent dim of ``x`` taken from ``x'`` and
    scored against the real ``x'``; an edge where the share's CI lower bound exceeds
    ``interchange_threshold`` (default 0.1: a tenth of the factor's output change); see
    :mod:`vaelens.analysis.interchange`. With it, ``circuits`` (default off) finds each
    factor's smallest channel set in every encoder layer (``circuit_layers``, default: the analysed encoder feature maps; at most
    ``circuit_max_set`` channels, default 16) with path
    patching through the latent (:mod:`vaelens.analysis.circuits`), and ``alignment``
    (default off) learns a rotation per factor whose ``alignment_k``-dimensional subspace
    carries the factor, beside the best axis-aligned set (:mod:`vaelens.analysis.alignment`).
    Both use the interchange's pairs (``interchange_pairs``).
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
    dead_rtol: float = Field(
        1e-2, ge=0, lt=1, allow_inf_nan=False, description="dead unit: response / layer's largest"
    )
    collapse_kl: float = Field(
        0.01, ge=0, allow_inf_nan=False, description="collapsed latent: mean KL to prior (nats)"
    )
    collapse_var: float = Field(
        0.01, ge=0, allow_inf_nan=False, description="collapsed latent without logvar: Var(mu)"
    )
    latent_sweep: Literal["absolute", "posterior", "both"] = Field(
        "both", description="latent values: absolute, in posterior units, or both"
    )
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
    interchange: bool = Field(
        True, description="interchange interventions per latent and factor (docs/interchange.md)"
    )
    interchange_pairs: int | None = Field(
        None, ge=2, description="pairs per factor of the interchange (None: n_samples)"
    )
    interchange_threshold: float = Field(
        0.1, ge=0, allow_inf_nan=False, description="interchange edge: share CI lower bound"
    )
    circuits: bool = Field(
        False, description="unit-level circuits per factor and encoder layer (docs/circuits.md)"
    )
    circuit_layers: tuple[str, ...] | None = Field(
        None, description="encoder hook points of the circuits (None: every encoder hook)"
    )
    circuit_max_set: int = Field(
        16, ge=1, description="largest channel set the circuit search grows (then: not covered)"
    )
    alignment: bool = Field(
        False, description="distributed alignment search per factor (docs/interchange.md)"
    )
    alignment_k: int = Field(1, ge=1, description="dimension of each learned subspace")
    alignment_steps: int = Field(200, ge=1, description="Adam steps of each learned rotation")
    control_aggregate: str = Field(
        "shuffle",
        pattern="^(shuffle|gaussian)$",
        description="aggregate-posterior codes: each mu permuted, or N(mean, Var mu) per latent",
    )

    def interchange_size(self) -> int:
        """Pairs per factor of the interchange: ``interchange_pairs`` or ``n_samples``."""
        return self.interchange_pairs if self.interchange_pairs is not None else self.n_samples

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
