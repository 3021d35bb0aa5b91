"""Figures of an :class:`~vaelens.analysis.AnalysisResult` (matplotlib, Agg backend).

:func:`write_figures` writes into a directory:

- ``traversals.png``: for a few samples, rows = latent dims (VQ: the code positions with
  the largest effect), columns = intervention values (the absolute sweep; with
  ``latent_sweep="posterior"`` the posterior one, ``m_i + a s_i``); each row is labelled
  with the factor whose interchange share it carries most (where that is an edge of the
  interchange graph) or as collapsed (:func:`traversal_labels`);
- ``unit_responses_<layer>.png``: one heatmap per analysed layer, units x factors;
- ``mediation_layers.png`` (layers x factors) and ``mediation_channels_<layer>.png``
  (channels x factors): mean indirect-effect share onto the latent mean;
- ``causal_graph.png``: latent -> factor weights with the edges marked;
- ``ces_specificity.png``: CES (with bootstrap CIs) and normalised specificity per latent
  unit, trained vs random baseline.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from vaelens.analysis.result import AnalysisResult
from vaelens.lens import traversal_grid

__all__ = ["traversal_labels", "write_figures"]

Save = Callable[[Any, str], None]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def traversal_labels(result: AnalysisResult) -> list[str]:
    """The traversal rows' labels: ``"z4"`` plus ``" scale 0.74"`` (the factor of the
    row's largest interchange share, when that share is an edge of the interchange graph)
    or ``" collapsed"`` (mean KL below ``collapse_kl``); the bare names otherwise."""
    trained = result.trained
    inter, post = trained.interchange, trained.posterior
    edges = set() if inter is None else inter.edge_set
    out = []
    for name in result.traversal_rows:
        m = re.fullmatch(r"z(\d+)", name)
        i = int(m.group(1)) if m else -1
        if i >= 0 and post is not None and i < len(post.collapsed) and post.collapsed[i]:
            name += " collapsed"
        elif i >= 0 and inter is not None and i < len(inter.share):
            row = np.nan_to_num(np.asarray(inter.share[i], dtype=float), nan=-np.inf)
            f = int(np.argmax(row))
            if (i, f) in edges:
                name += f" {inter.factor_names[f]} {row[f]:.2f}"
        out.append(name)
    return out


def _traversals(plt: Any, result: AnalysisResult, save: Save) -> None:
    trav, meta = result.traversals, result.meta
    if trav is None or not trav.size:
        return
    n = trav.shape[0]
    fig, axes = plt.subplots(
        1, n, figsize=(2.2 + 1.0 * trav.shape[2] * n, 0.8 + 0.9 * trav.shape[1])
    )
    axes = np.atleast_1d(axes)
    vals = [] if meta.vq else list(meta.settings.latent_values)
    posterior = result.trained.latent.sweep == "posterior"
    for k in range(n):
        grid = traversal_grid(trav[k])
        ax = axes[k]
        ax.imshow(grid[..., 0] if grid.shape[-1] == 1 else grid, cmap="gray", vmin=0, vmax=1)
        h = trav.shape[-2] + 1
        ax.set_yticks([h * r + h / 2 - 1 for r in range(trav.shape[1])])
        ax.set_yticklabels(traversal_labels(result), fontsize=7)
        ax.set_xticks([])
        label = ", ".join(f"{v:g}" for v in vals)
        label = f"value: m_i + s_i x ({label})" if posterior else f"value: {label}"
        ax.set_xlabel(label if vals else "code swaps")
        ax.set_title(f"sample {k}")
    fig.suptitle(f"Latent traversals ({meta.model})")
    save(fig, "traversals.png")


def _heatmap(
    plt: Any, m: np.ndarray, fnames: list[str], title: str, label: str, **kw: Any
) -> tuple[Any, Any]:
    fig, ax = plt.subplots(figsize=(1.8 + 0.7 * len(fnames), 3 + min(6, 0.05 * m.shape[0])))
    im = ax.imshow(m, aspect="auto", interpolation="nearest", **kw)
    ax.set_xticks(range(len(fnames)))
    ax.set_xticklabels(fnames, rotation=45, ha="right")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, label=label)
    return fig, ax


def _unit_responses(plt: Any, result: AnalysisResult, save: Save) -> None:
    fnames = result.meta.factor_names
    for layer, metrics in result.trained.layers.items():
        fig, ax = _heatmap(plt, metrics.responses, fnames, f"Unit responses R(n, f): {layer}",
                           "E|A(x) - A(x~)|", cmap="viridis")  # fmt: skip
        ax.set_ylabel("unit")
        save(fig, f"unit_responses_{_safe(layer)}.png")


def _mediation(plt: Any, result: AnalysisResult, save: Save) -> None:
    fnames, med = result.meta.factor_names, result.trained.mediation
    layers = result.meta.encoder_layers
    if layers:
        m = np.array([[med.by_layer[f].get(n, np.nan) for f in fnames] for n in layers])
        fig, ax = plt.subplots(figsize=(1.8 + 0.7 * len(fnames), 1.5 + 0.4 * len(layers)))
        im = ax.imshow(m, aspect="auto", cmap="magma", vmin=0, vmax=1)
        ax.set_xticks(range(len(fnames)))
        ax.set_xticklabels(fnames, rotation=45, ha="right")
        ax.set_yticks(range(len(layers)))
        ax.set_yticklabels(layers)
        ax.set_title("Mediation onto the latent mean: indirect share by layer")
        fig.colorbar(im, ax=ax, label="indirect share")
        save(fig, "mediation_layers.png")
    for layer in result.meta.channel_layers:
        cols = [med.by_channel[f].get(layer) for f in fnames]
        units = next((len(c) for c in cols if c is not None), 0)
        if not units:
            continue
        m = np.array([c if c is not None else np.full(units, np.nan) for c in cols]).T
        lim = float(np.nanmax(np.abs(m))) if np.isfinite(m).any() else 1.0
        lim = lim if lim > 0 else 1.0
        fig, ax = _heatmap(plt, m, fnames, f"Indirect share per channel: {layer}",
                           "indirect share", cmap="coolwarm", vmin=-lim, vmax=lim)  # fmt: skip
        ax.set_ylabel("channel")
        save(fig, f"mediation_channels_{_safe(layer)}.png")


def _causal_graph(plt: Any, result: AnalysisResult, save: Save) -> None:
    fnames, cg = result.meta.factor_names, result.trained.causal_graph
    w = cg.latent_to_factor
    if not w.size:
        return
    fig, ax = plt.subplots(figsize=(2 + 0.8 * len(fnames), 1.5 + min(8, 0.35 * w.shape[0])))
    im = ax.imshow(w, aspect="auto", cmap="Blues", vmin=0)
    for i, f in cg.edges:
        ax.add_patch(plt.Rectangle((f - 0.5, i - 0.5), 1, 1, fill=False, ec="red", lw=2))
    ax.set_xticks(range(len(fnames)))
    ax.set_xticklabels(
        [f"{n}\n(probe R2 {v:.2f})" for n, v in zip(fnames, cg.probe_r2, strict=True)],
        rotation=45,
        ha="right",
    )
    ax.set_ylabel(cg.latent_units)
    ax.set_title(
        f"Latent -> factor (edges >= {cg.edge_threshold:g} in red; "
        f"probes with R2 < {cg.probe_r2_min:g} give none)",
        fontsize=9,
    )
    fig.colorbar(im, ax=ax, label="probe sweep (fraction of factor range)")
    save(fig, "causal_graph.png")


def _ces_specificity(plt: Any, result: AnalysisResult, save: Save) -> None:
    lat, base = result.trained.latent, result.baseline
    ces, ci = lat.ces, lat.ces_ci
    idx = np.arange(len(ces))
    width = 0.4
    fig, axes = plt.subplots(2, 1, figsize=(max(6.5, 0.35 * len(ces) + 2), 6))
    err = np.abs(np.stack([ces - ci[:, 0], ci[:, 1] - ces]))
    axes[0].bar(idx - width / 2, ces, width, yerr=np.nan_to_num(err), label="trained", capsize=2)
    axes[1].bar(idx - width / 2, np.nan_to_num(lat.specificity_normalised), width, label="trained")
    if base is not None:
        axes[0].bar(idx + width / 2, base.latent.ces, width, label="random init")
        axes[1].bar(idx + width / 2, np.nan_to_num(base.latent.specificity_normalised), width,
                    label="random init")  # fmt: skip
    axes[0].set_ylabel("CES (eq. 7)")
    axes[0].set_title("Causal effect strength per latent unit (95% bootstrap CI)", fontsize=10)
    axes[1].set_ylabel("specificity (1 - H / log P)")
    axes[1].set_title("Intervention specificity (normalised; dead units shown as 0)", fontsize=10)
    for ax in axes:
        ax.set_xlabel("latent unit")
        ax.legend(fontsize=8, loc="lower right", framealpha=0.9)
    save(fig, "ces_specificity.png")


def write_figures(result: AnalysisResult, out_dir: str | Path) -> list[Path]:
    """Write the figures of ``result`` into ``out_dir``; return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def save(fig: Any, name: str) -> None:
        path = out / name
        fig.tight_layout()
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)

    for draw in (_traversals, _unit_responses, _mediation, _causal_graph, _ces_specificity):
        draw(plt, result, save)
    return written
