"""Figures of an :class:`~vaelens.analysis.AnalysisResult` (matplotlib, Agg backend).

:func:`write_figures` writes into a directory:

- ``traversals.png``: for a few samples, rows = latent dims (VQ: the code positions with
  the largest effect), columns = intervention values;
- ``unit_responses_<layer>.png``: one heatmap per analysed layer, units x factors;
- ``mediation_layers.png`` (layers x factors) and ``mediation_channels_<layer>.png``
  (channels x factors): mean indirect-effect share onto the latent mean;
- ``causal_graph.png``: latent -> factor weights with the edges marked;
- ``ces_specificity.png``: CES (with bootstrap CIs) and normalised specificity per latent
  unit, trained vs random baseline.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from vaelens.lens import traversal_grid

__all__ = ["write_figures"]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _arr(v: Any) -> np.ndarray:
    return (
        np.array([[np.nan if e is None else e for e in row] for row in v], dtype=float)
        if (v and isinstance(v[0], list))
        else np.array([np.nan if e is None else e for e in v], dtype=float)
    )


def write_figures(result: Any, out_dir: str | Path) -> list[Path]:
    """Write the figures of ``result`` (an AnalysisResult) into ``out_dir``; return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    d = result.to_dict()
    meta = d["meta"]
    fnames = meta["factor_names"]
    written: list[Path] = []

    def save(fig: Any, name: str) -> None:
        path = out / name
        fig.tight_layout()
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)

    # traversals
    trav = result.traversals
    if trav is not None and trav.size:
        n = trav.shape[0]
        fig, axes = plt.subplots(
            1, n, figsize=(2.2 + 1.0 * trav.shape[2] * n, 0.8 + 0.9 * trav.shape[1])
        )
        axes = np.atleast_1d(axes)
        for k in range(n):
            grid = traversal_grid(trav[k])
            ax = axes[k]
            ax.imshow(grid[..., 0] if grid.shape[-1] == 1 else grid, cmap="gray", vmin=0, vmax=1)
            h = trav.shape[-2] + 1
            ax.set_yticks([h * r + h / 2 - 1 for r in range(trav.shape[1])])
            ax.set_yticklabels(result.traversal_rows, fontsize=7)
            ax.set_xticks([])
            vals = meta["latent_values"]
            ax.set_xlabel("value: " + ", ".join(f"{v:g}" for v in vals) if vals else "code swaps")
            ax.set_title(f"sample {k}")
        fig.suptitle(f"Latent traversals ({meta['model']})")
        save(fig, "traversals.png")

    # unit responses
    for layer, R in d["unit_responses"].items():
        r = _arr(R)
        fig, ax = plt.subplots(figsize=(1.5 + 0.7 * len(fnames), 3 + min(6, 0.05 * r.shape[0])))
        im = ax.imshow(r, aspect="auto", cmap="viridis", interpolation="nearest")
        ax.set_xticks(range(len(fnames)))
        ax.set_xticklabels(fnames, rotation=45, ha="right")
        ax.set_ylabel("unit")
        ax.set_title(f"Unit responses R(n, f): {layer}")
        fig.colorbar(im, ax=ax, label="E|A(x) - A(x~)|")
        save(fig, f"unit_responses_{_safe(layer)}.png")

    # mediation
    by_layer = d["mediation"]["by_layer"]
    layers = meta["encoder_layers"]
    if layers:
        m = np.array(
            [
                [np.nan if by_layer[f].get(n) is None else by_layer[f][n] for f in fnames]
                for n in layers
            ],
            dtype=float,
        )
        fig, ax = plt.subplots(figsize=(1.8 + 0.7 * len(fnames), 1.5 + 0.4 * len(layers)))
        im = ax.imshow(m, aspect="auto", cmap="magma", vmin=0, vmax=1)
        ax.set_xticks(range(len(fnames)))
        ax.set_xticklabels(fnames, rotation=45, ha="right")
        ax.set_yticks(range(len(layers)))
        ax.set_yticklabels(layers)
        ax.set_title("Mediation onto the latent mean: indirect share by layer")
        fig.colorbar(im, ax=ax, label="indirect share")
        save(fig, "mediation_layers.png")
    for layer in meta.get("channel_layers", []):
        cols = [d["mediation"]["by_channel"][f].get(layer) for f in fnames]
        units = next((len(c) for c in cols if c), 0)
        if not units:
            continue
        m = np.array([_arr(c) if c else np.full(units, np.nan) for c in cols], dtype=float).T
        fig, ax = plt.subplots(figsize=(1.8 + 0.7 * len(fnames), 3 + min(6, 0.05 * units)))
        lim = float(np.nanmax(np.abs(m))) if np.isfinite(m).any() else 1.0
        lim = lim if lim > 0 else 1.0
        im = ax.imshow(
            m, aspect="auto", cmap="coolwarm", vmin=-lim, vmax=lim, interpolation="nearest"
        )
        ax.set_xticks(range(len(fnames)))
        ax.set_xticklabels(fnames, rotation=45, ha="right")
        ax.set_ylabel("channel")
        ax.set_title(f"Indirect share per channel: {layer}")
        fig.colorbar(im, ax=ax, label="indirect share")
        save(fig, f"mediation_channels_{_safe(layer)}.png")

    # causal graph
    cg = d["causal_graph"]
    w = _arr(cg["latent_to_factor"])
    if w.size:
        fig, ax = plt.subplots(figsize=(2 + 0.8 * len(fnames), 1.5 + min(8, 0.35 * w.shape[0])))
        im = ax.imshow(w, aspect="auto", cmap="Blues", vmin=0)
        for i, f in cg["edges"]:
            ax.add_patch(plt.Rectangle((f - 0.5, i - 0.5), 1, 1, fill=False, ec="red", lw=2))
        r2 = [np.nan if v is None else v for v in cg["probe_r2"]]
        ax.set_xticks(range(len(fnames)))
        ax.set_xticklabels(
            [f"{n}\n(probe R2 {v:.2f})" for n, v in zip(fnames, r2, strict=True)],
            rotation=45,
            ha="right",
        )
        ax.set_ylabel(cg.get("latent_units", "latent"))
        ax.set_title(
            f"Latent -> factor (edges >= {cg['edge_threshold']:g} in red; "
            f"probes with R2 < {cg['probe_r2_min']:g} give none)",
            fontsize=9,
        )
        fig.colorbar(im, ax=ax, label="probe sweep (fraction of factor range)")
        save(fig, "causal_graph.png")

    # CES / specificity
    ces = _arr(d["ces"]["per_dim"])
    ci = _arr(d["ces"]["per_dim_ci"])
    spec = _arr(d["specificity"]["per_dim_normalised"])
    base = d.get("baseline")
    idx = np.arange(len(ces))
    width = 0.4
    fig, axes = plt.subplots(2, 1, figsize=(max(6.5, 0.35 * len(ces) + 2), 6))
    err = np.abs(np.stack([ces - ci[:, 0], ci[:, 1] - ces])) if ci.ndim == 2 else None
    axes[0].bar(idx - width / 2, ces, width, yerr=None if err is None else np.nan_to_num(err),
                label="trained", capsize=2)  # fmt: skip
    axes[1].bar(idx - width / 2, np.nan_to_num(spec), width, label="trained")
    if base:
        axes[0].bar(idx + width / 2, _arr(base["ces"]["per_dim"]), width, label="random init")
        axes[1].bar(idx + width / 2, np.nan_to_num(_arr(base["specificity"]["per_dim_normalised"])),
                    width, label="random init")  # fmt: skip
    axes[0].set_ylabel("CES (eq. 7)")
    axes[0].set_title("Causal effect strength per latent unit (95% bootstrap CI)", fontsize=10)
    axes[1].set_ylabel("specificity (1 - H / log P)")
    axes[1].set_title("Intervention specificity (normalised; dead units shown as 0)", fontsize=10)
    for ax in axes:
        ax.set_xlabel("latent unit")
        ax.legend(fontsize=8, loc="lower right", framealpha=0.9)
    save(fig, "ces_specificity.png")
    return written
