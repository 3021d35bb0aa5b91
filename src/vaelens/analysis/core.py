"""The full causal analysis of one VAE: the four interventions, the causal metrics, a null baseline.

:func:`analyze` runs, on ``n_samples`` examples of a ground-truth dataset:

1. input interventions (pairs differing in one factor; :func:`vaelens.lens.factor_pairs`):
   unit responses ``R(n, f)`` of every analysed layer and the factor -> latent weights;
2. latent interventions (:func:`vaelens.lens.latent_traversal`, Roy (2025)'s 7 values over
   ``[-3, 3]``, and/or the same grid in units of each latent's aggregate posterior,
   ``m_i + a s_i``: ``latent_sweep``): causal effect strength (eq. 7) and intervention
   specificity (eq. 8) per latent dimension, and the latent -> factor weights (from the
   absolute sweep, or the posterior one when it is the only sweep);
3. activation patching and 4. causal mediation (:func:`vaelens.lens.mediation`,
   ``target="latent"``): the indirect-effect share of each encoder layer and of each channel
   of the ``channel_layers`` in the latent shift caused by each factor;

then the same on a randomly initialised copy of the network (:func:`random_baseline`).
The metrics are the pure functions of :mod:`vaelens.metrics.causal`.

Active units
------------
``posterior`` holds each latent's aggregate posterior on the ``n_samples`` examples and
whether it collapsed: mean KL to the prior ``KL_i = E_x[0.5 (mu_i^2 + sigma_i^2 - log
sigma_i^2 - 1)] < collapse_kl`` (without a log-variance: ``Var_x(mu_i) < collapse_var``).
The analysed hook point that outputs the latent mean (``meta.latent_layer``) has its
collapsed units marked ``collapsed``; every layer's units with total response at most
``dead_rtol`` of the layer's largest are ``dead``. Polysemanticity, the monosemantic share,
the clusters and the modularity use the remaining live units only.

Random twin
-----------
The twin is ``random_baseline(model, baseline_seed(seed))``: a deep copy whose modules are
re-initialised children first, the root last (so a root ``reset_parameters`` that applies a
library's own initialisation to its children wins), under the torch seed
``baseline_seed(seed) = seed + 1_000_003`` (recorded as ``meta.baseline_seed``). The
offset keeps the twin off the training initialisation: a study trains run ``seed`` under
``torch.manual_seed(seed)``, and a twin re-initialised under that same seed in construction
order would be the run's own initial weights.

Causal graph (``causal_graph``)
-------------------------------
- ``factor_to_latent[f][i] = E_x |mu_i(x~_f) - mu_i(x)| / s_i``: the mean absolute shift of
  latent mean ``i`` under an input intervention on factor ``f``, in units of the spread of
  the aggregate posterior, ``s_i^2 = Var_x(mu_i) + E_x[sigma_i^2]`` (the second term only
  when ``encode`` returns a log-variance). A collapsed latent (``mu_i ~ 0``, ``sigma_i ~ 1``)
  thus gets small weights even though ``Var(mu_i)`` is tiny; a latent with ``s_i = 0`` gets 0.
- ``latent_to_factor[i][f] = E_x [max_v p_f(D(z~_{i,v})) - min_v p_f(D(z~_{i,v}))]``: how far
  a traversal of latent ``i`` moves a *pixel-space* ridge probe ``p_f`` of factor ``f``
  (fitted on dataset images, targets scaled to ``[0, 1]`` by the number of levels), i.e. the
  fraction of factor ``f``'s range the traversal sweeps. The probe is fitted on real images,
  independently of the model (no circularity through the encoder), but it is linear: a factor
  that is not linearly decodable from pixels (orientation of a symmetric shape, say) gets a
  low held-out ``probe_r2`` and its column is unreliable; decoded traversals off the data
  manifold can also move a linear probe. Edges (``edges``) are ``latent_to_factor >=
  edge_threshold`` for factors whose probe has held-out ``R^2 >= probe_r2_min``.

VQ-VAEs
-------
A VQ-VAE's ``mu`` is ``z_e`` flattened (``code_dim * g * g`` dims) and ``decode`` snaps it back
to the nearest code, so a continuous traversal mostly reads as zero effect. For a model with
``decode_codes`` the latent *units* are the ``g * g`` code positions instead: the latent
intervention replaces the code at one position by ``vq_swaps`` random other codes (the
discrete intervention of :mod:`vaelens.lens.vq`), CES/specificity are per position, and
factor -> latent aggregates ``|delta z_e|`` over the code dimensions of each position. The
``vq`` block also reports the continuous-shift effect of ``z_e`` (64 sampled dims, +1) beside
the code-swap effect, so the two can be compared.
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vaelens.analysis.alignment import alignment_search
from vaelens.analysis.circuits import unit_circuits
from vaelens.analysis.interchange import interchange_matrix
from vaelens.analysis.levels import (
    Inputs,
    PixelProbe,
    causal_graph,
    input_level,
    latent_level,
    layer_metrics,
    mediation_level,
    patching_level,
    posterior_effects,
    vq_effects,
)
from vaelens.analysis.result import (
    Alignment,
    AnalysisMeta,
    AnalysisResult,
    Circuits,
    FactorGraph,
    Interchange,
    LatentPosterior,
    Mediation,
    ModelAnalysis,
)
from vaelens.analysis.settings import AnalysisSettings, settings_from
from vaelens.data import check_dataset
from vaelens.errors import ConfigError, ModelContractError, VaelensError
from vaelens.lens import Adapter, Lens, factor_pairs, is_vq
from vaelens.lens.patching import resolve_max_batch
from vaelens.metrics.causal import collapsed_latents
from vaelens.progress import Progress, stage_teller

__all__ = ["analyze", "analyze_network", "baseline_seed", "default_layers", "random_baseline"]

#: offset of the random twin's torch seed from the analysis seed (a prime, far from study seeds)
BASELINE_SEED_OFFSET = 1_000_003

_ACTIVATIONS = tuple(
    getattr(nn, n)
    for n in (
        "ReLU", "LeakyReLU", "ELU", "GELU", "SiLU", "Sigmoid", "Tanh", "Softplus", "PReLU",
        "ReLU6", "SELU", "CELU", "Mish", "Hardtanh", "Hardswish", "Hardsigmoid",
    )
)  # fmt: skip


# --------------------------------------------------------------------------- baseline


def baseline_seed(seed: int) -> int:
    """The random twin's torch seed for analysis seed ``seed``: ``seed + 1_000_003``.

    Distinct from ``seed`` so that the twin of a run trained from ``torch.manual_seed(seed)``
    is not that run's own initial weights.
    """
    return int(seed) + BASELINE_SEED_OFFSET


def random_baseline(model: nn.Module, seed: int = 0) -> nn.Module:
    """A randomly initialised twin of ``model``: deep copy, then ``reset_parameters()`` everywhere.

    Every sub-module (the root included) with a callable ``reset_parameters`` is reset,
    children before their parents and the root last (``named_modules()`` reversed), so that a
    parent's ``reset_parameters`` that re-initialises its children with its own scheme (as
    disentangling-vae models do) is what the twin keeps. The resets run under
    ``torch.manual_seed(seed)`` inside a forked RNG (the global torch RNG is left untouched),
    so the twin is a function of ``(model, seed)``; :func:`analyze` passes
    :func:`baseline_seed` of its seed.
    Works on any :class:`torch.nn.Module`. Parameters or buffers of modules without
    ``reset_parameters`` (e.g. an EMA codebook) keep their values; they are listed in the
    twin's ``_vaelens_not_reset`` attribute. Raises :class:`ModelContractError` when no
    module could be re-initialised.
    """
    if not isinstance(model, nn.Module):
        raise ModelContractError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    twin = copy.deepcopy(model)
    reset: list[str] = []
    kept: list[str] = []
    devices = [p.device for p in twin.parameters() if p.device.type != "cpu"]
    with torch.random.fork_rng(devices=devices[:1]):
        torch.manual_seed(int(seed))
        for name, module in reversed(list(twin.named_modules())):
            fn = getattr(module, "reset_parameters", None)
            if callable(fn):
                fn()
                reset.append(name or "<root>")
            elif any(True for _ in module.parameters(recurse=False)) or any(
                b.is_floating_point() for b in module.buffers(recurse=False)
            ):
                kept.append(name or "<root>")
    if not reset:
        raise ModelContractError(
            f"random_baseline: no sub-module of {type(model).__name__} has reset_parameters(); "
            "cannot build a randomly initialised twin"
        )
    twin._vaelens_not_reset = kept[::-1]  # type: ignore[attr-defined]
    twin.eval()
    return twin


# --------------------------------------------------------------------------- layers


def default_layers(lens: Lens, x: torch.Tensor) -> list[str]:
    """The hook points analysed by default: one per distinct activation, post-nonlinearity.

    Hook points whose outputs share storage and size (a ``Sequential`` and its last child,
    ``Flatten``/``view`` of a map, the latent mean and the ``mu`` layer) are one activation,
    named by its shortest module path that is not the whole encoder/decoder (ties: the view
    with the most axes, so that a dense layer reshaped into a feature map has channels as
    units, then first in forward order). An activation fed straight into an element-wise nonlinearity module is
    dropped (its post-activation twin is kept), and so is the virtual ``latent`` point when a
    module already produces it.
    """
    cap = lens.capture(x[:2])
    points = [lens.hook_point(n) for n in lens.hook_names]
    acts = cap.activations
    groups: dict[tuple[int, int], list[str]] = {}
    for p in points:
        a = acts.get(p.name)
        if a is None:
            continue
        key = (a.untyped_storage().data_ptr() + a.storage_offset() * a.element_size(), a.numel())
        groups.setdefault(key, []).append(p.name)
    modules = dict(lens.model.named_modules())
    phase_names = {p.name: p.phase for p in points}

    def root_like(name: str) -> bool:
        others = [q.name for q in points if q.phase == phase_names[name] and q.name != name]
        return bool(others) and all(o.startswith(name + ".") for o in others)

    reps: list[tuple[int, str, list[str]]] = []
    for members in groups.values():
        real = [m for m in members if m != lens.latent_name]
        pool = [m for m in real if not root_like(m)] or real or members
        best = min(
            pool,
            key=lambda m: (m.count("."), -len(lens.hook_point(m).shape), lens.hook_point(m).order),
        )
        order = min(lens.hook_point(m).order for m in members)
        reps.append((order, best, members))
    reps.sort()
    chosen: list[str] = []
    for k, (_, best, members) in enumerate(reps):
        if k + 1 < len(reps):
            nxt = reps[k + 1][2]
            if any(
                isinstance(modules.get(lens.hook_point(m).module), _ACTIVATIONS)
                and lens.hook_point(m).shape == lens.hook_point(best).shape
                and lens.hook_point(m).phase == lens.hook_point(best).phase
                for m in nxt
            ) and not any(
                isinstance(modules.get(lens.hook_point(m).module), _ACTIVATIONS) for m in members
            ):
                continue
        chosen.append(best)
    return chosen


def _channel_layer_default(
    lens: Lens, x: torch.Tensor, enc_layers: list[str], latent_dim: int
) -> list[str]:
    """The last multi-unit encoder layer before the one that outputs the latent mean.

    When no module outputs the latent mean itself, the last multi-unit encoder layer whose
    activation is not latent-sized.
    """
    cap = lens.capture(x[:2], target="latent")
    lat = cap.latent
    cut = None
    for n in enc_layers:
        a = cap.activations[n]
        if a.untyped_storage().data_ptr() == lat.untyped_storage().data_ptr():
            cut = lens.hook_point(n).order
            break
    if cut is not None:
        cands = [n for n in enc_layers if lens.hook_point(n).order < cut and lens.units(n) > 1]
    else:
        cands = [
            n
            for n in enc_layers
            if lens.units(n) > 1 and int(np.prod(lens.hook_point(n).shape)) != latent_dim
        ]
    return cands[-1:]


# --------------------------------------------------------------------------- helpers


def _recon_mse(lens: Lens, x: torch.Tensor) -> float:
    """Mean squared error per pixel in image space, ``mean((out(D(E(x))) - x)^2)``.

    Comparable across likelihoods and datasets (BCE on grey images has an entropy floor).
    """
    with torch.no_grad():
        out = lens.forward(x)
    return float(((out.reshape(x.shape) - x) ** 2).mean())


def _recon_error(model: nn.Module, lens: Lens, x: torch.Tensor, z: torch.Tensor) -> float:
    """Mean per-image negative log-likelihood term: BCE (Bernoulli models) or summed MSE."""
    with torch.no_grad():
        decoded = model.decode(z)
        if getattr(model, "likelihood", None) == "bernoulli":
            err = F.binary_cross_entropy_with_logits(decoded, x, reduction="sum")
        else:
            out = lens.output_map(decoded)
            out = out.reshape(x.shape) if out.numel() == x.numel() else out
            err = F.mse_loss(out, x, reduction="sum")
    return float(err) / x.shape[0]


def _logvar(model: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    """The posterior log-variance ``(N, L)`` of ``x``, or None when ``encode`` returns none.

    The log-variance is ``encode(x).logvar`` or the second element of a ``(mean, logvar)``
    tuple when it has the mean's shape.
    """
    with torch.no_grad():
        enc = model.encode(x)
    if isinstance(enc, tuple | list):
        mean, logvar = (enc[0], enc[1]) if len(enc) > 1 else (enc[0], None)
    else:
        mean, logvar = getattr(enc, "mean", None), getattr(enc, "logvar", None)
    if (
        isinstance(mean, torch.Tensor)
        and isinstance(logvar, torch.Tensor)
        and logvar.shape == mean.shape
    ):
        return logvar
    return None


def _posterior_var(model: nn.Module, x: torch.Tensor) -> np.ndarray | float:
    """Mean posterior variance ``E_x[sigma_i^2(x)]`` per latent dim (0 without a log-variance)."""
    logvar = _logvar(model, x)
    return 0.0 if logvar is None else logvar.double().exp().mean(0).numpy()


# --------------------------------------------------------------------------- analyze

MEDIATION_METHOD = (
    "indirect share <NIE, TE> / ||TE||^2 of the latent-mean shift TE caused by an input "
    "intervention on the factor, averaged over pairs with TE != 0 (null where no pair "
    "moves the latent); by_layer patches the whole layer, by_channel one channel at a "
    "time (exact, channel_layers only); by_channel_attribution: first-order "
    "(attribution patching, projection metric) estimate for every encoder layer"
)


@dataclass(frozen=True)
class LayerPlan:
    """Which hook points an analysis reads, fixed once for the model and its twin."""

    encoder: list[str]
    decoder: list[str]
    channel: list[str]
    latent_dim: int
    vq: bool
    max_batch: int
    latent_layer: str | None = None

    @property
    def layers(self) -> list[str]:
        return [*self.encoder, *self.decoder]


def _inputs(ds: object, s: AnalysisSettings) -> tuple[Inputs, list[str]]:
    """Samples, per-factor pairs and the pixel probe, all drawn from one ``seed`` stream."""
    rng = np.random.default_rng(s.seed)
    fnames = [str(n) for n in ds.factor_names]
    factors = ds.sample_factors(s.n_samples, rng)
    x = torch.from_numpy(np.ascontiguousarray(ds.images(factors), dtype=np.float32))
    if tuple(x.shape[1:]) != tuple(ds.image_shape):
        raise ConfigError(
            f"dataset {ds.name}: images are {tuple(x.shape[1:])}, image_shape says {ds.image_shape}"
        )
    notes: list[str] = []
    pairs: list[tuple[torch.Tensor, torch.Tensor] | None] = []
    for f, size in enumerate(ds.factor_sizes):
        if int(size) < 2:
            pairs.append(None)
            notes.append(f"factor {fnames[f]!r} has one level: not intervened on (zero column)")
            continue
        xa, xb, _, _ = factor_pairs(ds, f, s.n_samples, seed=rng)
        pairs.append((xa, xb))
    pf = ds.sample_factors(s.probe_size(), rng)
    probe = PixelProbe(np.asarray(ds.images(pf), dtype=np.float32), pf, ds.factor_sizes)
    return Inputs(x=x, pairs=pairs, factor_names=fnames, probe=probe), notes


def _plan(model: nn.Module, lens: Lens, x: torch.Tensor, s: AnalysisSettings) -> LayerPlan:
    chosen = list(s.layers) if s.layers is not None else default_layers(lens, x)
    for n in chosen:
        lens.hook_point(n)
    if not chosen:
        raise ModelContractError(f"{type(model).__name__}: no hook point to analyse")
    enc = [n for n in chosen if lens.hook_point(n).phase == "encode"]
    dec = [n for n in chosen if lens.hook_point(n).phase == "decode"]
    with torch.no_grad():
        latent_dim = int(lens.encode_mean(x[:2]).shape[1])
    if s.channel_layers is None:
        chan = _channel_layer_default(lens, x, enc, latent_dim)
    else:
        chan = list(s.channel_layers)
        bad = [n for n in chan if lens.hook_point(n).phase != "encode"]
        if bad:
            raise ConfigError(f"channel_layers: {bad} are not encoder hook points")
    mb = resolve_max_batch(s.max_batch, lens)
    vq = is_vq(model)
    latent_layer = None if vq else _latent_layer(lens, x, enc)
    return LayerPlan(enc, dec, chan, latent_dim, vq, mb, latent_layer)


def _latent_layer(lens: Lens, x: torch.Tensor, enc_layers: list[str]) -> str | None:
    """The first encoder hook point whose activation is the latent mean itself (or None)."""
    cap = lens.capture(x[:2], target="latent")
    for n in enc_layers:
        a = cap.activations.get(n)
        if n == lens.latent_name or (
            a is not None and a.shape == cap.latent.shape and torch.equal(a, cap.latent)
        ):
            return n
    return None


def _spread(model: nn.Module, z: torch.Tensor, x: torch.Tensor, n_units: int, vq: bool):
    """``s_i = sqrt(Var_x(mu_i) + E_x[sigma_i^2])`` per latent unit (VQ: mean per position)."""
    spread = np.sqrt(z.numpy().astype(np.float64).var(0) + _posterior_var(model, x))
    return spread.reshape(-1, n_units).mean(0) if vq else spread


def _posterior(model: nn.Module, z: torch.Tensor, x: torch.Tensor, s: AnalysisSettings):
    """The :class:`LatentPosterior` of a continuous latent: moments, KL and collapse."""
    logvar = _logvar(model, x)
    mu = z.numpy().astype(np.float64)
    lv = None if logvar is None else logvar.double().numpy()
    collapsed, kl, var = collapsed_latents(
        mu, lv, kl_threshold=s.collapse_kl, var_threshold=s.collapse_var
    )
    post_var = np.zeros_like(var) if lv is None else np.exp(lv).mean(0)
    return LatentPosterior(
        rule="mean_variance" if lv is None else "kl",
        threshold=s.collapse_var if lv is None else s.collapse_kl,
        mean=mu.mean(0),
        mean_variance=var,
        posterior_variance=post_var,
        spread=_spread(model, z, x, mu.shape[1], False),
        kl=kl,
        collapsed=collapsed,
    )


def analyze_network(
    model: nn.Module,
    lens: Lens,
    inp: Inputs,
    plan: LayerPlan,
    s: AnalysisSettings,
    factor_graph: FactorGraph | None = None,
    dataset: object | None = None,
) -> tuple[ModelAnalysis, np.ndarray, list[str]]:
    """The four levels and the causal metrics on one network: ``(block, traversals, rows)``.

    With ``dataset`` and ``s.interchange`` (not for VQ models), also the interchange block
    (:func:`vaelens.analysis.interchange.interchange_matrix`, seeded with ``s.seed``).
    """
    x, mb = inp.x, plan.max_batch
    with torch.no_grad():
        z = lens.encode_mean(x)
    post = None if plan.vq else _posterior(model, z, x, s)
    latent, l2f, trav, rows = latent_level(lens, inp, s, vq=plan.vq, max_batch=mb, posterior=post)
    latent_post = None
    if post is not None and s.latent_sweep == "both":
        latent_post = posterior_effects(lens, inp, s, post, max_batch=mb)
    n_units = int(latent.ces.shape[0])
    spread = _spread(model, z, x, n_units, plan.vq)
    R, f2l = input_level(lens, inp, plan.layers, spread, n_units=n_units, vq=plan.vq, max_batch=mb)
    collapsed = {}
    if post is not None and plan.latent_layer in R:
        collapsed[plan.latent_layer] = post.collapsed
    by_layer, by_channel = mediation_level(lens, inp, plan.encoder, plan.channel, max_batch=mb)
    med = Mediation(
        target="latent",
        by_layer=by_layer,
        by_channel=by_channel,
        by_channel_attribution=patching_level(lens, inp, plan.encoder, max_batch=mb),
        method=MEDIATION_METHOD,
    )
    inter, circuits, alignment = _interchange_level(lens, dataset, s, plan)
    block = ModelAnalysis(
        latent=latent,
        latent_posterior=latent_post,
        posterior=post,
        layers=layer_metrics(R, s, collapsed),
        mediation=med,
        causal_graph=causal_graph(l2f, f2l, inp.probe, s, vq=plan.vq, factor_graph=factor_graph),
        vq=vq_effects(lens, x, s, max_batch=mb) if plan.vq else None,
        recon_error=_recon_error(model, lens, x, z),
        recon_mse=_recon_mse(lens, x),
        interchange=inter,
        circuits=circuits,
        alignment=alignment,
    )
    return block, trav, rows


def _circuit_layers(lens: Lens, plan: LayerPlan) -> list[str]:
    """The default layers of the circuits: the analysed encoder feature maps (channels as
    units), else the analysed encoder layers of at most 256 units; never the latent heads."""
    heads = {plan.latent_layer, *(n for n in plan.encoder if n.split(".")[-1] == "logvar")}
    enc = [n for n in plan.encoder if n not in heads]
    maps = [n for n in enc if len(lens.hook_point(n).shape) >= 2]
    return maps or [n for n in enc if lens.hook_point(n).units <= 256]


def _interchange_level(
    lens: Lens, dataset: object | None, s: AnalysisSettings, plan: LayerPlan
) -> tuple[Interchange | None, Circuits | None, Alignment | None]:
    """The interchange matrix, and with ``s.circuits`` the unit circuits (on the same pairs),
    with ``s.alignment`` the latent alignment search."""
    if dataset is None or not s.interchange or plan.vq:
        return None, None, None
    mb, n = plan.max_batch, s.interchange_size()
    inter = interchange_matrix(
        lens, dataset, n_pairs=n, seed=s.seed, threshold=s.interchange_threshold,
        n_boot=s.n_boot, max_batch=mb,
    )  # fmt: skip
    circuits = None
    if s.circuits:
        layers = list(s.circuit_layers) if s.circuit_layers else _circuit_layers(lens, plan)
        circuits = unit_circuits(
            lens, dataset, interchange=inter, layers=layers, n_pairs=n, seed=s.seed,
            n_boot=s.n_boot, max_batch=mb, max_set=s.circuit_max_set,
        )  # fmt: skip
    alignment = None
    if s.alignment:
        alignment = alignment_search(
            lens, dataset, k=s.alignment_k, n_pairs=n, n_train=max(2 * n, 64),
            steps=s.alignment_steps, seed=s.seed, n_boot=s.n_boot, max_batch=mb,
        )  # fmt: skip
    return inter, circuits, alignment


def _twin_notes(model: nn.Module, twin: nn.Module) -> list[str]:
    notes = []
    same = all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), twin.state_dict().values(), strict=True)
    )
    if same:
        notes.append(
            "baseline: the random twin equals the model (it was initialised with the same "
            "seed and never trained): the comparison is void"
        )
    not_reset = getattr(twin, "_vaelens_not_reset", [])
    if not_reset:
        notes.append(f"baseline: modules without reset_parameters kept their values: {not_reset}")
    return notes


_LATENT_SIZE_NAMES = ("latent_dim", "z_dim", "latent_size", "z_size")


def _declared_latent(model: object) -> int | None:
    """The latent width a model declares (``latent_dim``, ``z_dim``, ..., ``model_config``)."""
    for owner in (model, getattr(model, "model_config", None)):
        for attr in _LATENT_SIZE_NAMES:
            v = getattr(owner, attr, None) if owner is not None else None
            if isinstance(v, int) and not isinstance(v, bool) and v > 0:
                return v
    return None


def _check_inputs(model: object, ds: object, **adapter: object) -> None:
    """The model against the dataset, before any sample is drawn or probe fitted.

    One pass on two blank images of the dataset's ``image_shape`` through the lens (built
    with the ``adapter`` keywords of :func:`analyze`), encode and decode checked one at a
    time: the latent mean must be ``(2, L)`` with ``L`` the model's declared latent size
    (``latent_dim``, ``z_dim``, ``latent_size``, ``z_size``, ``model_config.latent_dim``) when
    it declares one, and the output-mapped reconstruction ``(2, *image_shape)``, as the pixel
    probe and the traversal figures read it so.
    """
    if not isinstance(model, nn.Module):
        raise ModelContractError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    image_shape = tuple(int(d) for d in ds.image_shape)
    model_shape = getattr(model, "image_shape", None)
    if model_shape is not None and tuple(model_shape) != image_shape:
        raise ConfigError(
            f"dataset {ds.name}: images are {image_shape} but the model "
            f"{type(model).__name__} takes image_shape {tuple(model_shape)}"
        )
    name = type(model).__name__
    lens = Lens(model, example=torch.zeros(2, *image_shape), **adapter)  # type: ignore[arg-type]
    with torch.no_grad():
        z = lens.encode_mean(torch.zeros(2, *image_shape))
        declared = None if is_vq(model) else _declared_latent(model)
        width = int(np.prod(z.shape[1:]))
        if declared is not None and (z.ndim != 2 or width != declared):
            raise ModelContractError(
                f"encode(x) of {name} returned a latent mean of shape {tuple(z.shape)}, but the "
                f"model declares a latent size of {declared}: expected (2, {declared}) (pass "
                "encode= or adapter= to read the mean)"
            )
        out = lens.decode_output(z)
    if tuple(out.shape[1:]) != image_shape:
        raise ModelContractError(
            f"decode(z) of {type(model).__name__} returned images of shape {tuple(out.shape[1:])} "
            f"(batch shape {tuple(out.shape)}), but dataset {ds.name} has image_shape {image_shape}"
        )


def _factor_graph(ds: object, names: list[str]) -> FactorGraph | None:
    adj = getattr(ds, "adjacency", None)
    return FactorGraph(names=names, adjacency=np.asarray(adj())) if callable(adj) else None


def _meta(
    model: nn.Module, ds: object, inp: Inputs, plan: LayerPlan, s: AnalysisSettings,
    n_units: int, notes: list[str], seconds: float,
) -> AnalysisMeta:  # fmt: skip
    x = inp.x
    bernoulli = getattr(model, "likelihood", None) == "bernoulli"
    return AnalysisMeta(
        model=type(model).__name__,
        variant=getattr(model, "variant", None),
        dataset=str(ds.name),
        factor_names=inp.factor_names,
        image_shape=list(ds.image_shape),
        latent_dim=n_units,
        latent_dim_raw=plan.latent_dim,
        vq=plan.vq,
        encoder_layers=plan.encoder,
        decoder_layers=plan.decoder,
        channel_layers=plan.channel,
        latent_layer=plan.latent_layer,
        baseline_seed=baseline_seed(s.seed) if s.baseline else None,
        recon_error_kind="bce_per_image" if bernoulli else "sse_per_image",
        recon_mse_mean_image=float(((x - x.mean(0, keepdim=True)) ** 2).mean()),
        n_probe=s.probe_size(),
        settings=s,
        seconds=seconds,
        notes=notes,
    )


def _notes_after(plan: LayerPlan, s: AnalysisSettings, n_units: int, n: int) -> list[str]:
    notes = []
    if plan.encoder:
        notes.append(
            "mediation.by_layer patches a whole layer: in a sequential encoder every layer is a "
            "cut of the graph, so its share is 1 wherever the factor moves the latent (0 for a "
            "layer off the path to the mean, e.g. logvar); by_channel is the informative part"
        )
    if plan.vq:
        notes.append(
            f"VQ: latent units are the {n_units} code positions; latent interventions replace "
            f"the code at one position by {s.vq_swaps} random other codes on {n} samples"
        )
    return notes


def _fallback_notes(lens: Lens, prefix: str) -> list[str]:
    return [
        f"{prefix}stacked suffix runs from {name!r} fell back to full passes ({why}): exact, slower"
        for name, why in lens.fallbacks.items()
    ]


@contextlib.contextmanager
def _as_twin(model: nn.Module) -> Iterator[None]:
    """Re-raise any error of the random twin's analysis with a ``"random twin: "`` prefix."""
    try:
        yield
    except Exception as err:
        lines = str(err).strip().splitlines()
        msg = f"random twin: {lines[0] if lines else type(err).__name__}"
        glue = [n for n in ("encode", "decode") if callable(model.__dict__.get(n))]
        if glue:
            msg += (
                f" ({'/'.join(glue)} set on the model instance is shared by its deep copy and "
                "still calls the original: pass encode=/decode= callables taking the model first)"
            )
        cls = type(err) if isinstance(err, VaelensError) else ModelContractError
        try:
            new = cls(msg)
        except Exception:
            new = ModelContractError(msg)
        raise new from err


def analyze(
    model: nn.Module,
    dataset: object,
    settings: AnalysisSettings | None = None,
    *,
    encode: Callable[[nn.Module, torch.Tensor], object] | None = None,
    decode: Callable[[nn.Module, torch.Tensor], object] | None = None,
    output: str | Callable[[torch.Tensor], torch.Tensor] | None = None,
    adapter: str | Adapter | None = None,
    progress: Progress | None = None,
    **overrides: object,
) -> AnalysisResult:
    """Run the four interventions and the causal metrics on ``model`` and on its random twin.

    ``model``: any ``nn.Module`` with ``encode(x)`` (tensor, ``(mean, logvar)`` or ``.mean``)
    and ``decode(z)``; vaelens models' ``output_mean`` maps decoded logits to images.
    ``dataset``: any object meeting the ground-truth dataset contract. ``settings`` (an
    :class:`AnalysisSettings`) and keyword ``overrides`` of its fields (``n_samples``,
    ``seed``, ``latent_values``, ``layers``, ``baseline``, ...) say what is computed; each
    field's default and bound are documented there. ``seed`` seeds the samples, pairs,
    probe data, bootstrap and clustering; the baseline is seeded with
    :func:`baseline_seed` of it (``meta.baseline_seed``).

    ``encode(model, x)``, ``decode(model, z)``, ``output`` and ``adapter`` (a name of
    :data:`vaelens.lens.ADAPTERS`: ``"pythae"``, ``"disent"``, ``"pytorch_vae"``,
    ``"disentangling_vae"``) say how to call a model written for another library (default:
    found automatically, :mod:`vaelens.lens.adapters`); the callables receive the model
    first, so the random twin gets calls on its own modules. Errors of the twin's analysis
    start with ``"random twin: "``; layers whose stacked runs fell back to full passes are
    listed in the notes.

    ``progress(stage, done, total)`` is called as each stage starts (``"trained model"``,
    ``"random twin"``, ``"controls"``) and with ``("done", total, total)`` at the end.

    Returns an :class:`AnalysisResult` (see the module docstring for the causal-graph and
    VQ conventions; ``to_json()`` is the analysis.json).
    """
    t0 = time.perf_counter()
    s = settings_from(settings, source="analyze", **overrides)
    stages = ["trained model", *(["random twin"] if s.baseline else []),
              *(["controls"] if s.controls else [])]  # fmt: skip

    stage = stage_teller(progress, stages)
    ds = check_dataset(dataset)
    adapt = {"encode": encode, "decode": decode, "output": output, "adapter": adapter}
    _check_inputs(model, ds, **adapt)
    inp, notes = _inputs(ds, s)
    lens = Lens(model, example=inp.x[:2], **adapt)  # type: ignore[arg-type]
    plan = _plan(model, lens, inp.x, s)
    graph = _factor_graph(ds, inp.factor_names)
    stage("trained model")
    trained, trav, rows = analyze_network(lens.adapted, lens, inp, plan, s, graph, ds)  # type: ignore[arg-type]
    notes += _fallback_notes(lens, "")
    baseline = None
    if s.baseline:
        stage("random twin")
        twin = random_baseline(model, baseline_seed(s.seed))
        notes += _twin_notes(model, twin)
        with _as_twin(model):
            blens = Lens(twin, example=inp.x[:2], **adapt)  # type: ignore[arg-type]
            baseline = analyze_network(blens.adapted, blens, inp, plan, s, graph, ds)[0]  # type: ignore[arg-type]
        notes += _fallback_notes(blens, "random twin: ")
    n_units = int(trained.latent.ces.shape[0])
    notes += _notes_after(plan, s, n_units, min(s.vq_samples, s.n_samples))
    controls = None
    if s.controls:
        from vaelens.analysis.controls import run_controls

        stage("controls")
        controls = run_controls(
            model, lens, ds, inp, s, trained, vq=plan.vq, max_batch=plan.max_batch
        )
        notes += controls.notes
    meta = _meta(model, ds, inp, plan, s, n_units, notes, time.perf_counter() - t0)
    result = AnalysisResult(meta=meta, trained=trained, baseline=baseline, controls=controls)
    stage("done")
    return result.with_traversals(trav, rows)
