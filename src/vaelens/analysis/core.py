"""The full causal analysis of one VAE: the four interventions, the causal metrics, a null baseline.

:func:`analyze` runs, on ``n_samples`` examples of a ground-truth dataset:

1. input interventions (pairs differing in one factor; :func:`vaelens.lens.factor_pairs`):
   unit responses ``R(n, f)`` of every analysed layer and the factor -> latent weights;
2. latent interventions (:func:`vaelens.lens.latent_traversal`, the seeds' 7 values over
   ``[-3, 3]``): causal effect strength (eq. 7) and intervention specificity (eq. 8) per
   latent dimension, and the latent -> factor weights;
3. activation patching and 4. causal mediation (:func:`vaelens.lens.mediation`,
   ``target="latent"``): the indirect-effect share of each encoder layer and of each channel
   of the ``channel_layers`` in the latent shift caused by each factor;

then the same on a randomly initialised copy of the network (:func:`random_baseline`).
The metrics are the pure functions of :mod:`vaelens.metrics.causal`.

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

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vaelens.data import check_dataset
from vaelens.errors import ConfigError, ModelContractError
from vaelens.io import to_jsonable
from vaelens.lens import (
    DEFAULT_VALUES,
    Lens,
    attribution_patching,
    code_swap_effects,
    codebook_size,
    encode_codes,
    factor_pairs,
    input_intervention,
    is_vq,
    latent_shift_effects,
    latent_traversal,
    mediation,
)
from vaelens.metrics.causal import (
    causal_effect_strength,
    circuit_clusters,
    circuit_modularity,
    intervention_specificity,
    monosemantic_fraction,
    polysemanticity,
)
from vaelens.stats import bootstrap_ci

__all__ = ["AnalysisResult", "analyze", "default_layers", "random_baseline"]

_ACTIVATIONS = tuple(
    getattr(nn, n)
    for n in (
        "ReLU", "LeakyReLU", "ELU", "GELU", "SiLU", "Sigmoid", "Tanh", "Softplus", "PReLU",
        "ReLU6", "SELU", "CELU", "Mish", "Hardtanh", "Hardswish", "Hardsigmoid",
    )
)  # fmt: skip


# --------------------------------------------------------------------------- baseline


def random_baseline(model: nn.Module, seed: int = 0) -> nn.Module:
    """A randomly initialised twin of ``model``: deep copy, then ``reset_parameters()`` everywhere.

    Every sub-module (the root included) with a callable ``reset_parameters`` is reset, in
    ``named_modules()`` order, under ``torch.manual_seed(seed)`` inside a forked RNG (the
    global torch RNG is left untouched), so the twin is a function of ``(model, seed)``.
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
        for name, module in twin.named_modules():
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
    twin._vaelens_not_reset = kept  # type: ignore[attr-defined]
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


# --------------------------------------------------------------------------- result


@dataclass
class AnalysisResult:
    """What :func:`analyze` found. ``data`` is the nested result (the analysis.json schema).

    ``traversals``: example traversals ``(n_show, rows, cols, C, H, W)`` for the figures
    (rows: latent dims or VQ positions named in ``traversal_rows``), not serialised.
    """

    data: dict[str, Any]
    traversals: np.ndarray | None = field(default=None, repr=False)
    traversal_rows: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Strict-JSON-ready dict (NaN/Inf -> ``None``, numpy -> lists)."""
        return to_jsonable(self.data)

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def scalars(self) -> dict[str, float | None]:
        """The flat scalar metrics a study stores (``"ces.mean"``, ``"modularity.<layer>"``, ...)."""
        d = self.to_dict()
        out: dict[str, float | None] = {}

        def put(prefix: str, part: dict[str, Any]) -> None:
            out[f"{prefix}ces.mean"] = part["ces"]["mean"]
            out[f"{prefix}specificity.mean"] = part["specificity"]["mean"]
            for layer, m in part["modularity"].items():
                out[f"{prefix}modularity.{layer}"] = m["seeds"]
            for layer, m in part["monosemantic_fraction"].items():
                out[f"{prefix}monosemantic_fraction.{layer}"] = m["fraction"]
            if not prefix:
                out["ces.mean_normalised"] = part["ces"]["mean_normalised"]
                out["specificity.mean_normalised"] = part["specificity"]["mean_normalised"]
                for layer, c in part["clusters"].items():
                    out[f"cluster_coherence.{layer}"] = c["coherence"]
                for fac, by in part["mediation"]["by_layer"].items():
                    for layer, s in by.items():
                        out[f"mediation.{fac}.{layer}"] = s

        put("", d)
        if d.get("baseline"):
            put("baseline.", d["baseline"])
        out["recon.trained"] = d["meta"]["recon_error"]
        out["recon.baseline"] = d["meta"]["recon_error_baseline"]
        out["recon.mse_trained"] = d["meta"].get("recon_mse")
        out["recon.mse_baseline"] = d["meta"].get("recon_mse_baseline")
        out["recon.mse_mean_image"] = d["meta"].get("recon_mse_mean_image")
        return out


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


def _posterior_var(model: nn.Module, x: torch.Tensor) -> np.ndarray | float:
    """Mean posterior variance ``E_x[sigma_i^2(x)]`` per latent dim (0 without a log-variance).

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
        return logvar.double().exp().mean(0).numpy()
    return 0.0


def _ci_pairs(values: np.ndarray, n_boot: int, seed: int) -> list[list[float]]:
    return [list(bootstrap_ci(v, n_boot=n_boot, random_state=seed)[1:]) for v in values]


class _Probe:
    """Pixel-space ridge probe of the factors (targets scaled to [0, 1] by level count)."""

    def __init__(self, images: np.ndarray, factors: np.ndarray, sizes: Sequence[int]) -> None:
        from sklearn.linear_model import RidgeCV

        scale = np.maximum(np.asarray(sizes, dtype=np.float64) - 1, 1)
        y = factors / scale
        xf = images.reshape(images.shape[0], -1).astype(np.float64)
        n_fit = max(2, round(0.8 * xf.shape[0]))
        self.model = RidgeCV(alphas=np.logspace(-3, 3, 7)).fit(xf[:n_fit], y[:n_fit])
        pred = self.model.predict(xf[n_fit:])
        yt = y[n_fit:]
        ss_res = ((yt - pred) ** 2).sum(0)
        ss_tot = ((yt - yt.mean(0)) ** 2).sum(0)
        with np.errstate(divide="ignore", invalid="ignore"):
            self.r2 = np.where(ss_tot > 0, 1 - ss_res / ss_tot, np.nan)

    def sweep(self, perturbed: np.ndarray) -> np.ndarray:
        """``(L, V, N, *pix)`` images -> ``(L, F)`` mean over N of the range over V of predictions."""
        lv = perturbed.shape[:3]
        pred = self.model.predict(perturbed.reshape(int(np.prod(lv)), -1).astype(np.float64))
        pred = pred.reshape(*lv, -1)
        return (pred.max(1) - pred.min(1)).mean(1)


@dataclass
class _Inputs:
    x: torch.Tensor
    pairs: list[tuple[torch.Tensor, torch.Tensor] | None]
    factor_names: list[str]
    probe: _Probe
    values: list[float]


def _code_swaps(
    model: nn.Module, lens: Lens, x: torch.Tensor, swaps: int, seed: int, max_batch: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """Base ``(N, *pix)`` and code-swapped outputs ``(P, V, N, *pix)`` of a VQ model."""
    codes = encode_codes(lens, x)
    n, grid = codes.shape[0], tuple(codes.shape[1:])
    flat = codes.reshape(n, -1)
    p = flat.shape[1]
    k = codebook_size(model)
    if k < 2:
        raise ModelContractError(f"{type(model).__name__}: a code swap needs at least 2 codes")
    gen = torch.Generator().manual_seed(int(seed))
    shift = torch.randint(1, k, (p, swaps, n), generator=gen)
    new = (flat.T.unsqueeze(1) + shift) % k  # (P, V, N)
    variants = flat.unsqueeze(0).unsqueeze(0).repeat(p, swaps, 1, 1)  # (P, V, N, P)
    idx = torch.arange(p)
    variants[idx, :, :, idx] = new[idx]
    rows = variants.reshape(-1, *grid)
    with torch.no_grad():
        base = lens.output_map(model.decode_codes(codes))
        outs = torch.cat(
            [
                lens.output_map(model.decode_codes(rows[s : s + max_batch]))
                for s in range(0, rows.shape[0], max_batch)
            ]
        )
    return base.numpy(), outs.reshape(p, swaps, n, *outs.shape[1:]).numpy(), p


def _layer_metrics(
    R: dict[str, np.ndarray], n_boot: int, seed: int, threshold: float
) -> dict[str, Any]:
    poly: dict[str, Any] = {}
    mono: dict[str, Any] = {}
    modul: dict[str, Any] = {}
    clus: dict[str, Any] = {}
    for layer, r in R.items():
        pr = polysemanticity(r, form="participation")
        ps = polysemanticity(r, form="seeds")
        live = ~np.isnan(pr)
        poly[layer] = {
            "participation": pr,
            "seeds_form": ps,
            "mean_participation": float(pr[live].mean()) if live.any() else None,
            "mean_seeds_form": float(ps[live].mean()) if live.any() else None,
        }
        frac, n_mono, n_live = monosemantic_fraction(r, threshold=threshold)
        ci = bootstrap_ci((pr[live] < threshold).astype(float), n_boot=n_boot, random_state=seed)
        mono[layer] = {
            "fraction": frac,
            "n_monosemantic": n_mono,
            "n_live": n_live,
            "n_units": int(r.shape[0]),
            "ci": [ci[1], ci[2]],
        }
        modul[layer] = {
            "seeds": circuit_modularity(r, form="seeds"),
            "signed": circuit_modularity(r, form="signed"),
        }
        clus[layer] = circuit_clusters(r, random_state=seed).to_dict()
    return {"polysemanticity": poly, "monosemantic_fraction": mono, "modularity": modul,
            "clusters": clus}  # fmt: skip


def _analyze_one(
    model: nn.Module,
    lens: Lens,
    inp: _Inputs,
    *,
    layers: list[str],
    enc_layers: list[str],
    channel_layers: list[str],
    vq: bool,
    n_boot: int,
    seed: int,
    edge_threshold: float,
    probe_r2_min: float,
    mono_threshold: float,
    vq_swaps: int,
    vq_samples: int,
    max_batch: int,
    n_show: int,
) -> tuple[dict[str, Any], float, np.ndarray, list[str]]:
    x = inp.x
    fnames = inp.factor_names
    with torch.no_grad():
        z = lens.encode_mean(x)
    recon = _recon_error(model, lens, x, z)
    notes: list[str] = []

    # ---- level 2: latent interventions -> CES, specificity, latent -> factor
    if vq:
        xs = x[:vq_samples]
        base, pert, n_units = _code_swaps(model, lens, xs, vq_swaps, seed, max_batch)
        rows = [f"pos {i}" for i in range(n_units)]
        show = pert[:, :, :n_show]
        order = np.argsort(-causal_effect_strength(base[:n_show], show))[:10]
        trav = show[order].transpose(2, 0, 1, *range(3, show.ndim))
        rows = [rows[i] for i in order]
    else:
        with torch.no_grad():
            base = lens.decode_output(z).numpy()
            t = latent_traversal(lens, z, values=inp.values, max_batch=max_batch).numpy()
        pert = t.transpose(1, 2, 0, *range(3, t.ndim))  # (L, V, N, ...)
        n_units = pert.shape[0]
        trav = t[:n_show]
        rows = [f"z{i}" for i in range(n_units)]
    ces = causal_effect_strength(base, pert)
    ces_n = causal_effect_strength(base, pert, normalise=True)
    per_sample = np.stack(
        [causal_effect_strength(base[i : i + 1], pert[:, :, i : i + 1]) for i in range(len(base))],
        axis=1,
    )  # (L, N)
    _, mlo, mhi = bootstrap_ci(per_sample.mean(0), n_boot=n_boot, random_state=seed)
    spec, null = intervention_specificity(base, pert, form="seeds")
    spec_n, _ = intervention_specificity(base, pert, form="normalised")
    live_spec = ~np.isnan(spec)
    out: dict[str, Any] = {
        "ces": {
            "per_dim": ces,
            "per_dim_normalised": ces_n,
            "per_dim_ci": _ci_pairs(per_sample, n_boot, seed),
            "mean": float(ces.mean()),
            "mean_ci": [mlo, mhi],
            "mean_normalised": float(ces_n.mean()),
            "n_samples": len(base),
        },
        "specificity": {
            "per_dim": spec,
            "per_dim_normalised": spec_n,
            "null_fraction": null,
            "mean": float(spec[live_spec].mean()) if live_spec.any() else None,
            "mean_normalised": float(spec_n[live_spec].mean()) if live_spec.any() else None,
        },
    }
    l2f = inp.probe.sweep(pert)  # (L, F)
    del pert

    # ---- level 1: input interventions -> unit responses, factor -> latent
    spread = np.sqrt(z.numpy().astype(np.float64).var(0) + _posterior_var(model, x))
    if vq:  # mean over the code dimensions of each position (z_e is (code_dim, g, g) flat)
        spread = spread.reshape(-1, n_units).mean(0)
    R = {name: np.zeros((lens.units(name), len(fnames))) for name in layers}
    f2l = np.zeros((len(fnames), n_units))
    for f, pair in enumerate(inp.pairs):
        if pair is None:
            continue
        res = input_intervention(lens, pair[0], pair[1], layers, max_batch=max_batch)
        for name in layers:
            R[name][:, f] = res.deltas[name].mean(0).numpy()
        dz = res.delta_z.abs().numpy().astype(np.float64)
        if vq:
            dz = dz.reshape(dz.shape[0], -1, n_units).mean(1)
        shift = dz.mean(0)
        f2l[f] = np.divide(shift, spread, out=np.zeros_like(shift), where=spread > 1e-12)
    out["unit_responses"] = {k: v for k, v in R.items()}
    out.update(_layer_metrics(R, n_boot, seed, mono_threshold))

    # ---- levels 3-4: patching / mediation onto the latent mean
    by_layer: dict[str, dict[str, float]] = {}
    by_channel: dict[str, dict[str, Any]] = {}
    by_attr: dict[str, dict[str, Any]] = {}
    for f, pair in enumerate(inp.pairs):
        name = fnames[f]
        by_layer[name] = {}
        by_channel[name] = {}
        by_attr[name] = {}
        if pair is None:
            continue
        if enc_layers:
            att = attribution_patching(lens, pair[0], pair[1], enc_layers, metric="projection",
                                       target="latent", max_batch=max_batch)  # fmt: skip
            with torch.no_grad():
                moved = (lens.encode_mean(pair[1]) - lens.encode_mean(pair[0])).abs().sum(1) > 0
            by_attr[name] = {
                n: (att[n][moved].mean(0).numpy() if bool(moved.any())
                    else np.full(lens.units(n), np.nan))
                for n in enc_layers
            }  # fmt: skip
        if enc_layers:
            med = mediation(lens, pair[0], pair[1], enc_layers, component="layer",
                            target="latent", max_batch=max_batch)  # fmt: skip
            by_layer[name] = {n: float(med.mean_indirect_share(n)) for n in enc_layers}
            if not bool((med.total > 0).any()):
                by_layer[name] = {n: float("nan") for n in enc_layers}
        if channel_layers:
            medc = mediation(lens, pair[0], pair[1], channel_layers, component="unit",
                             target="latent", max_batch=max_batch)  # fmt: skip
            zero = not bool((medc.total > 0).any())
            by_channel[name] = {
                n: (np.full(lens.units(n), np.nan) if zero else medc.mean_indirect_share(n).numpy())
                for n in channel_layers
            }
    out["mediation"] = {
        "target": "latent",
        "by_layer": by_layer,
        "by_channel": by_channel,
        "by_channel_attribution": by_attr,
        "method": (
            "indirect share <NIE, TE> / ||TE||^2 of the latent-mean shift TE caused by an input "
            "intervention on the factor, averaged over pairs with TE != 0 (null where no pair "
            "moves the latent); by_layer patches the whole layer, by_channel one channel at a "
            "time (exact, channel_layers only); by_channel_attribution: first-order "
            "(attribution patching, projection metric) estimate for every encoder layer"
        ),
    }

    # ---- causal graph
    usable = np.nan_to_num(inp.probe.r2, nan=-np.inf) >= probe_r2_min
    edges = [
        [int(i), int(f)]
        for i, f in zip(*np.nonzero(l2f >= edge_threshold), strict=True)
        if usable[f]
    ]
    out["causal_graph"] = {
        "latent_to_factor": l2f,
        "factor_to_latent": f2l,
        "edges": edges,
        "edge_threshold": edge_threshold,
        "probe_r2": inp.probe.r2,
        "probe_r2_min": probe_r2_min,
        "latent_units": "code positions" if vq else "latent dimensions",
        "method": (
            "latent_to_factor[i][f]: mean over samples of the range, over the traversal values "
            "of unit i, of a pixel-space ridge probe of factor f (targets scaled to [0, 1]) "
            "applied to the decoded traversals; factor_to_latent[f][i]: E|delta mu_i| under an "
            "input intervention on f divided by sqrt(Var(mu_i) + E[sigma_i^2]) (0 for "
            "zero-spread latents); edges: "
            "latent_to_factor >= edge_threshold for factors with held-out probe R^2 >= "
            "probe_r2_min"
        ),
    }
    if vq:
        notes.append(
            f"VQ: latent units are the {n_units} code positions; latent interventions replace the "
            f"code at one position by {vq_swaps} random other codes on {len(base)} samples"
        )
    out["_notes"] = notes
    return out, recon, trav, rows


def _vq_block(lens: Lens, x: torch.Tensor, seed: int, max_batch: int) -> dict[str, Any]:
    with torch.no_grad():
        z = lens.encode_mean(x)
    g = torch.Generator().manual_seed(int(seed))
    dims = torch.randperm(z.shape[1], generator=g)[: min(64, z.shape[1])].tolist()
    cont = latent_shift_effects(lens, z, 1.0, dims, max_batch=max_batch).numpy()
    swap, _ = code_swap_effects(lens, x, seed=seed, max_batch=max_batch)
    swap = swap.numpy()
    return {
        "code_swap_effect_mean": float(swap.mean()),
        "code_swap_effect_ci": list(bootstrap_ci(swap.mean(1), random_state=seed)[1:]),
        "continuous_effect_mean": float(cont.mean()),
        "continuous_zero_fraction": float((cont <= 1e-7).mean()),
        "continuous_shift": 1.0,
        "continuous_dims": dims,
        "n_positions": int(swap.shape[1]),
    }


# --------------------------------------------------------------------------- analyze


def analyze(
    model: nn.Module,
    dataset: object,
    *,
    n_samples: int = 64,
    seed: int = 0,
    values: Sequence[float] | None = None,
    layers: Sequence[str] | None = None,
    channel_layers: Sequence[str] | None = None,
    baseline: bool = True,
    n_probe: int | None = None,
    edge_threshold: float = 0.1,
    probe_r2_min: float = 0.2,
    mono_threshold: float = 1.5,
    n_boot: int = 1000,
    vq_swaps: int = 3,
    vq_samples: int = 32,
    max_batch: int | None = None,
    n_show: int = 3,
) -> AnalysisResult:
    """Run the four interventions and the causal metrics on ``model`` and on its random twin.

    Parameters
    ----------
    model: any ``nn.Module`` with ``encode(x)`` (tensor, ``(mean, logvar)`` or ``.mean``) and
        ``decode(z)``; vaelens models' ``output_mean`` maps decoded logits to images.
    dataset: any object meeting the ground-truth dataset contract.
    n_samples: examples for the traversals and pairs per factor for the input interventions
        and mediation (bootstrap intervals over them are reported).
    seed: seeds the samples, pairs, probe data, bootstrap, clustering and the baseline.
    values: latent intervention values (default the seeds' 7 over ``[-3, 3]``).
    layers: hook points for unit responses (default :func:`default_layers`).
    channel_layers: encoder hook points mediated channel by channel (default: the encoder
        layer nearest the latent that is not latent-sized); every analysed encoder layer is
        mediated as a whole.
    baseline: also analyse :func:`random_baseline` ``(model, seed)``.
    n_probe: dataset images for the pixel-space factor probe (default ``max(256, 4 n)``).

    Returns an :class:`AnalysisResult` (``to_dict()``: the analysis.json schema; see the
    module docstring for the causal-graph and VQ conventions).
    """
    t0 = time.perf_counter()
    ds = check_dataset(dataset)
    if not isinstance(model, nn.Module):
        raise ModelContractError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(n_samples, int) or n_samples < 2:
        raise ConfigError(f"n_samples: expected an int >= 2, got {n_samples!r}")
    for arg, v in (("n_boot", n_boot), ("vq_swaps", vq_swaps), ("vq_samples", vq_samples)):
        if not isinstance(v, int) or v < 1:
            raise ConfigError(f"{arg}: expected a positive int, got {v!r}")
    vals = [float(v) for v in (DEFAULT_VALUES if values is None else values)]
    if not vals or not all(math.isfinite(v) for v in vals):
        raise ConfigError(f"values: expected a non-empty list of finite floats, got {values!r}")
    rng = np.random.default_rng(seed)
    fnames = [str(n) for n in ds.factor_names]
    factors = ds.sample_factors(n_samples, rng)
    x = torch.from_numpy(np.ascontiguousarray(ds.images(factors), dtype=np.float32))
    if tuple(x.shape[1:]) != tuple(ds.image_shape):
        raise ConfigError(
            f"dataset {ds.name}: images are {tuple(x.shape[1:])}, image_shape says {ds.image_shape}"
        )
    model_shape = getattr(model, "image_shape", None)
    if model_shape is not None and tuple(model_shape) != tuple(ds.image_shape):
        raise ConfigError(
            f"dataset {ds.name}: images are {tuple(ds.image_shape)} but the model "
            f"{type(model).__name__} takes image_shape {tuple(model_shape)}"
        )
    notes: list[str] = []
    pairs: list[tuple[torch.Tensor, torch.Tensor] | None] = []
    for f, size in enumerate(ds.factor_sizes):
        if int(size) < 2:
            pairs.append(None)
            notes.append(f"factor {fnames[f]!r} has one level: not intervened on (zero column)")
            continue
        xa, xb, _, _ = factor_pairs(ds, f, n_samples, seed=rng)
        pairs.append((xa, xb))
    npb = n_probe if n_probe is not None else max(256, 4 * n_samples)
    pf = ds.sample_factors(int(npb), rng)
    probe = _Probe(np.asarray(ds.images(pf), dtype=np.float32), pf, ds.factor_sizes)
    inp = _Inputs(x=x, pairs=pairs, factor_names=fnames, probe=probe, values=vals)

    lens = Lens(model, example=x[:2])
    vq = is_vq(model)
    mb = int(max_batch) if max_batch is not None else 64
    chosen = list(layers) if layers is not None else default_layers(lens, x)
    for n in chosen:
        lens.hook_point(n)
    if not chosen:
        raise ModelContractError(f"{type(model).__name__}: no hook point to analyse")
    enc = [n for n in chosen if lens.hook_point(n).phase == "encode"]
    dec = [n for n in chosen if lens.hook_point(n).phase == "decode"]
    with torch.no_grad():
        latent_dim = int(lens.encode_mean(x[:2]).shape[1])
    if channel_layers is None:
        chan = _channel_layer_default(lens, x, enc, latent_dim)
    else:
        chan = list(channel_layers)
        bad = [n for n in chan if lens.hook_point(n).phase != "encode"]
        if bad:
            raise ConfigError(f"channel_layers: {bad} are not encoder hook points")

    kw = dict(
        layers=chosen, enc_layers=enc, channel_layers=chan, vq=vq, n_boot=n_boot, seed=seed,
        edge_threshold=edge_threshold, probe_r2_min=probe_r2_min, mono_threshold=mono_threshold,
        vq_swaps=vq_swaps, vq_samples=min(vq_samples, n_samples), max_batch=mb, n_show=n_show,
    )  # fmt: skip
    main, recon, trav, rows = _analyze_one(model, lens, inp, **kw)  # type: ignore[arg-type]
    notes += main.pop("_notes")
    main["vq"] = _vq_block(lens, x[: min(vq_samples, n_samples)], seed, mb) if vq else None
    adj = getattr(ds, "adjacency", None)
    main["causal_graph"]["factor_graph"] = (
        {"names": fnames, "adjacency": np.asarray(adj()).tolist()} if callable(adj) else None
    )
    recon_base: float | None = None
    mse_base: float | None = None
    mse = _recon_mse(lens, x)
    if baseline:
        twin = random_baseline(model, seed)
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
            notes.append(
                f"baseline: modules without reset_parameters kept their values: {not_reset}"
            )
        blens = Lens(twin, output=lens.output_map, example=x[:2])
        base_res, recon_base, _, _ = _analyze_one(twin, blens, inp, **kw)  # type: ignore[arg-type]
        mse_base = _recon_mse(blens, x)
        base_res.pop("_notes")
        base_res["vq"] = _vq_block(blens, x[: min(vq_samples, n_samples)], seed, mb) if vq else None
        base_res["causal_graph"]["factor_graph"] = main["causal_graph"]["factor_graph"]
        main["baseline"] = base_res
    else:
        main["baseline"] = None
    if enc:
        notes.append(
            "mediation.by_layer patches a whole layer: in a sequential encoder every layer is a "
            "cut of the graph, so its share is 1 wherever the factor moves the latent (0 for a "
            "layer off the path to the mean, e.g. logvar); by_channel is the informative part"
        )
    meta = {
        "model": type(model).__name__,
        "variant": getattr(model, "variant", None),
        "dataset": str(ds.name),
        "factor_names": fnames,
        "latent_dim": int(main["ces"]["per_dim"].shape[0]),
        "latent_dim_raw": latent_dim,
        "n_samples": int(n_samples),
        "seed": int(seed),
        "latent_values": vals if not vq else [],
        "encoder_layers": enc,
        "decoder_layers": dec,
        "layers": chosen,
        "channel_layers": chan,
        "vq": bool(vq),
        "recon_error": recon,
        "recon_error_kind": (
            "bce_per_image"
            if getattr(model, "likelihood", None) == "bernoulli"
            else "sse_per_image"
        ),
        "recon_error_baseline": recon_base,
        "recon_mse": mse,
        "recon_mse_baseline": mse_base,
        "recon_mse_mean_image": float(((x - x.mean(0, keepdim=True)) ** 2).mean()),
        "n_probe": int(npb),
        "n_boot": int(n_boot),
        "seconds": time.perf_counter() - t0,
        "notes": notes,
    }
    data = {"meta": meta, **main}
    return AnalysisResult(data=data, traversals=trav, traversal_rows=rows)
