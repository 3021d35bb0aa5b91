"""The report's figures, drawn with matplotlib's object API (no pyplot state) into PNG bytes.

Each function takes a :class:`~vaelens.report.data.StudyData` and a dataset name and
returns the PNG as bytes, or ``None`` when the study has nothing to draw for it.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy import stats as sps

from vaelens.analysis import AnalysisResult
from vaelens.report.data import StudyData, arch_label
from vaelens.stats import match_by_rank, summary_interval

__all__ = [
    "causal_graph",
    "ces_specificity_per_dim",
    "ces_vs_dci",
    "graph_weights",
    "mediation_by_channel",
    "modularity_layers",
    "modularity_vs_effect",
    "png_bytes",
    "polysemanticity_hist",
    "unit_response_heatmaps",
]

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf"]
DPI = 90


@contextmanager
def _nan_ok() -> Iterator[None]:
    """Silence numpy's empty-slice warnings (all-NaN columns are drawn as gaps)."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def png_bytes(fig: Figure) -> bytes:
    """Render ``fig`` to PNG bytes."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    return buf.getvalue()


def _first_run(study: StudyData, ds: str, arch: str) -> AnalysisResult | None:
    found = study.analyses_of(ds, arch)
    return found[0] if found else None


def _archs_with_runs(study: StudyData, ds: str) -> list[str]:
    return [a for a in study.architectures if _first_run(study, ds, a) is not None]


def unit_response_heatmaps(study: StudyData, ds: str, max_layers: int = 4) -> bytes | None:
    """Unit x factor response R(n, f) of each layer (rows: architectures, first seed)."""
    archs = _archs_with_runs(study, ds)
    layers = [x for x in study.layers(ds)][:max_layers]
    if not archs or not layers:
        return None
    factors = study.factor_names(ds)
    fig = Figure(figsize=(2.6 * len(layers), 2.4 * len(archs)))
    axes = fig.subplots(len(archs), len(layers), squeeze=False)
    for i, arch in enumerate(archs):
        a = _first_run(study, ds, arch)
        for j, layer in enumerate(layers):
            ax = axes[i][j]
            metrics = a.trained.layers.get(layer) if a is not None else None
            if metrics is None:
                ax.text(0.5, 0.5, "n/a", ha="center", va="center")
                ax.set_axis_off()
                continue
            r = metrics.responses
            # each unit's responses as shares of its total: shows which factors drive it
            tot = np.nansum(r, axis=1, keepdims=True)
            share = np.divide(r, tot, out=np.zeros_like(r), where=tot > 0)
            ax.imshow(share, aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks(range(len(factors)), factors, rotation=60, fontsize=6)
            ax.tick_params(axis="y", labelsize=6)
            if i == 0:
                ax.set_title(layer, fontsize=8)
            if j == 0:
                ax.set_ylabel(f"{arch_label(arch)}\nunit", fontsize=8)
    fig.suptitle(f"{ds}: unit responses (share of each unit's response per factor)", fontsize=9)
    return png_bytes(fig)


def graph_weights(analysis: AnalysisResult) -> tuple[np.ndarray, np.ndarray, str]:
    """The latent x factor graph a run's report draws: ``(weights in [0, 1], edge mask, source)``.

    With an interchange block (docs/interchange.md) the weights are its shares (absolute, so
    that panels compare) and the edges its own (share CI lower bound above its threshold):
    ``source = "interchange"``. Without, the probe graph of
    :class:`~vaelens.analysis.CausalGraph` over its strongest weight, edges at 0.15:
    ``source = "probe"``.
    """
    inter = analysis.trained.interchange
    if inter is not None:
        w = np.clip(np.nan_to_num(np.asarray(inter.share, dtype=float)), 0.0, 1.0)
        mask = np.zeros(w.shape, dtype=bool)
        for i, f in inter.edge_set:
            mask[i, f] = True
        return w, mask, "interchange"
    w = np.nan_to_num(np.atleast_2d(analysis.trained.causal_graph.latent_to_factor))
    w = w / (w.max() if w.size and w.max() > 0 else 1.0)
    return w, w > 0.15, "probe"


def causal_graph(study: StudyData, ds: str) -> bytes | None:
    """Bipartite latent -> factor graph per architecture (first seed); edge width ~ weight
    (:func:`graph_weights`: the interchange graph where the run has one)."""
    archs = _archs_with_runs(study, ds)
    if not archs:
        return None
    factors = study.factor_names(ds)
    fig = Figure(figsize=(3.2 * len(archs), 3.6))
    axes = fig.subplots(1, len(archs), squeeze=False)[0]
    sources = set()
    for ax, arch in zip(axes, archs, strict=True):
        first = _first_run(study, ds, arch)
        assert first is not None  # _archs_with_runs keeps architectures with an analysis
        w, mask, source = graph_weights(first)
        sources.add(source)
        _draw_bipartite(ax, w, mask, factors)
        ax.set_title(f"{arch_label(arch)} ({source})", fontsize=9)
    what = {
        frozenset({"interchange"}): "interchange causal graph (edges: share CI above threshold)",
        frozenset({"probe"}): "probe causal graph (edges ≥ 15% of the strongest)",
    }.get(frozenset(sources), "causal graph (interchange where the run has one, else probe)")
    fig.suptitle(f"{ds}: latent-to-factor {what}", fontsize=9)
    return png_bytes(fig)


def _draw_bipartite(ax: Any, w: np.ndarray, mask: np.ndarray, factors: list[str]) -> None:
    """Latents on the left, factors on the right, one line per edge in ``mask`` (width and
    opacity grow with its weight ``w`` in [0, 1])."""
    n_l, n_f = w.shape
    yl = np.linspace(1, 0, n_l)
    yf = np.linspace(1, 0, n_f) if n_f > 1 else np.array([0.5])
    for i, f in zip(*np.nonzero(mask), strict=True):
        s = w[i, f]
        ax.plot([0, 1], [yl[i], yf[f]], color="#444", lw=0.3 + 3 * s, alpha=0.2 + 0.8 * s)
    ax.scatter(np.zeros(n_l), yl, s=60, color="#1f77b4", zorder=3)
    ax.scatter(np.ones(n_f), yf, s=60, color="#d62728", zorder=3)
    for i in range(n_l):
        ax.text(-0.06, yl[i], f"z{i}", ha="right", va="center", fontsize=7)
    for f in range(n_f):
        name = factors[f] if f < len(factors) else f"f{f}"
        ax.text(1.06, yf[f], name, ha="left", va="center", fontsize=7)
    ax.set_xlim(-0.4, 1.6)
    ax.set_axis_off()


def _per_rank(study: StudyData, ds: str, arch: str) -> tuple[np.ndarray, np.ndarray]:
    """CES and specificity ``(runs, rank)`` of one (dataset, architecture): each run's
    latents ordered by CES (rank 1 = strongest), NaN-padded."""
    found = study.analyses_of(ds, arch)
    if not found:
        return np.empty((0, 0)), np.empty((0, 0))
    ces, spec = match_by_rank(
        [a.trained.latent.ces for a in found], [a.trained.latent.specificity for a in found]
    )
    return ces, spec


def ces_specificity_per_dim(study: StudyData, ds: str) -> bytes | None:
    """Bars of CES and specificity per latent rank (latents ordered by CES in each run).

    Bar: mean across seeds. With 3 or more seeds, error bars are the log-scale t interval
    ``mean * exp(-+ t_{n-1} SE / mean)`` (:func:`~vaelens.stats.summary_interval`; both
    metrics are non-negative, the interval cannot cross zero); with fewer, each seed's value
    is drawn as a dot instead.
    """
    archs = _archs_with_runs(study, ds)
    if not archs:
        return None
    fig = Figure(figsize=(9, 3.4))
    axes = fig.subplots(1, 2)
    width = 0.8 / len(archs)
    for k, arch in enumerate(archs):
        blocks = _per_rank(study, ds, arch)
        for ax, m in zip(axes, blocks, strict=True):
            if m.size == 0:
                continue
            sums = [summary_interval(col, nonnegative=bool(np.all(col[np.isfinite(col)] >= 0)))
                    for col in m.T]  # fmt: skip
            mean = np.array([s["mean"] for s in sums])
            lo = np.array([s["ci_low"] for s in sums])
            hi = np.array([s["ci_high"] for s in sums])
            x = np.arange(1, m.shape[1] + 1) + (k - (len(archs) - 1) / 2) * width
            ax.bar(
                x, np.nan_to_num(mean), width, color=COLORS[k % len(COLORS)], label=arch_label(arch)
            )
            has = np.isfinite(lo) & np.isfinite(hi)
            if has.any():
                yerr = np.vstack([mean[has] - lo[has], hi[has] - mean[has]])
                ax.errorbar(
                    x[has], mean[has], yerr=yerr, fmt="none", ecolor="black", lw=0.8, capsize=1.5
                )
            few = np.array([s["n"] < 3 for s in sums])
            for j in np.flatnonzero(few):
                pts = m[:, j][np.isfinite(m[:, j])]
                ax.scatter(np.full(pts.size, x[j]), pts, s=6, color="black", zorder=3)
    for ax, title in zip(axes, ("CES", "specificity"), strict=True):
        ax.set_xlabel("latent rank by CES (1 = strongest in each run)")
        ax.set_title(f"{ds}: {title} per latent rank", fontsize=9)
    axes[0].legend(fontsize=7)
    return png_bytes(fig)


def polysemanticity_hist(study: StudyData, ds: str) -> bytes | None:
    """Histograms of the mu layer's per-unit PS (participation and Roy (2025) form), all seeds."""
    layer = study.mu_layer(ds)
    archs = _archs_with_runs(study, ds)
    if layer is None or not archs:
        return None
    fig = Figure(figsize=(9, 3.2))
    axes = fig.subplots(1, 2)
    n_f = max(1, len(study.factor_names(ds)))
    bins = np.linspace(1, n_f, 16) if n_f > 1 else 10
    drawn = False
    for ax, form, title in zip(
        axes,
        ("participation", "roy2025_form"),
        ("participation form (1 = monosemantic)", "Roy (2025) printed form (|F| = monosemantic)"),
        strict=True,
    ):
        for k, arch in enumerate(archs):
            vals = [
                getattr(a.trained.layers[layer].polysemanticity, form)
                for a in study.analyses_of(ds, arch)
                if layer in a.trained.layers
            ]
            v = np.concatenate(vals) if vals else np.empty(0)
            v = v[np.isfinite(v)]
            if v.size:
                drawn = True
                ax.hist(
                    v,
                    bins=bins,
                    alpha=0.45,
                    color=COLORS[k % len(COLORS)],
                    label=f"{arch_label(arch)} (mean {v.mean():.2f})",
                )
        ax.set_title(f"{ds}, {layer}: PS, {title}", fontsize=8)
        ax.set_xlabel("PS")
        ax.set_ylabel("units")
        if ax.get_legend_handles_labels()[0]:  # a panel with no finite PS has nothing to key
            ax.legend(fontsize=6)
    return png_bytes(fig) if drawn else None


def modularity_layers(study: StudyData, ds: str) -> bytes | None:
    """Modularity (Roy (2025) form) per layer per architecture, mean ± 95% CI; baseline dashed."""
    layers = study.layers(ds)
    archs = _archs_with_runs(study, ds)
    c = study.completed[study.completed.dataset == ds]
    if not layers or not archs:
        return None
    fig = Figure(figsize=(7, 3.4))
    ax = fig.subplots()
    x = np.arange(len(layers))
    for k, arch in enumerate(archs):
        sub = c[c.architecture == arch]
        for prefix, style in (("modularity", "-o"), ("baseline.modularity", ":x")):
            cols = [f"{prefix}.{layer}" for layer in layers]
            m = np.column_stack(
                [
                    sub[col].to_numpy(float) if col in sub else np.full(len(sub), np.nan)
                    for col in cols
                ]
            )
            if not np.isfinite(m).any():
                continue
            with _nan_ok():
                mean = np.nanmean(m, axis=0)
                n = np.sum(np.isfinite(m), axis=0)
                sd = (
                    np.nanstd(m, axis=0, ddof=1) if m.shape[0] > 1 else np.full(len(layers), np.nan)
                )
                half = sps.t.ppf(0.975, np.maximum(n - 1, 1)) * sd / np.sqrt(np.maximum(n, 1))
            label = arch_label(arch) + (" (random init)" if prefix.startswith("baseline") else "")
            base = prefix.startswith("baseline")
            ax.errorbar(
                x,
                mean,
                yerr=None if base else np.where(np.isfinite(half), half, 0),
                fmt=style,
                color=COLORS[k % len(COLORS)],
                label=label,
                capsize=2,
                ms=4,
            )
    ax.set_xticks(x, layers, rotation=20, fontsize=7)
    ax.set_ylabel("modularity (Roy (2025) form)")
    ax.set_title(f"{ds}: circuit modularity by layer", fontsize=9)
    ax.legend(fontsize=6, ncol=2)
    return png_bytes(fig)


def modularity_vs_effect(study: StudyData) -> bytes | None:
    """One point a run: mu-layer modularity against mean CES (colour: architecture)."""
    c = study.completed
    fig = Figure(figsize=(5.5, 4))
    ax = fig.subplots()
    markers = "osD^v<>"
    drawn = False
    for k, arch in enumerate(study.architectures):
        for j, ds in enumerate(study.datasets):
            mu = study.mu_layer(ds)
            sub = c[(c.architecture == arch) & (c.dataset == ds)]
            col = f"modularity.{mu}"
            if sub.empty or col not in sub or "ces.mean" not in sub:
                continue
            x, y = sub[col].to_numpy(float), sub["ces.mean"].to_numpy(float)
            ok = np.isfinite(x) & np.isfinite(y)
            if ok.any():
                drawn = True
                ax.scatter(
                    x[ok],
                    y[ok],
                    color=COLORS[k % len(COLORS)],
                    marker=markers[j % 7],
                    label=f"{arch_label(arch)}, {ds}",
                    s=30,
                )
    if not drawn:
        return None
    ax.set_xlabel("mu-layer modularity (Roy (2025) form)")
    ax.set_ylabel("mean CES (Roy (2025) form)")
    ax.set_title("modularity against causal effect strength (one point a run)", fontsize=9)
    ax.legend(fontsize=6)
    return png_bytes(fig)


def _cumulative_shares(study: StudyData, ds: str, arch: str, factor: str) -> np.ndarray:
    """``(runs, channels)`` cumulative indirect share of each run's top-k channels."""
    curves = []
    for a in study.analyses_of(ds, arch):
        for shares in a.trained.mediation.by_channel.get(factor, {}).values():
            s = np.asarray(shares, dtype=np.float64)
            if s.size and np.isfinite(s).all() and np.any(s):
                curves.append(np.cumsum(np.sort(s)[::-1]))
    if not curves:
        return np.empty((0, 0))
    n = max(c.size for c in curves)
    return np.vstack([np.pad(c, (0, n - c.size), mode="edge") for c in curves])


def mediation_by_channel(study: StudyData, ds: str, max_channels: int = 16) -> bytes | None:
    """Cumulative mediation share of the top-k channels, a line per factor, a panel per arch.

    Channels are ranked by their indirect share within each run (channel indices are not
    comparable across seeds), then the curves are averaged over seeds.
    """
    archs = _archs_with_runs(study, ds)
    factors = study.factor_names(ds)
    curves = {arch: {f: _cumulative_shares(study, ds, arch, f) for f in factors} for arch in archs}
    archs = [a for a in archs if any(c.size for c in curves[a].values())]
    if not archs:
        return None
    fig = Figure(figsize=(3.2 * len(archs) + 0.8, 3.2))
    axes = fig.subplots(1, len(archs), squeeze=False)[0]
    for ax, arch in zip(axes, archs, strict=True):
        for k, f in enumerate(factors):
            m = curves[arch][f]
            if not m.size:
                continue
            mean = m.mean(axis=0)[:max_channels]
            ax.plot(np.arange(1, mean.size + 1), mean, "-o", ms=2.5,
                    color=COLORS[k % len(COLORS)], label=f"{f} (n={m.shape[0]})")  # fmt: skip
        ax.axhline(1.0, color="#888", lw=0.6, ls=":")
        ax.set_xlabel("top-k channels", fontsize=7)
        ax.set_title(arch_label(arch), fontsize=8)
        ax.tick_params(labelsize=6)
    axes[0].set_ylabel("cumulative indirect share", fontsize=7)
    axes[0].legend(fontsize=6)
    fig.suptitle(f"{ds}: how many channels carry each factor (mean over seeds)", fontsize=9)
    return png_bytes(fig)


def ces_vs_dci(study: StudyData) -> bytes | None:
    """Mean CES against DCI D, one small point a run and one large ringed point per
    architecture mean (the unit of the study), per-dataset OLS line with its 95% band.

    Band: ``ŷ ± t_{n-2} s sqrt(1/n + (x - x̄)² / Sxx)`` (confidence band of the mean line).
    """
    c = study.continuous  # VQ-VAE runs have their own table
    if "ces.mean" not in c or "dci.disentanglement" not in c:
        return None
    fig = Figure(figsize=(6, 4.2))
    ax = fig.subplots()
    drawn = False
    for k, ds in enumerate(study.datasets):
        sub = c[c.dataset == ds]
        x = sub["dci.disentanglement"].to_numpy(float)
        y = sub["ces.mean"].to_numpy(float)
        ok = np.isfinite(x) & np.isfinite(y)
        x, y = x[ok], y[ok]
        if x.size == 0:
            continue
        drawn = True
        col = COLORS[k % len(COLORS)]
        ax.scatter(x, y, color=col, s=14, alpha=0.6, label=f"{ds} (n={x.size} runs)")
        both = sub[np.isfinite(sub["dci.disentanglement"]) & np.isfinite(sub["ces.mean"])]
        means = both.groupby("architecture")[["dci.disentanglement", "ces.mean"]].mean()
        ax.scatter(
            means["dci.disentanglement"], means["ces.mean"], color=col, s=70,
            edgecolors="black", linewidths=1.0, marker="D", zorder=3,
        )  # fmt: skip
        if x.size >= 3 and np.ptp(x) > 0:
            fit = sps.linregress(x, y)
            xs = np.linspace(x.min(), x.max(), 50)
            yhat = fit.intercept + fit.slope * xs
            resid = y - (fit.intercept + fit.slope * x)
            s = np.sqrt(np.sum(resid**2) / (x.size - 2)) if x.size > 2 else np.nan
            sxx = np.sum((x - x.mean()) ** 2)
            half = (
                sps.t.ppf(0.975, x.size - 2) * s * np.sqrt(1 / x.size + (xs - x.mean()) ** 2 / sxx)
            )
            ax.plot(xs, yhat, color=col, lw=1.2)
            ax.fill_between(xs, yhat - half, yhat + half, color=col, alpha=0.15)
    if not drawn:
        return None
    ax.set_xlabel("DCI disentanglement")
    ax.set_ylabel("mean CES (Roy (2025) form)")
    ax.set_title(
        "CES against DCI D: runs, architecture means (◆), per-dataset OLS fit and 95% band",
        fontsize=9,
    )
    ax.legend(fontsize=7)
    return png_bytes(fig)
