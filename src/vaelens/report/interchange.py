"""The report's interchange tables, read from each run's typed analysis (docs/interchange.md).

- :func:`interchange_matrices`: per (dataset, architecture), the latent x factor matrix of
  interchange shares with their bootstrap CIs for the run of the lowest seed, the edges of
  the interchange causal graph and each factor's minimal latent set;
- :func:`circuit_table`: the unit-level circuits (docs/circuits.md) of the same runs;
- :func:`alignment_table`: axis-aligned against learned alignment per factor.

Imports from: analysis, report.data, report.tables.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from vaelens.analysis import AnalysisResult
from vaelens.report.data import StudyData, arch_label, fmt
from vaelens.report.tables import Table

__all__ = ["alignment_table", "circuit_table", "interchange_matrices", "latent_set", "share_cell"]


def share_cell(est: float, lo: float, hi: float, edge: bool = False) -> str:
    """``0.93 [0.90, 0.95]`` (two decimals: a share is a fraction of the factor's effect;
    ``*`` marks an edge of the interchange graph); n/a for NaN."""
    if not np.isfinite(est):
        return "n/a"
    ci = f" [{lo:.2f}, {hi:.2f}]" if np.isfinite(lo) and np.isfinite(hi) else ""
    return f"{est:.2f}{ci}{' *' if edge else ''}".replace("-0.00", "0.00")


def latent_set(units: list[int]) -> str:
    """``{z0, z7, z9}``: a set of latent dims as the tables and the CLI print it."""
    return "{" + ", ".join(f"z{j}" for j in units) + "}"


def _first_runs(study: StudyData) -> list[tuple[str, str, str, AnalysisResult]]:
    """``(dataset, architecture, run_id, analysis)`` of the lowest-seed analysed run of each."""
    out = []
    for ds in study.datasets:
        for arch in study.architectures:
            for rid in study.runs_of(ds, arch):
                if rid in study.analyses:
                    out.append((ds, arch, rid, study.analyses[rid]))
                    break
    return out


def _matrix_rows(ds: str, arch: str, rid: str, a: AnalysisResult) -> tuple[list, list]:
    inter = a.trained.interchange
    if inter is None:
        return [], []
    edges = inter.edge_set
    post = a.trained.posterior
    collapsed = [] if post is None else [int(i) for i in np.flatnonzero(post.collapsed)]
    disp, data = [], []
    for i in range(inter.share.shape[0]):
        rec: dict[str, Any] = {"dataset": ds, "architecture": arch_label(arch), "latent": f"z{i}"}
        for f, name in enumerate(inter.factor_names):
            est, (lo, hi) = inter.share[i, f], inter.share_ci[i, f]
            rec[name] = share_cell(est, lo, hi, (i, f) in edges)
            data.append({"dataset": ds, "architecture": arch, "run_id": rid, "latent": i,
                         "factor": name, "share": est, "share_lo": lo, "share_hi": hi,
                         "accuracy": inter.accuracy[i, f], "isolation": inter.isolation[i, f],
                         "edge": (i, f) in edges})  # fmt: skip
        if i not in collapsed and any(
            v != "n/a" for k, v in rec.items() if k in inter.factor_names
        ):
            disp.append(rec)
    sets = {"dataset": ds, "architecture": arch_label(arch), "latent": "minimal set"}
    for f, name in enumerate(inter.factor_names):
        chosen = inter.min_sets[f]
        share = inter.min_set_share[f]
        sets[name] = f"{latent_set(chosen)} ({fmt(share, 2)})" if chosen else "n/a"
    disp.append(sets)
    if inter.pairs == "matched":
        gaps = [g for g in inter.other_differences if g is not None]
        note = (
            f"matched, approximate: {np.mean(gaps):.1f} other factors differ a pair"
            if gaps
            else "matched, approximate"
        )
        row = {"dataset": ds, "architecture": arch_label(arch), "latent": "pairs"}
        row.update({name: "" for name in inter.factor_names}, **{inter.factor_names[0]: note})
        disp.append(row)
    if collapsed:
        names = ", ".join(f"z{i}" for i in collapsed)
        row = {"dataset": ds, "architecture": arch_label(arch), "latent": "collapsed"}
        row.update({name: "" for name in inter.factor_names}, **{inter.factor_names[0]: names})
        disp.append(row)
    return disp, data


def interchange_matrices(study: StudyData) -> Table:
    """The latent x factor interchange shares of each (dataset, architecture)'s first run."""
    disp, data = [], []
    for ds, arch, rid, a in _first_runs(study):
        d, rows = _matrix_rows(ds, arch, rid, a)
        disp += d
        data += rows
    return Table(
        "table_interchange_matrix",
        "Interchange matrix: the share of each factor's effect each latent carries",
        "For the run of the lowest seed of each model: latent z_i of x taken from x' (x and x' "
        "differ in one factor only), decoded, and compared with the change the whole of z(x') "
        "makes: share = mean <D~ - D, D' - D> / ||D' - D||^2 with a 95% bootstrap CI over "
        "pairs. * marks an edge of the interchange causal graph (CI lower bound above the "
        "threshold, 0.1 by default). Collapsed latents (mean KL to the prior under 0.01 nats) are "
        "listed, not shown; their shares are about 0. On a dataset without a factorial grid "
        "(CelebA) x' is a matched real image, and every share is approximate (row 'pairs'). "
        "'Minimal set': the smallest set of latents whose joint patch carries 90% of the "
        "effect, with the share of that joint patch.",
        pd.DataFrame(disp),
        pd.DataFrame(data),
    )


def circuit_table(study: StudyData) -> Table:
    """Per factor and encoder layer: the smallest channel set carrying the factor."""
    disp, data = [], []
    for ds, arch, rid, a in _first_runs(study):
        circ = a.trained.circuits
        if circ is None:
            continue
        for f, name in enumerate(circ.factor_names):
            for j, layer in enumerate(circ.layers):
                if not np.isfinite(circ.latent_share[f, j]):
                    continue
                size = len(circ.sets[f][j])
                disp.append({
                    "dataset": ds, "architecture": arch_label(arch), "factor": name,
                    "layer": layer, "channels": f"{size} of {int(circ.width[j])}",
                    "latent share": share_cell(circ.latent_share[f, j], *circ.latent_share_ci[f, j]),
                    "output share": share_cell(circ.output_share[f, j], *circ.output_share_ci[f, j]),
                    "via its latents": share_cell(circ.path_share[f, j], *circ.path_share_ci[f, j]),
                })  # fmt: skip
                data.append({"dataset": ds, "architecture": arch, "run_id": rid, "factor": name,
                             "layer": layer, "set": circ.sets[f][j], "size": size,
                             "width": int(circ.width[j]),
                             "latent_share": circ.latent_share[f, j],
                             "output_share": circ.output_share[f, j],
                             "path_share": circ.path_share[f, j]})  # fmt: skip
    return Table(
        "table_circuits",
        "Unit-level circuits: the channels of each encoder layer that carry a factor",
        "For the run of the lowest seed of each model: the smallest set of channels of the "
        "layer whose joint interchange patch (taken from x') carries 90% of the factor's "
        "shift of the posterior mean (latent share), the share of the factor's output change "
        "that patch makes (output share), and the part of it that flows through the factor's "
        "minimal latent set alone (via its latents; path patching). 95% bootstrap CIs over "
        "pairs (docs/circuits.md).",
        pd.DataFrame(disp),
        pd.DataFrame(data),
    )


def alignment_table(study: StudyData) -> Table:
    """Per factor: the best axis-aligned share of k latents against a learned rotation's."""
    disp, data = [], []
    for ds, arch, rid, a in _first_runs(study):
        al = a.trained.alignment
        if al is None:
            continue
        for rec, row in _alignment_rows(al):
            disp.append({"dataset": ds, "architecture": arch_label(arch), **rec})
            data.append({"dataset": ds, "architecture": arch, "run_id": rid, **row})
    return Table(
        "table_alignment",
        "Alignment: axis-aligned latents against a learned rotation",
        "For the run of the lowest seed of each model and each factor: the held-out "
        "interchange share of the best set of k latent axes beside that of a k-dimensional "
        "subspace of a learned rotation of the latent space (distributed alignment search, "
        "trained on other pairs). A high learned share with a low axis-aligned one means the "
        "factor is encoded, but not along the axes: what DCI and MIG cannot see. 95% "
        "bootstrap CIs over held-out pairs (docs/interchange.md).",
        pd.DataFrame(disp),
        pd.DataFrame(data),
    )


def _alignment_rows(al: Any) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Display and data rows of one :class:`~vaelens.analysis.Alignment` block."""
    out = []
    for f, name in enumerate(al.factor_names):
        axis, axis_ci = al.axis_share[f], al.axis_share_ci[f]
        learned, learned_ci = al.share[f], al.share_ci[f]
        if not (np.isfinite(axis) or np.isfinite(learned)):
            continue
        dims = al.axis_units[f]
        rec = {
            "factor": name,
            "k": al.k,
            "best axes": latent_set(dims),
            "axis-aligned share": share_cell(axis, *axis_ci),
            "learned share": share_cell(learned, *learned_ci),
        }
        row = {"factor": name, "k": al.k, "axis_dims": list(dims), "axis_share": axis,
               "learned_share": learned}  # fmt: skip
        out.append((rec, row))
    return out
