"""The four intervention levels of an analysis, one function each, and the blocks they feed.

Each level takes the network's :class:`~vaelens.lens.Lens`, the shared :class:`Inputs` (the
same samples, pairs and probe for the trained model and its random twin) and the
:class:`~vaelens.analysis.AnalysisSettings`, and returns typed blocks of
:mod:`vaelens.analysis.result`:

1. :func:`input_level`: pairs differing in one factor -> unit responses ``R(n, f)`` of every
   analysed layer and the factor -> latent weights;
2. :func:`latent_level`: traversals (VQ: code swaps) -> CES, specificity, the decoded
   interventions the causal graph probes; :func:`posterior_effects`: the same sweep in units
   of each latent's aggregate posterior (``latent_sweep``);
3. :func:`patching_level`: attribution patching (projection metric) of every channel of
   every encoder layer onto the latent-mean shift;
4. :func:`mediation_level`: exact mediation by whole layer and channel by channel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from vaelens.analysis.result import (
    CausalGraph,
    Clusters,
    FactorGraph,
    LatentEffects,
    LatentPosterior,
    LayerMetrics,
    Modularity,
    Monosemanticity,
    Polysemanticity,
    VQEffects,
)
from vaelens.analysis.settings import AnalysisSettings
from vaelens.errors import ArgumentError
from vaelens.lens import (
    Lens,
    attribution_patching,
    code_swap_effects,
    code_swap_outputs,
    input_intervention,
    latent_shift_effects,
    latent_traversal,
    mediation,
)
from vaelens.metrics.causal import (
    causal_effect_strength,
    circuit_clusters,
    circuit_modularity,
    dead_units,
    intervention_specificity,
    monosemantic_fraction,
    polysemanticity,
    unit_responses,
)
from vaelens.stats import bootstrap_ci

__all__ = [
    "Inputs",
    "PixelProbe",
    "causal_graph",
    "input_level",
    "latent_level",
    "layer_metrics",
    "mediation_level",
    "patching_level",
    "posterior_effects",
    "posterior_values",
    "vq_effects",
]

Pair = tuple[torch.Tensor, torch.Tensor]


class PixelProbe:
    """Pixel-space ridge probe of the factors (targets scaled to [0, 1] by level count).

    Fitted on 80% of ``images``; ``r2`` is the held-out R^2 per factor (NaN for a constant
    factor).
    """

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
class Inputs:
    """What every network of one analysis is run on (so trained and twin see the same data)."""

    x: torch.Tensor  #: (N, C, H, W) samples of the latent interventions
    pairs: list[Pair | None]  #: per factor, (x, x~) differing in it (None: one-level factor)
    factor_names: list[str]
    probe: PixelProbe


def _ci_rows(values: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    return np.array(
        [bootstrap_ci(v, n_boot=n_boot, random_state=seed)[1:] for v in values], dtype=np.float64
    ).reshape(len(values), 2)


def _latent_block(
    base: np.ndarray,
    pert: np.ndarray,
    s: AnalysisSettings,
    vq: bool,
    *,
    sweep: str = "absolute",
    values: np.ndarray | None = None,
) -> LatentEffects:
    """CES and specificity of decoded interventions ``pert`` ``(L, V, N, ...)`` vs ``base``."""
    per_sample = np.stack(
        [causal_effect_strength(base[i : i + 1], pert[:, :, i : i + 1]) for i in range(len(base))],
        axis=1,
    )  # (L, N)
    _, lo, hi = bootstrap_ci(per_sample.mean(0), n_boot=s.n_boot, random_state=s.seed)
    spec, null = intervention_specificity(base, pert, form="roy2025")
    spec_n, _ = intervention_specificity(base, pert, form="normalised")
    return LatentEffects(
        units="code positions" if vq else "latent dimensions",
        sweep="code swaps" if vq else sweep,
        values=None if vq else values,
        ces=causal_effect_strength(base, pert),
        ces_normalised=causal_effect_strength(base, pert, normalise=True),
        ces_ci=_ci_rows(per_sample, s.n_boot, s.seed),
        ces_mean_ci=np.array([lo, hi]),
        specificity=spec,
        specificity_normalised=spec_n,
        null_fraction=null,
        n_samples=len(base),
    )


def _vq_interventions(
    lens: Lens, x: torch.Tensor, s: AnalysisSettings, max_batch: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    xs = x[: min(s.vq_samples, s.n_samples)]
    clean, swapped, _ = code_swap_outputs(
        lens, xs, swaps=s.vq_swaps, seed=s.seed, max_batch=max_batch
    )
    base, pert = clean.numpy(), swapped.numpy()  # (N, ...), (P, V, N, ...)
    show = pert[:, :, : s.n_show]
    order = np.argsort(-causal_effect_strength(base[: s.n_show], show))[:10]
    trav = show[order].transpose(2, 0, 1, *range(3, show.ndim))
    return base, pert, trav, [f"pos {i}" for i in order]


def posterior_values(s: AnalysisSettings, mean: np.ndarray, spread: np.ndarray) -> np.ndarray:
    """Values of the posterior sweep, ``(L, V)``: ``v[i, k] = m_i + a_k s_i``.

    ``a`` = ``latent_values``, ``m_i = E_x mu_i``, ``s_i = sqrt(Var_x(mu_i) + E_x[sigma_i^2])``:
    the quantiles ``Phi(a_k)`` of the Gaussian approximation ``N(m_i, s_i^2)`` of latent ``i``'s
    aggregate posterior (0.13%, 2.3%, 15.9%, 50%, 84.1%, 97.7%, 99.87% for the default
    ``[-3, 3]`` grid). A latent whose aggregate posterior is the prior ``N(0, 1)`` gets the
    absolute grid itself.
    """
    a = np.asarray(s.latent_values, dtype=np.float64)
    return np.asarray(mean, np.float64)[:, None] + np.asarray(spread, np.float64)[:, None] * a


def _continuous_sweep(
    lens: Lens, x: torch.Tensor, s: AnalysisSettings, values: np.ndarray | None, max_batch: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(base (N, ...), pert (L, V, N, ...), traversals (N, L, V, ...))``.

    ``values=None``: every latent set to ``latent_values``; else latent ``i`` to ``values[i]``.
    """
    with torch.no_grad():
        z = lens.encode_mean(x)
        base = lens.decode_output(z).numpy()
        if values is None:
            t = latent_traversal(lens, z, values=s.latent_values, max_batch=max_batch).numpy()
        else:
            t = np.concatenate(
                [
                    latent_traversal(
                        lens, z, dims=[i], values=torch.as_tensor(v), max_batch=max_batch
                    ).numpy()
                    for i, v in enumerate(values)
                ],
                axis=1,
            )
    return base, t.transpose(1, 2, 0, *range(3, t.ndim)), t  # pert: (L, V, N, ...)


def latent_level(
    lens: Lens,
    inp: Inputs,
    s: AnalysisSettings,
    *,
    vq: bool,
    max_batch: int,
    posterior: LatentPosterior | None = None,
) -> tuple[LatentEffects, np.ndarray, np.ndarray, list[str]]:
    """Level 2: every latent unit set to each value (VQ: each code position swapped).

    The absolute sweep (``latent_values``), or the posterior sweep (:func:`posterior_values`
    of ``posterior``) when ``latent_sweep="posterior"``. Returns the :class:`LatentEffects`,
    ``latent_to_factor`` ``(L, F)`` (the probe's sweep of the decoded interventions), and
    example traversals ``(n_show, rows, cols, C, H, W)`` with their row names.
    """
    if vq:
        base, pert, trav, rows = _vq_interventions(lens, inp.x, s, max_batch)
        block = _latent_block(base, pert, s, vq)
    else:
        values = None
        if s.latent_sweep == "posterior":
            if posterior is None:
                raise ArgumentError("latent_level: latent_sweep='posterior' needs the posterior")
            values = posterior_values(s, posterior.mean, posterior.spread)
        base, pert, t = _continuous_sweep(lens, inp.x, s, values, max_batch)
        trav, rows = t[: s.n_show], [f"z{i}" for i in range(pert.shape[0])]
        sweep = "absolute" if values is None else "posterior"
        shown = np.broadcast_to(np.asarray(s.latent_values), pert.shape[:2]).copy()
        block = _latent_block(
            base, pert, s, vq, sweep=sweep, values=shown if values is None else values
        )
    return block, inp.probe.sweep(pert), trav, rows


def posterior_effects(
    lens: Lens, inp: Inputs, s: AnalysisSettings, posterior: LatentPosterior, *, max_batch: int
) -> LatentEffects:
    """CES and specificity under the posterior sweep (:func:`posterior_values`), continuous only."""
    values = posterior_values(s, posterior.mean, posterior.spread)
    base, pert, _ = _continuous_sweep(lens, inp.x, s, values, max_batch)
    return _latent_block(base, pert, s, False, sweep="posterior", values=values)


def input_level(
    lens: Lens,
    inp: Inputs,
    layers: Sequence[str],
    spread: np.ndarray,
    *,
    n_units: int,
    vq: bool,
    max_batch: int,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Level 1: unit responses ``R[layer]`` ``(units, F)`` and ``factor_to_latent`` ``(F, L)``.

    ``R[layer][n, f] = E |A_n(x~_f) - A_n(x)|`` (mean over a channel's positions);
    ``factor_to_latent[f, i] = E |mu_i(x~_f) - mu_i(x)| / spread_i`` (0 where ``spread_i = 0``;
    VQ: averaged over the code dimensions of each position).
    """
    n_f = len(inp.factor_names)
    R = {name: np.zeros((lens.units(name), n_f)) for name in layers}
    f2l = np.zeros((n_f, n_units))
    for f, pair in enumerate(inp.pairs):
        if pair is None:
            continue
        res = input_intervention(lens, pair[0], pair[1], list(layers), max_batch=max_batch)
        for name in layers:
            R[name][:, f] = unit_responses(res.deltas[name])
        dz = res.delta_z.abs().numpy().astype(np.float64)
        if vq:
            dz = dz.reshape(dz.shape[0], -1, n_units).mean(1)
        shift = dz.mean(0)
        f2l[f] = np.divide(shift, spread, out=np.zeros_like(shift), where=spread > 1e-12)
    return R, f2l


def _layer(r: np.ndarray, s: AnalysisSettings, collapsed: np.ndarray | None = None) -> LayerMetrics:
    dead = dead_units(r, s.dead_rtol)
    coll = np.zeros(r.shape[0], bool) if collapsed is None else np.asarray(collapsed, bool)
    kw = {"rtol": s.dead_rtol, "live": ~coll}
    pr = polysemanticity(r, form="participation", **kw)
    live = ~np.isnan(pr)
    frac, n_mono, n_live = monosemantic_fraction(r, threshold=s.mono_threshold, **kw)
    ci = bootstrap_ci(
        (pr[live] < s.mono_threshold).astype(float), n_boot=s.n_boot, random_state=s.seed
    )
    cl = circuit_clusters(r, random_state=s.seed, **kw)
    return LayerMetrics(
        responses=r,
        dead=dead,
        collapsed=coll,
        polysemanticity=Polysemanticity(
            participation=pr, roy2025_form=polysemanticity(r, form="roy2025", **kw)
        ),
        monosemantic=Monosemanticity(
            fraction=frac, n_monosemantic=n_mono, n_live=n_live, n_units=r.shape[0], ci=ci[1:]
        ),
        modularity=Modularity(
            roy2025=circuit_modularity(r, form="roy2025", **kw),
            signed=circuit_modularity(r, form="signed", **kw),
        ),
        clusters=Clusters.model_validate(cl.to_dict()),
    )


def layer_metrics(
    R: dict[str, np.ndarray],
    s: AnalysisSettings,
    collapsed: dict[str, np.ndarray] | None = None,
) -> dict[str, LayerMetrics]:
    """Polysemanticity, monosemantic share, modularity and clusters of each layer's ``R``.

    On live units: not dead at ``s.dead_rtol`` and not in ``collapsed[layer]`` (the latent
    layer's collapsed latents).
    """
    coll = collapsed or {}
    return {layer: _layer(r, s, coll.get(layer)) for layer, r in R.items()}


def _moved(lens: Lens, pair: Pair) -> torch.Tensor:
    with torch.no_grad():
        return (lens.encode_mean(pair[1]) - lens.encode_mean(pair[0])).abs().sum(1) > 0


def patching_level(
    lens: Lens, inp: Inputs, enc_layers: Sequence[str], *, max_batch: int
) -> dict[str, dict[str, np.ndarray]]:
    """Level 3: ``[factor][layer]`` per-channel attribution-patching share of the latent shift.

    The projection metric ``<mu(patched) - mu(x), mu(x~) - mu(x)> / ||.||^2`` to first order
    (one backward), averaged over the pairs whose latent mean moves (NaN when none does).
    """
    out: dict[str, dict[str, np.ndarray]] = {}
    for name, pair in zip(inp.factor_names, inp.pairs, strict=True):
        out[name] = {}
        if pair is None or not enc_layers:
            continue
        att = attribution_patching(lens, pair[0], pair[1], list(enc_layers), metric="projection",
                                   target="latent", max_batch=max_batch)  # fmt: skip
        moved = _moved(lens, pair)
        out[name] = {
            n: (att[n][moved].mean(0).numpy() if bool(moved.any())
                else np.full(lens.units(n), np.nan))
            for n in enc_layers
        }  # fmt: skip
    return out


def mediation_level(
    lens: Lens,
    inp: Inputs,
    enc_layers: Sequence[str],
    channel_layers: Sequence[str],
    *,
    max_batch: int,
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, np.ndarray]]]:
    """Level 4: mean indirect shares onto the latent mean, ``(by_layer, by_channel)``.

    ``by_layer[factor][layer]``: the whole layer patched; ``by_channel[factor][layer]``: each
    channel of the ``channel_layers`` (exact activation patching). NaN where no pair moves
    the latent.
    """
    by_layer: dict[str, dict[str, float]] = {}
    by_channel: dict[str, dict[str, np.ndarray]] = {}
    for name, pair in zip(inp.factor_names, inp.pairs, strict=True):
        by_layer[name], by_channel[name] = {}, {}
        if pair is None:
            continue
        if enc_layers:
            med = mediation(lens, pair[0], pair[1], list(enc_layers), component="layer",
                            target="latent", max_batch=max_batch)  # fmt: skip
            moved = bool((med.total > 0).any())
            by_layer[name] = {
                n: float(med.mean_indirect_share(n)) if moved else float("nan") for n in enc_layers
            }
        if channel_layers:
            medc = mediation(lens, pair[0], pair[1], list(channel_layers), component="unit",
                             target="latent", max_batch=max_batch)  # fmt: skip
            zero = not bool((medc.total > 0).any())
            by_channel[name] = {
                n: (np.full(lens.units(n), np.nan) if zero else medc.mean_indirect_share(n).numpy())
                for n in channel_layers
            }
    return by_layer, by_channel


GRAPH_METHOD = (
    "latent_to_factor[i][f]: mean over samples of the range, over the traversal values "
    "of unit i, of a pixel-space ridge probe of factor f (targets scaled to [0, 1]) "
    "applied to the decoded traversals; factor_to_latent[f][i]: E|delta mu_i| under an "
    "input intervention on f divided by sqrt(Var(mu_i) + E[sigma_i^2]) (0 for "
    "zero-spread latents); edges: latent_to_factor >= edge_threshold for factors with "
    "held-out probe R^2 >= probe_r2_min"
)


def causal_graph(
    l2f: np.ndarray,
    f2l: np.ndarray,
    probe: PixelProbe,
    s: AnalysisSettings,
    *,
    vq: bool,
    factor_graph: FactorGraph | None,
) -> CausalGraph:
    """The latent <-> factor weights and edges (see :mod:`vaelens.analysis.core`)."""
    usable = np.nan_to_num(probe.r2, nan=-np.inf) >= s.probe_r2_min
    edges = [
        [int(i), int(f)]
        for i, f in zip(*np.nonzero(l2f >= s.edge_threshold), strict=True)
        if usable[f]
    ]
    return CausalGraph(
        latent_to_factor=l2f,
        factor_to_latent=f2l,
        edges=np.array(edges, dtype=np.int64).reshape(-1, 2),
        edge_threshold=s.edge_threshold,
        probe_r2=probe.r2,
        probe_r2_min=s.probe_r2_min,
        latent_units="code positions" if vq else "latent dimensions",
        method=GRAPH_METHOD,
        factor_graph=factor_graph,
    )


def vq_effects(lens: Lens, x: torch.Tensor, s: AnalysisSettings, *, max_batch: int) -> VQEffects:
    """A VQ model's code-swap effect beside the effect of a +1 shift of 64 sampled ``z_e`` dims."""
    x = x[: min(s.vq_samples, s.n_samples)]
    with torch.no_grad():
        z = lens.encode_mean(x)
    g = torch.Generator().manual_seed(int(s.seed))
    dims = torch.randperm(z.shape[1], generator=g)[: min(64, z.shape[1])].tolist()
    cont = latent_shift_effects(lens, z, 1.0, dims, max_batch=max_batch).numpy()
    swap = code_swap_effects(lens, x, seed=s.seed, max_batch=max_batch)[0].numpy()
    return VQEffects(
        code_swap_effect_mean=float(swap.mean()),
        code_swap_effect_ci=np.array(bootstrap_ci(swap.mean(1), random_state=s.seed)[1:]),
        continuous_effect_mean=float(cont.mean()),
        continuous_zero_fraction=float((cont <= 1e-7).mean()),
        continuous_shift=1.0,
        continuous_dims=dims,
        n_positions=int(swap.shape[1]),
    )
