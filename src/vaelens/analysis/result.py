"""The typed result of an analysis: one pydantic model a block, one JSON round-trip.

``AnalysisResult`` = ``meta`` (what was analysed, and how) + ``trained`` and ``baseline``
(:class:`ModelAnalysis`: the same measurements on the model and on its random twin). A
:class:`ModelAnalysis` holds the blocks:

- ``latent`` (:class:`LatentEffects`): CES and intervention specificity per latent unit
  under the absolute sweep (VQ: code swaps; ``latent_sweep="posterior"``: the posterior
  sweep), and ``latent_posterior`` the same under the posterior sweep beside it
  (``latent_sweep="both"``); each block's ``sweep`` says which it is;
- ``posterior`` (:class:`LatentPosterior`): each latent's aggregate posterior (mean,
  spread, KL to the prior) and which latents collapsed;
- ``layers[name]`` (:class:`LayerMetrics`): the unit responses ``R(n, f)`` of one layer and
  what is computed from them on its live units (:class:`Polysemanticity`,
  :class:`Monosemanticity`, :class:`Modularity`, :class:`Clusters`); ``dead`` and
  ``collapsed`` say which units are not live;
- ``mediation`` (:class:`Mediation`), ``causal_graph`` (:class:`CausalGraph`), ``vq``
  (:class:`VQEffects`, VQ models only), and the reconstruction errors.

Arrays are numpy float64 (NaN where undefined: a dead unit, an unmoved latent); in JSON they
are nested lists with ``null`` for NaN. ``to_json()`` / ``from_json()`` are exact inverses,
``scalars()`` is the one flattening to the named scalars a study stores. ``analysis.json``
carries :data:`SCHEMA_VERSION`; a file of another version is refused with one line.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    PlainSerializer,
    PrivateAttr,
    ValidationError,
)

from vaelens.analysis.settings import AnalysisSettings
from vaelens.errors import ConfigError
from vaelens.io import atomic_write_json

__all__ = [
    "SCHEMA_VERSION",
    "Alignment",
    "AnalysisMeta",
    "AnalysisResult",
    "CausalGraph",
    "Clusters",
    "FactorGraph",
    "Interchange",
    "LatentEffects",
    "LatentPosterior",
    "LayerMetrics",
    "Mediation",
    "ModelAnalysis",
    "Modularity",
    "Monosemanticity",
    "Polysemanticity",
    "VQEffects",
    "load_analysis",
]

#: Version of the analysis.json layout; bumped whenever a field changes meaning or place.
SCHEMA_VERSION = 3


def _nan_to_none(v: Any) -> Any:
    if isinstance(v, list):
        return [_nan_to_none(e) for e in v]
    return None if isinstance(v, float) and not math.isfinite(v) else v


def _float_array(v: Any) -> np.ndarray:
    if isinstance(v, np.ndarray):
        return v.astype(np.float64, copy=False)
    return np.array(_none_to_nan(v), dtype=np.float64)


def _none_to_nan(v: Any) -> Any:
    if isinstance(v, list | tuple):
        return [_none_to_nan(e) for e in v]
    return math.nan if v is None else v


def _int_array(v: Any) -> np.ndarray:
    arr = np.asarray(v)
    integral = np.issubdtype(arr.dtype, np.integer) or np.all(np.equal(np.mod(arr, 1), 0))
    if arr.size and not integral:
        raise ValueError("expected integers")
    return arr.astype(np.int64)


#: float64 array; JSON: nested lists, NaN as null
FloatArray = Annotated[
    np.ndarray,
    BeforeValidator(_float_array),
    PlainSerializer(lambda a: _nan_to_none(a.tolist()), when_used="json"),
]
#: int64 array; JSON: nested lists
IntArray = Annotated[
    np.ndarray, BeforeValidator(_int_array), PlainSerializer(lambda a: a.tolist(), when_used="json")
]


def _bool_array(v: Any) -> np.ndarray:
    arr = np.asarray(v)
    if arr.size and arr.dtype != bool:
        raise ValueError("expected booleans")
    return arr.astype(bool)


#: bool array; JSON: nested lists of true/false
BoolArray = Annotated[
    np.ndarray,
    BeforeValidator(_bool_array),
    PlainSerializer(lambda a: a.tolist(), when_used="json"),
]
#: float that may be NaN (undefined); JSON: null
Num = Annotated[
    float,
    BeforeValidator(lambda v: math.nan if v is None else v),
    PlainSerializer(lambda v: v if math.isfinite(v) else None, when_used="json"),
]


class _Block(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid", frozen=True)


def _live_mean(values: np.ndarray, live: np.ndarray) -> float:
    return float(values[live].mean()) if live.any() else math.nan


class LatentEffects(_Block):
    """Latent interventions: CES (Roy (2025) eq. 7) and specificity (eq. 8) per latent unit.

    ``ces[i] = E_{x,v} ||D(z~_{i,v}) - D(z)||_2``; ``ces_normalised`` divides by the number
    of output elements' square root; ``ces_ci[i]`` is the bootstrap interval over samples.
    ``specificity[i]`` is NaN for a unit whose traversal moves no output (its share of
    such (sample, value) cells is ``null_fraction[i]``); means are over the live units.

    ``sweep`` says which values ``v`` the numbers come from, ``values[i]`` the ones unit ``i``
    was set to (``None`` for code swaps): ``"absolute"``: ``latent_values`` for every unit;
    ``"posterior"``: ``m_i + a s_i`` for ``a`` in ``latent_values``, ``m_i = E_x mu_i``,
    ``s_i^2 = Var_x(mu_i) + E_x[sigma_i^2]`` (quantiles ``Phi(a)`` of ``N(m_i, s_i^2)``);
    ``"code swaps"``: a VQ model's code positions. The study scalars of a posterior sweep
    are ``ces_posterior.*`` and ``specificity_posterior.*``.
    """

    units: Literal["latent dimensions", "code positions"]
    sweep: Literal["absolute", "posterior", "code swaps"] = "absolute"
    values: FloatArray | None = None
    ces: FloatArray
    ces_normalised: FloatArray
    ces_ci: FloatArray
    ces_mean_ci: FloatArray
    specificity: FloatArray
    specificity_normalised: FloatArray
    null_fraction: FloatArray
    n_samples: int

    @property
    def ces_mean(self) -> float:
        return float(self.ces.mean())

    @property
    def ces_mean_normalised(self) -> float:
        return float(self.ces_normalised.mean())

    @property
    def specificity_mean(self) -> float:
        return _live_mean(self.specificity, ~np.isnan(self.specificity))

    @property
    def specificity_mean_normalised(self) -> float:
        return _live_mean(self.specificity_normalised, ~np.isnan(self.specificity))

    def scalars(self) -> dict[str, float]:
        tag = "_posterior" if self.sweep == "posterior" else ""
        return {
            f"ces{tag}.mean": self.ces_mean,
            f"ces{tag}.mean_normalised": self.ces_mean_normalised,
            f"specificity{tag}.mean": self.specificity_mean,
            f"specificity{tag}.mean_normalised": self.specificity_mean_normalised,
        }


class LatentPosterior(_Block):
    """Each latent's aggregate posterior over the analysed samples, and which collapsed.

    ``mean[i] = E_x mu_i``, ``mean_variance[i] = Var_x(mu_i)``, ``posterior_variance[i] =
    E_x[sigma_i^2]`` (0 without a log-variance), ``spread[i] = s_i = sqrt(mean_variance +
    posterior_variance)``; ``kl[i] = E_x[0.5 (mu_i^2 + sigma_i^2 - log sigma_i^2 - 1)]``
    (nats; NaN without a log-variance). ``rule``: ``"kl"``: ``collapsed = kl < threshold``
    (``collapse_kl``); ``"mean_variance"`` (no log-variance): ``collapsed = mean_variance <
    threshold`` (``collapse_var``). A collapsed latent is a dead unit of the latent layer.
    """

    rule: Literal["kl", "mean_variance"]
    threshold: float
    mean: FloatArray
    mean_variance: FloatArray
    posterior_variance: FloatArray
    spread: FloatArray
    kl: FloatArray
    collapsed: BoolArray

    @property
    def n_collapsed(self) -> int:
        return int(self.collapsed.sum())

    def scalars(self) -> dict[str, float]:
        return {
            "latent.n_collapsed": float(self.n_collapsed),
            "latent.collapsed_fraction": self.n_collapsed / max(1, self.collapsed.size),
        }


class Polysemanticity(_Block):
    """Per unit: participation ratio (1 = monosemantic) and Roy (2025) eq. 11 as printed.

    NaN for units not live (dead or collapsed); the means are over the live ones.
    """

    participation: FloatArray
    roy2025_form: FloatArray

    @property
    def mean_participation(self) -> float:
        return _live_mean(self.participation, ~np.isnan(self.participation))

    @property
    def mean_roy2025_form(self) -> float:
        return _live_mean(self.roy2025_form, ~np.isnan(self.participation))


class Monosemanticity(_Block):
    """Share of live units with participation ratio below the threshold, with its CI."""

    fraction: Num
    n_monosemantic: int
    n_live: int
    n_units: int
    ci: FloatArray


class Modularity(_Block):
    """Circuit modularity of a layer over its live units: Roy (2025)'s form and the signed form."""

    roy2025: Num
    signed: Num


class Clusters(_Block):
    """k-means circuit clusters of live units by response profile (labels -1: not live)."""

    labels: IntArray
    n_clusters: int
    coherence: Num
    majority_factor: IntArray
    sizes: IntArray


class LayerMetrics(_Block):
    """One analysed layer: ``responses`` ``R(n, f)`` ``(units, factors)`` and its metrics.

    ``dead[n]``: ``sum_f R[n, f] <= dead_rtol * max_m sum_f R[m, f]``; ``collapsed[n]``: the
    unit is a collapsed latent (the latent layer only; all false elsewhere). ``live = ~dead
    & ~collapsed``; the metrics below use the live units only.
    """

    responses: FloatArray
    dead: BoolArray
    collapsed: BoolArray
    polysemanticity: Polysemanticity
    monosemantic: Monosemanticity
    modularity: Modularity
    clusters: Clusters

    @property
    def live(self) -> np.ndarray:
        return ~self.dead & ~self.collapsed

    @property
    def n_dead(self) -> int:
        return int(self.dead.sum())

    @property
    def n_collapsed(self) -> int:
        return int(self.collapsed.sum())

    def scalars(self, layer: str) -> dict[str, float]:
        return {
            f"n_dead.{layer}": float(self.n_dead),
            f"n_collapsed.{layer}": float(self.n_collapsed),
            f"modularity.{layer}": self.modularity.roy2025,
            f"modularity_signed.{layer}": self.modularity.signed,
            f"monosemantic_fraction.{layer}": self.monosemantic.fraction,
            f"cluster_coherence.{layer}": self.clusters.coherence,
            f"polysemanticity.{layer}": self.polysemanticity.mean_participation,
            f"polysemanticity_roy2025.{layer}": self.polysemanticity.mean_roy2025_form,
        }


class Mediation(_Block):
    """Indirect-effect shares ``<NIE, TE> / ||TE||^2`` onto ``target``, per factor.

    ``by_layer[factor][layer]``: the whole layer patched (1 for every cut of a sequential
    encoder); ``by_channel[factor][layer]``: one channel at a time (exact);
    ``by_channel_attribution[factor][layer]``: the first-order (attribution patching)
    estimate for every encoder layer. NaN where no pair moves the target.
    """

    target: str
    by_layer: dict[str, dict[str, Num]]
    by_channel: dict[str, dict[str, FloatArray]]
    by_channel_attribution: dict[str, dict[str, FloatArray]]
    method: str

    def scalars(self) -> dict[str, float]:
        return {
            f"mediation.{f}.{layer}": share
            for f, by in self.by_layer.items()
            for layer, share in by.items()
        }


class FactorGraph(_Block):
    """The dataset's own causal graph of its factors (``adjacency[i][j]``: i causes j)."""

    names: list[str]
    adjacency: FloatArray


class CausalGraph(_Block):
    """Latent -> factor and factor -> latent weights, and the edges (see analysis.core)."""

    latent_to_factor: FloatArray
    factor_to_latent: FloatArray
    edges: IntArray
    edge_threshold: float
    probe_r2: FloatArray
    probe_r2_min: float
    latent_units: str
    method: str
    factor_graph: FactorGraph | None = None


class VQEffects(_Block):
    """A VQ-VAE's code-swap effect beside the continuous-shift effect of ``z_e``."""

    code_swap_effect_mean: Num
    code_swap_effect_ci: FloatArray
    continuous_effect_mean: Num
    continuous_zero_fraction: Num
    continuous_shift: float
    continuous_dims: list[int]
    n_positions: int

    def scalars(self) -> dict[str, float]:
        return {
            "vq.code_swap_effect_mean": self.code_swap_effect_mean,
            "vq.continuous_effect_mean": self.continuous_effect_mean,
            "vq.continuous_zero_fraction": self.continuous_zero_fraction,
            "vq.continuous_shift": self.continuous_shift,
            "vq.n_positions": float(self.n_positions),
        }


class ModelAnalysis(_Block):
    """Every measurement on one network (the trained model, or its random twin).

    ``recon_error``: mean per-image NLL term (BCE or summed squared error, see
    ``meta.recon_error_kind``); ``recon_mse``: mean squared error per pixel in image space.
    """

    latent: LatentEffects
    latent_posterior: LatentEffects | None = None
    posterior: LatentPosterior | None = None
    layers: dict[str, LayerMetrics]
    mediation: Mediation
    causal_graph: CausalGraph
    vq: VQEffects | None = None
    recon_error: Num
    recon_mse: Num
    interchange: Interchange | None = None
    circuits: Circuits | None = None
    alignment: Alignment | None = None

    def scalars(self) -> dict[str, float]:
        """The causal metrics as named scalars (``ces.mean``, ``modularity.<layer>``, ...)."""
        out = self.latent.scalars()
        if self.latent_posterior is not None:
            out.update(self.latent_posterior.scalars())
        if self.posterior is not None:
            out.update(self.posterior.scalars())
        for name, layer in self.layers.items():
            out.update(layer.scalars(name))
        for block in (self.interchange, self.circuits, self.alignment):
            if block is not None:
                out.update(block.scalars())
        return out


class AnalysisMeta(_Block):
    """What was analysed and how: model, dataset, layers, settings, timing and notes.

    ``latent_layer``: the analysed hook point that outputs the latent mean (its units can be
    collapsed), if any; ``baseline_seed``: the torch seed of the random twin (None without a
    baseline), derived from ``settings.seed`` (see :func:`vaelens.analysis.core.baseline_seed`).
    """

    model: str
    variant: str | None = None
    dataset: str
    factor_names: list[str]
    image_shape: list[int]
    latent_dim: int
    latent_dim_raw: int
    vq: bool
    encoder_layers: list[str]
    decoder_layers: list[str]
    channel_layers: list[str]
    latent_layer: str | None = None
    baseline_seed: int | None = None
    recon_error_kind: str
    recon_mse_mean_image: Num
    n_probe: int
    settings: AnalysisSettings
    seconds: float
    notes: list[str]

    @property
    def layers(self) -> list[str]:
        """Every analysed hook point in forward order (encoder, then decoder)."""
        return [*self.encoder_layers, *self.decoder_layers]


class DecoderRetrainControl(_Block):
    """Control 1: CES, specificity and the causal graph with a decoder retrained from scratch.

    The decoder is re-initialised and trained on the frozen encoder's ``mu(x)`` (see
    :func:`vaelens.analysis.controls.decoder_retrain_control`). ``ces_spearman`` is the rank
    correlation of ``ces_original`` and ``ces_retrained`` (NaN if one is constant);
    ``edge_jaccard`` the overlap of the two causal graphs' edges (NaN if both are empty);
    ``recon_error`` the retrained model's NLL per image (``meta.recon_error_kind``) beside
    the original's; ``initial_loss`` / ``final_loss``: the training loss of the first and
    last step (per image, on one batch); ``unidentified``: latents constant on the training images, read at their
    training value by the retrained decoder.
    """

    ces_original: FloatArray
    ces_retrained: FloatArray
    ces_spearman: Num
    latent: LatentEffects
    causal_graph: CausalGraph
    edge_jaccard: Num
    recon_error: Num
    recon_error_original: Num
    recon_mse: Num
    initial_loss: Num
    final_loss: Num
    unidentified: list[int]
    reset_modules: list[str]
    kept_modules: list[str]
    steps: int
    batch_size: int
    lr: float
    n_train: int


class PosteriorSourceControl(_Block):
    """Control 2: the latent intervention on codes from the aggregate posterior and the prior.

    ``aggregate`` / ``prior``: the :class:`LatentEffects` of traversals from codes drawn from
    the aggregate posterior (``aggregate_method``: ``"shuffle"``, each latent's ``mu``
    permuted independently across the samples, or ``"gaussian"``, ``N(mean_i, Var(mu_i))``)
    and from ``N(0, I)``; ``ces_encoder``: the encoder's own CES beside them.
    """

    ces_encoder: FloatArray
    aggregate: LatentEffects
    prior: LatentEffects
    aggregate_method: Literal["shuffle", "gaussian"]


class ReconNormalisedCES(_Block):
    """Control 3: CES over the reconstruction distance and over the reconstructions' spread.

    ``recon_distance = E_x ||out(D(E(x))) - x||_2``, ``output_spread = E_x ||out(D(E(x))) -
    mean_x out(D(E(x)))||_2``; ``ces_recon_normalised = ces / recon_distance``,
    ``ces_spread_normalised = ces / output_spread`` (NaN where the normaliser is 0).
    """

    recon_distance: Num
    output_spread: Num
    ces_recon_normalised: FloatArray
    ces_spread_normalised: FloatArray


class Controls(_Block):
    """The referee's controls (``controls=True``): see docs/controls.md."""

    decoder_retrain: DecoderRetrainControl | None = None
    posterior_sources: PosteriorSourceControl | None = None
    recon_normalised: ReconNormalisedCES
    notes: list[str]

    def scalars(self) -> dict[str, float]:
        out: dict[str, float] = {}
        rt = self.decoder_retrain
        if rt is not None:
            out["controls.retrained_ces_spearman"] = rt.ces_spearman
            out["controls.retrained_ces.mean"] = rt.latent.ces_mean
            out["controls.retrained_specificity.mean"] = rt.latent.specificity_mean
            out["controls.retrained_edge_jaccard"] = rt.edge_jaccard
            out["controls.retrained_recon_error"] = rt.recon_error
        ps = self.posterior_sources
        if ps is not None:
            out["controls.ces_aggregate.mean"] = ps.aggregate.ces_mean
            out["controls.ces_prior.mean"] = ps.prior.ces_mean
        rn = self.recon_normalised
        out["controls.ces_recon_normalised.mean"] = float(rn.ces_recon_normalised.mean())
        out["controls.ces_spread_normalised.mean"] = float(rn.ces_spread_normalised.mean())
        return out


class Interchange(_Block):
    """Interchange interventions on each latent dim, scored per factor (analysis.interchange).

    ``share[i, f]``: mean over pairs ``(x, x')`` differing in factor ``f`` (with ``D(x') !=
    D(x)``) of ``<D~ - D(x), D(x') - D(x)> / ||D(x') - D(x)||^2``, ``D~`` the output of ``x``
    with latent ``i`` set to its value on ``x'``; ``share_ci[i, f]`` its bootstrap interval;
    ``accuracy[i, f] = sum (e0 - e) / sum (e0 - e1)`` with ``e``, ``e0``, ``e1`` the squared
    distances of ``D~``, ``D(x)``, ``D(x')`` to the real image ``x'`` (1: as good as the
    model's reconstruction of ``x'``, 0: no better than ``D(x)``); ``isolation[i, f]``: mean
    of ``1 - mean_{g != f} |cos(D~ - D(x), u_g)|`` (``u_g``: factor ``g``'s output direction);
    ``full_share[f]``: the share of patching every latent. ``edges``: ``(latent, factor)``
    with ``share_ci[i, f, 0] > threshold``. ``min_sets[f]``: the greedy smallest latent set
    with joint share ``>= coverage * full_share[f]``, confirmed by a joint patch
    (``min_set_share``, ``min_set_share_ci``, ``min_set_accuracy``); empty (NaN) for a
    factor that moves nothing. NaN wherever a factor does not move the output. ``pairs``:
    ``"exact"`` (a factorial grid's real counterfactuals) or ``"matched"`` (the dataset's own
    approximate pairs, e.g. CelebA); ``other_differences[f]``: the mean number of other
    factors differing within a pair (0 when exact; the confounding of matched pairs).
    """

    factor_names: list[str]
    share: FloatArray
    share_ci: FloatArray
    accuracy: FloatArray
    isolation: FloatArray
    full_share: FloatArray
    edges: IntArray
    threshold: float
    coverage: float
    min_sets: list[list[int]]
    min_set_share: FloatArray
    min_set_share_ci: FloatArray
    min_set_accuracy: FloatArray
    n_pairs: int
    method: str
    pairs: Literal["exact", "matched"] = "exact"
    other_differences: list[float | None] = []

    @property
    def edge_set(self) -> set[tuple[int, int]]:
        """``edges`` as a set of ``(latent, factor)`` index pairs."""
        return {(int(i), int(f)) for i, f in np.asarray(self.edges).reshape(-1, 2)}

    @property
    def min_set_size(self) -> np.ndarray:
        """``(F,)``: the size of each factor's minimal set (NaN where it has none)."""
        sizes = np.array([len(m) for m in self.min_sets], dtype=np.float64)
        return np.where(np.isfinite(self.min_set_share), sizes, np.nan)

    def scalars(self) -> dict[str, float]:
        out = {"interchange.edges": float(len(self.edges))}
        sizes = self.min_set_size
        for f, name in enumerate(self.factor_names):
            col = self.share[:, f]
            out[f"interchange.min_set_size.{name}"] = float(sizes[f])
            out[f"interchange.share_max.{name}"] = (
                float(np.nanmax(col)) if np.isfinite(col).any() else math.nan
            )
            out[f"interchange.min_set_accuracy.{name}"] = float(self.min_set_accuracy[f])
        # factor means (own keys: a factor may be called "mean")
        out["interchange.mean_min_set_size"] = _nanmean(sizes)
        out["interchange.mean_share_max"] = _nanmean(
            [out[f"interchange.share_max.{name}"] for name in self.factor_names]
        )
        return out


def _nanmean(values: Any) -> float:
    """Mean of the finite entries, NaN when there are none."""
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    return float(arr.mean()) if arr.size else math.nan


class AnalysisResult(BaseModel):
    """What :func:`vaelens.analyze` found; ``analysis.json`` is :meth:`to_json`.

    ``traversals`` (not serialised): example traversals ``(n_show, rows, cols, C, H, W)``
    for the figures, rows named in ``traversal_rows``.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid", frozen=True)

    schema_version: Literal[3] = SCHEMA_VERSION
    meta: AnalysisMeta
    trained: ModelAnalysis
    baseline: ModelAnalysis | None = None
    controls: Controls | None = None
    _traversals: np.ndarray | None = PrivateAttr(default=None)
    _traversal_rows: list[str] = PrivateAttr(default_factory=list)

    @property
    def traversals(self) -> np.ndarray | None:
        return self._traversals

    @property
    def traversal_rows(self) -> list[str]:
        return self._traversal_rows

    def with_traversals(self, traversals: np.ndarray | None, rows: list[str]) -> AnalysisResult:
        """This result carrying example traversals for the figures (returns ``self``)."""
        self._traversals = traversals
        self._traversal_rows = list(rows)
        return self

    def to_json(self) -> dict[str, Any]:
        """Strict-JSON-ready dict (NaN -> ``null``, arrays -> lists)."""
        return self.model_dump(mode="json")

    @classmethod
    def from_json(cls, data: Any, *, source: str = "analysis") -> AnalysisResult:
        """The inverse of :meth:`to_json`; one-line :class:`ConfigError` naming ``source``."""
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a JSON object, got {type(data).__name__}")
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ConfigError(
                f"{source}: analysis schema version {version!r}, expected {SCHEMA_VERSION} "
                "(written by another vaelens version); run `vaelens analyze` on the run again"
            )
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = ".".join(str(p) for p in err["loc"])
            raise ConfigError(f"{source}: field {loc!r}: {err['msg']}") from None

    def save(self, path: str | Path) -> Path:
        """Write :meth:`to_json` to ``path`` atomically; returns the path."""
        atomic_write_json(path, self.to_json())
        return Path(path)

    def scalars(self) -> dict[str, float]:
        """The named scalars a study stores (NaN where undefined).

        The trained model's causal metrics (``ces.mean``, ``specificity.mean``, their
        ``_normalised`` forms: the absolute sweep, or code swaps; ``ces_posterior.*`` and
        ``specificity_posterior.*``: the posterior sweep; ``latent.n_collapsed``,
        ``latent.collapsed_fraction``; per layer ``n_dead.<layer>``, ``n_collapsed.<layer>``,
        ``modularity[_signed].<layer>``, ``monosemantic_fraction.<layer>``,
        ``cluster_coherence.<layer>``, ``polysemanticity[_roy2025].<layer>``, on live units), the mediation
        shares ``mediation.<factor>.<layer>``, the same causal metrics of the random twin
        under ``baseline.``, ``recon.trained``/``recon.baseline`` (NLL per image),
        ``recon.mse_trained``/``mse_baseline``/``mse_mean_image`` (per pixel) and ``vq.*``.
        """
        out = self.trained.scalars()
        out.update(self.trained.mediation.scalars())
        base = self.baseline
        if base is not None:
            out.update({f"baseline.{k}": v for k, v in base.scalars().items()})
        out["recon.trained"] = self.trained.recon_error
        out["recon.baseline"] = base.recon_error if base is not None else math.nan
        out["recon.mse_trained"] = self.trained.recon_mse
        out["recon.mse_baseline"] = base.recon_mse if base is not None else math.nan
        out["recon.mse_mean_image"] = self.meta.recon_mse_mean_image
        if self.trained.vq is not None:
            out.update(self.trained.vq.scalars())
        if self.controls is not None:
            out.update(self.controls.scalars())
        return {k: float(v) for k, v in out.items()}


def load_analysis(path: str | Path) -> AnalysisResult:
    """Read an ``analysis.json``; one-line :class:`ConfigError` naming the file when it is bad."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such analysis file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{p}: not a readable JSON file ({exc})") from None
    return AnalysisResult.from_json(data, source=str(p))


# --------------------------------------------------------------------------- unit circuits


class Circuits(_Block):
    """Unit-level circuits per (factor, encoder layer), with path patching (analysis.circuits).

    For pairs ``(x, x')`` differing only in factor ``f`` and an encoder layer ``l``:
    ``mu~(S)`` is the posterior mean of ``x`` with channels ``S`` of ``l`` taken from ``x'``;
    its latent share is ``mean_n <mu~_n - mu_n, mu'_n - mu_n> / ||mu'_n - mu_n||^2`` over the
    pairs whose latent moves. Per factor ``f`` and layer ``l`` (arrays ``(F, Y)``, ``Y =
    len(layers)``): ``full_share``: the latent share of patching every channel of ``l`` (1
    when ``l`` is a cut of the encoder); ``sets[f][l]``: the greedy smallest set of live
    channels with latent share ``>= coverage * full_share`` (``covered``: whether it got
    there; empty where the factor does not move the latent or ``l`` carries none of it);
    ``latent_share`` / ``latent_share_ci``: the confirming joint patch; ``output_share`` /
    ``output_share_ci``: the share of ``D(x') - D(x)`` of ``D(mu~(S))``; ``path_share`` /
    ``path_share_ci``: the same of ``D(z)`` with ``z = mu`` but ``z[M] = mu~(S)[M]``, ``M =
    latent_sets[f]`` the factor's minimal latent set (the part of the effect that flows ``S
    -> M -> output``); ``n_live``: the channels of ``l`` that change on some pair (the
    candidates); ``width[l]``: its channel count. NaN wherever undefined.
    """

    factor_names: list[str]
    layers: list[str]
    width: IntArray
    n_live: IntArray
    full_share: FloatArray
    sets: list[list[list[int]]]
    covered: BoolArray
    latent_share: FloatArray
    latent_share_ci: FloatArray
    output_share: FloatArray
    output_share_ci: FloatArray
    latent_sets: list[list[int]]
    path_share: FloatArray
    path_share_ci: FloatArray
    coverage: float
    n_pairs: int
    method: str

    @property
    def set_size(self) -> np.ndarray:
        """``(F, Y)``: the size of each circuit (NaN where there is none)."""
        sizes = np.array([[len(s) for s in row] for row in self.sets], dtype=np.float64)
        sizes = sizes.reshape(len(self.factor_names), len(self.layers))
        return np.where(np.isfinite(self.latent_share), sizes, np.nan)

    def scalars(self) -> dict[str, float]:
        """``circuits.set_size.<factor>.<layer>``, ``circuits.latent_share.*``,
        ``circuits.output_share.*`` and ``circuits.path_share.*`` (NaN where undefined)."""
        out: dict[str, float] = {}
        sizes = self.set_size
        for f, name in enumerate(self.factor_names):
            for j, layer in enumerate(self.layers):
                key = f"{name}.{layer}"
                out[f"circuits.set_size.{key}"] = float(sizes[f, j])
                out[f"circuits.latent_share.{key}"] = float(self.latent_share[f, j])
                out[f"circuits.output_share.{key}"] = float(self.output_share[f, j])
                out[f"circuits.path_share.{key}"] = float(self.path_share[f, j])
        return out


__all__ += ["Circuits"]


# --------------------------------------------------------------------------- alignment search


class Alignment(_Block):
    """Distributed alignment search per factor (analysis.alignment): a learned rotated subspace.

    For factor ``f``, an orthogonal ``R`` of the variable space (the latent, or the channel
    axis of hook point ``layer``) is learned on ``n_train`` pairs ``(x, x')`` differing in
    ``f`` so that interchanging its first ``k`` coordinates, ``a~ = a + R_k R_k^T (a' - a)``,
    carries the change ``D(x) -> D(x')``. ``share[f]`` / ``share_ci[f]``: its interchange share
    ``mean_n <D~ - D, D' - D> / ||D' - D||^2`` on ``n_pairs`` held-out pairs and the bootstrap
    interval; ``accuracy[f] = sum (e0 - e) / sum (e0 - e1)`` against the real ``x'``;
    ``train_share[f]``: the share on the training pairs. ``axis_share``, ``axis_share_ci``,
    ``axis_accuracy``: the same held-out scores of the best set of ``k`` units (``axis_units[f]``,
    chosen on the training pairs); a high ``share`` beside a low ``axis_share`` = encoded, but
    not axis-aligned. ``basis`` ``(F, d, k)``: ``R_k`` per factor. NaN (and empty units) for a
    factor that does not move the output or has one level.
    """

    factor_names: list[str]
    layer: str
    k: int
    width: int
    share: FloatArray
    share_ci: FloatArray
    accuracy: FloatArray
    train_share: FloatArray
    final_loss: FloatArray
    axis_share: FloatArray
    axis_share_ci: FloatArray
    axis_accuracy: FloatArray
    axis_units: list[list[int]]
    basis: FloatArray
    n_pairs: int
    n_train: int
    steps: int
    lr: float
    seed: int
    method: str

    def scalars(self) -> dict[str, float]:
        out = {}
        for f, name in enumerate(self.factor_names):
            out[f"alignment.share.{name}"] = float(self.share[f])
            out[f"alignment.axis_share.{name}"] = float(self.axis_share[f])
            out[f"alignment.accuracy.{name}"] = float(self.accuracy[f])
        return out
