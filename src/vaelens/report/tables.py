"""The report's tables (Roy (2025) Tables 1-5 and the statistics) and the claims written from them.

Every builder takes a :class:`~vaelens.report.data.StudyData` and returns a :class:`Table`:
``display`` (strings, "n/a" for missing values: written as Markdown and HTML) and ``data``
(the numbers in long form: written as CSV), a caption saying what it shows, and ``claims``:
sentences written from the numbers (a difference is stated only when its adjusted p-value is
below ``alpha``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from vaelens.errors import ConfigError
from vaelens.report.data import StudyData, arch_label, fmt, fmt_ci, fmt_p, p_eq
from vaelens.stats import (
    compare_groups,
    group_summary,
    paired_vs_baseline,
    partial_correlation,
    within_group_correlation,
)

__all__ = [
    "ROY2025",
    "Table",
    "architecture_comparison",
    "architecture_tests",
    "baseline_comparison",
    "ces_dci_correlation",
    "mediation_by_layer",
    "modularity_by_layer",
    "per_dimension_effects",
    "polysemanticity_table",
    "roy2025_comparison",
    "to_markdown",
]

# The numbers of Roy (2025) (001, Tables 1 and 3), VAE / beta-VAE / FactorVAE.
ROY2025 = {
    "dci.disentanglement": (0.0636, 0.0512, 0.0844),
    "ces.mean": (3.99, 3.43, 4.59),
    "specificity.mean": (0.294, 0.279, 0.271),
    "modularity.mu": (0.051, 0.438, 0.274),
    "monosemantic_fraction.mu": (0.274, 0.436, 0.587),
    "cluster_coherence.mu": (0.426, 0.587, 0.742),
    "ps.mu": (0.837, 0.612, 0.493),
}
ROY2025_ARCHS = ("vae", "beta_vae", "factor_vae")


@dataclass
class Table:
    """One table of the report."""

    key: str
    title: str
    caption: str
    display: pd.DataFrame
    data: pd.DataFrame
    claims: list[str] = field(default_factory=list)


def to_markdown(df: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table of ``df`` (cells as strings, ``|`` escaped)."""

    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    cols = [cell(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def _layer_metric(study: StudyData, dataset: str, prefix: str) -> str | None:
    mu = study.mu_layer(dataset)
    return f"{prefix}.{mu}" if mu else None


def _summary(study: StudyData, dataset: str, column: str | None) -> dict[str, dict[str, Any]]:
    """Per architecture of ``dataset``: mean, ci_low, ci_high, n of ``column`` across seeds."""
    out: dict[str, dict[str, Any]] = {}
    c = study.completed
    sub = c[c.dataset == dataset]
    for arch in study.architectures:
        s = sub[sub.architecture == arch]
        vals = (
            s[column].to_numpy(dtype=float)
            if column is not None and column in s.columns
            else np.full(len(s), np.nan)
        )
        if len(vals) == 0:
            out[arch] = {"mean": np.nan, "ci_low": np.nan, "ci_high": np.nan, "n": 0, "sd": np.nan}
            continue
        gs = group_summary(vals, np.zeros(len(vals))).iloc[0]
        out[arch] = {k: gs[k] for k in ("mean", "sd", "n", "ci_low", "ci_high")}
    return out


def _metric_table(
    study: StudyData,
    key: str,
    title: str,
    caption: str,
    rows: list[tuple[str, Any]],
) -> Table:
    """Rows = (dataset, label) x columns = architectures; ``rows`` maps a label to a column
    name or a function ``dataset -> column name``."""
    disp, data = [], []
    for ds in study.datasets:
        for label, col in rows:
            column = col(ds) if callable(col) else col
            summ = _summary(study, ds, column)
            rec = {"dataset": ds, "metric": label}
            for arch in study.architectures:
                s = summ[arch]
                rec[arch_label(arch)] = fmt_ci(s["mean"], s["ci_low"], s["ci_high"], int(s["n"]))
                data.append(
                    {"dataset": ds, "metric": label, "column": column, "architecture": arch, **s}
                )
            disp.append(rec)
    return Table(key, title, caption, pd.DataFrame(disp), pd.DataFrame(data))


def architecture_comparison(study: StudyData) -> Table:
    """Table 1: DCI disentanglement, mean CES, mean specificity and mu-layer modularity."""
    rows = [
        ("Disentanglement (DCI D)", "dci.disentanglement"),
        ("Mean CES (Roy (2025) form)", "ces.mean"),
        ("Mean CES (normalised)", "ces.mean_normalised"),
        ("Mean specificity (Roy (2025) 1/(H+eps))", "specificity.mean"),
        ("Mean specificity (1 - H/log D)", "specificity.mean_normalised"),
        (
            "mu-layer modularity (Roy (2025) form)",
            lambda ds: _layer_metric(study, ds, "modularity"),
        ),
        ("Reconstruction MSE per pixel", "recon.mse_trained"),
        ("  same, random-init twin", "recon.mse_baseline"),
        ("  same, predicting the mean image", "recon.mse_mean_image"),
        ("Reconstruction NLL per image (BCE or SSE)", "recon.trained"),
    ]
    return _metric_table(
        study,
        "table1_architectures",
        "Table 1: architecture comparison",
        "Each cell is the mean across seeds ± the half-width of its t-based 95% confidence "
        "interval (n = completed runs); 'n/a' where no run has the metric.",
        rows,
    )


def per_dimension_effects(study: StudyData) -> Table:
    """Table 2: CES of each latent dimension, mean ± CI across seeds, per dataset."""
    disp, data = [], []
    for ds in study.datasets:
        per: dict[str, list[np.ndarray]] = {}
        for arch in study.architectures:
            per[arch] = [a.trained.latent.ces for a in study.analyses_of(ds, arch)]
        n_dim = max((len(v) for vs in per.values() for v in vs), default=0)
        for i in range(n_dim):
            rec: dict[str, Any] = {"dataset": ds, "dimension": i}
            for arch in study.architectures:
                vals = np.asarray([v[i] if i < len(v) else np.nan for v in per[arch]], float)
                if vals.size:
                    s = group_summary(vals, np.zeros(vals.size)).iloc[0].to_dict()
                else:
                    s = {"mean": np.nan, "ci_low": np.nan, "ci_high": np.nan, "n": 0}
                rec[arch_label(arch)] = fmt_ci(s["mean"], s["ci_low"], s["ci_high"], int(s["n"]))
                data.append({"dataset": ds, "dimension": i, "architecture": arch, **s})
            disp.append(rec)
    return Table(
        "table2_dimensions",
        "Table 2: causal effect strength of each latent dimension",
        "CES (Roy (2025) eq. 7, mean L2 change of the decoded image when one dimension is set to "
        "each intervention value) per latent dimension, mean ± 95% CI across seeds.",
        pd.DataFrame(disp),
        pd.DataFrame(data),
    )


def polysemanticity_table(study: StudyData) -> Table:
    """Table 3: mean PS of the earliest layer and the mu layer (both forms), % monosemantic
    units and cluster coherence of the mu layer."""

    def col(prefix: str, which: str) -> Any:
        def f(ds: str) -> str | None:
            layer = study.early_layer(ds) if which == "early" else study.mu_layer(ds)
            return f"{prefix}.{layer}" if layer else None

        return f

    rows = [
        ("Early layer mean PS (participation)", col("polysemanticity", "early")),
        ("Early layer mean PS (Roy (2025) printed form)", col("polysemanticity_roy2025", "early")),
        ("Latent (mu) mean PS (participation)", col("polysemanticity", "mu")),
        ("Latent (mu) mean PS (Roy (2025) printed form)", col("polysemanticity_roy2025", "mu")),
        ("Monosemantic fraction (mu)", col("monosemantic_fraction", "mu")),
        ("Cluster coherence (mu)", col("cluster_coherence", "mu")),
    ]
    return _metric_table(
        study,
        "table3_polysemanticity",
        "Table 3: polysemanticity",
        "Participation form: (Σ_f R)² / Σ_f R², 1 = monosemantic, |F| = responds equally to "
        "all factors (the reading Roy (2025)'s text describes). Roy (2025) printed form: "
        "|F| Σ_f R² / (Σ_f R)², which is the inverse (|F| = monosemantic). Both lie in "
        "[1, |F|]; neither can produce a mean below 1. Mean ± 95% CI across seeds.",
        rows,
    )


def modularity_by_layer(study: StudyData) -> Table:
    """Table 4: circuit modularity of every analysed layer (Roy (2025) form and signed form)."""
    disp, data = [], []
    for ds in study.datasets:
        for layer in study.layers(ds):
            for form, prefix in (("roy2025", "modularity"), ("signed", "modularity_signed")):
                column = f"{prefix}.{layer}"
                summ = _summary(study, ds, column)
                base = (
                    _summary(study, ds, f"baseline.modularity.{layer}") if form == "roy2025" else {}
                )
                rec = {"dataset": ds, "layer": layer, "form": form}
                for arch in study.architectures:
                    s = summ[arch]
                    cell = fmt_ci(s["mean"], s["ci_low"], s["ci_high"], int(s["n"]))
                    if base and base[arch]["n"]:
                        cell += f" [random: {fmt(base[arch]['mean'])}]"
                    rec[arch_label(arch)] = cell
                    data.append(
                        {
                            "dataset": ds,
                            "layer": layer,
                            "form": form,
                            "architecture": arch,
                            **s,
                            "baseline_mean": base[arch]["mean"] if base else np.nan,
                        }
                    )
                disp.append(rec)
    return Table(
        "table4_modularity",
        "Table 4: circuit modularity by layer",
        "Roy (2025) form M = 1 - mean_{i<j} |ρ(Δa_i, Δa_j)|; signed form 1 - mean ρ (does not "
        "count anti-correlated circuits as shared). Mean ± 95% CI across seeds; the "
        "random-initialisation twin's mean in brackets.",
        pd.DataFrame(disp),
        pd.DataFrame(data),
    )


def channel_concentration(shares: np.ndarray) -> dict[str, float]:
    """How a factor's mediated effect spreads over one layer's channels (one run).

    ``shares``: the exact per-channel indirect shares ``<NIE_c, TE> / ||TE||^2``. Returns
    ``top1`` (largest share), ``top3`` (sum of the three largest) and ``n_eff``, the
    effective number of channels ``(sum_c |s_c|)^2 / sum_c s_c^2`` (1: one channel carries
    it all; the channel count: all carry it equally). NaN when the factor moved nothing.
    """
    s = np.asarray(shares, dtype=np.float64)
    if s.size == 0 or not np.isfinite(s).all() or not np.any(s):
        return {"top1": np.nan, "top3": np.nan, "n_eff": np.nan}
    top = np.sort(s)[::-1]
    return {
        "top1": float(top[0]),
        "top3": float(top[:3].sum()),
        "n_eff": float(np.abs(s).sum() ** 2 / (s**2).sum()),
    }


CHANNEL_MEASURES = (
    ("top1", "share of the top channel"),
    ("top3", "share of the top 3 channels"),
    ("n_eff", "effective number of channels"),
)


def _channel_rows(study: StudyData, ds: str, f: str) -> list[dict[str, Any]]:
    """One record a (run, layer, measure) of the channel mediation of factor ``f``."""
    recs = []
    for arch in study.architectures:
        for a in study.analyses_of(ds, arch):
            for layer, shares in a.trained.mediation.by_channel.get(f, {}).items():
                for key, value in channel_concentration(shares).items():
                    recs.append({"architecture": arch, "layer": layer, "measure": key,
                                 "value": value})  # fmt: skip
    return recs


def _check_factor(study: StudyData, factor: str | None) -> None:
    known = {f for ds in study.datasets for f in study.factor_names(ds)}
    if factor is not None and known and factor not in known:
        raise ConfigError(
            f"mediation_factor: {factor!r} is not a factor of any dataset; expected one of "
            f"{sorted(known)}"
        )


def mediation_by_layer(study: StudyData, factor: str | None = None) -> Table:
    """Table 5: how concentrated each factor's mediation is over the channels of a layer.

    Per dataset, factor (all of them, or only ``factor``), mediated layer and measure of
    :func:`channel_concentration`: mean ± 95% CI across seeds, per architecture. Whole-layer
    shares are not shown: in a sequential encoder every layer is a cut of the graph, so its
    share is 1 by construction (they stay in each run's analysis.json).
    """
    _check_factor(study, factor)
    disp, data = [], []
    for ds in study.datasets:
        for f in study.factor_names(ds):
            if factor is not None and f != factor:
                continue
            frame = pd.DataFrame(_channel_rows(study, ds, f))
            if frame.empty:
                continue
            for (layer, key), sub in frame.groupby(["layer", "measure"], sort=False):
                label = dict(CHANNEL_MEASURES)[key]
                rec = {"dataset": ds, "factor": f, "layer": layer, "measure": label}
                for arch in study.architectures:
                    vals = sub[sub.architecture == arch].value.to_numpy(float)
                    s = _group_stats(vals)
                    rec[arch_label(arch)] = fmt_ci(
                        s["mean"], s["ci_low"], s["ci_high"], int(s["n"])
                    )
                    data.append({"dataset": ds, "factor": f, "layer": layer, "measure": key,
                                 "architecture": arch, **s})  # fmt: skip
                disp.append(rec)
    return Table(
        "table5_mediation",
        "Table 5: mediation by channel",
        "How each factor's effect on the latent mean is carried by the channels of the "
        "mediated layer (exact activation patching, one channel at a time): the indirect "
        "share of the top channel, of the top 3, and the effective number of channels "
        "(Σ|s|)² / Σs² (1 = a single channel). Mean ± 95% CI across seeds; runs where the "
        "factor did not move the latent are left out. Whole-layer shares are not shown: in a "
        "sequential encoder each layer carries the whole effect by construction (share 1).",
        pd.DataFrame(disp),
        pd.DataFrame(data),
    )


def _group_stats(vals: np.ndarray) -> dict[str, Any]:
    vals = vals[np.isfinite(vals)]
    if vals.size == 0:
        return {"mean": np.nan, "ci_low": np.nan, "ci_high": np.nan, "n": 0, "sd": np.nan}
    row = group_summary(vals, np.zeros(vals.size)).iloc[0].to_dict()
    return {k: row[k] for k in ("mean", "ci_low", "ci_high", "n", "sd")}


VQ_MEASURES = (
    ("code_swap_effect_mean", "code-swap effect (mean L2 change of the output)"),
    ("continuous_effect_mean", "effect of a +1 shift of z_e (64 sampled dims)"),
    ("continuous_zero_fraction", "share of z_e shifts that snap back (no effect)"),
)


def vq_interventions(study: StudyData) -> Table:
    """Table of the VQ-VAEs' discrete interventions (they stay out of the continuous tables).

    A VQ-VAE's latent units are its code positions and its "CES" is a code-swap effect, not
    a latent traversal, so its numbers are not comparable with the continuous models' and
    are reported here alone: per dataset and VQ architecture, mean ± 95% CI across seeds.
    """
    disp, data = [], []
    for ds in study.datasets:
        for arch in study.architectures:
            blocks = [a.trained.vq for a in study.analyses_of(ds, arch) if a.trained.vq is not None]
            for key, label in VQ_MEASURES:
                s = _group_stats(np.array([getattr(b, key) for b in blocks], dtype=float))
                if not blocks:
                    continue
                disp.append({"dataset": ds, "architecture": arch_label(arch), "measure": label,
                             "value": fmt_ci(s["mean"], s["ci_low"], s["ci_high"], int(s["n"]))})  # fmt: skip
                data.append({"dataset": ds, "architecture": arch, "measure": key, **s})
    return Table(
        "table_vq",
        "VQ-VAEs: discrete interventions",
        "A VQ-VAE decodes the nearest codebook entry, so a continuous latent traversal mostly "
        "snaps back to the same code. Its interventions are code swaps (the code at one "
        "position replaced by a random other code); the continuous-shift effect is shown "
        "beside for comparison. These runs are left out of the CES-DCI correlation and the "
        "architecture tests (their CES is a code-swap effect and their DCI codes are "
        "spatially averaged z_e). Mean ± 95% CI across seeds.",
        pd.DataFrame(disp),
        pd.DataFrame(data),
    )


TEST_METRICS = (
    ("dci.disentanglement", "DCI D"),
    ("ces.mean", "mean CES"),
    ("specificity.mean", "mean specificity"),
    ("modularity.mu", "mu-layer modularity"),
    ("monosemantic_fraction.mu", "monosemantic fraction (mu)"),
)


def _resolve(study: StudyData, ds: str, metric: str) -> str | None:
    if metric.endswith(".mu"):
        return _layer_metric(study, ds, metric[: -len(".mu")])
    return metric


def architecture_tests(study: StudyData, *, alpha: float = 0.05) -> Table:
    """Differences between architectures: one-way ANOVA, pairwise Welch t with Holm correction
    over the pairs of each (dataset, metric)."""
    rows, disp, claims = [], [], []
    c = study.completed
    for ds in study.datasets:
        sub = c[c.dataset == ds]
        rank = {a: i for i, a in enumerate(study.architectures)}
        sub = sub.iloc[np.argsort(sub.architecture.map(rank).to_numpy(), kind="stable")]
        for metric, label in TEST_METRICS:
            column = _resolve(study, ds, metric)
            if column is None or column not in sub.columns:
                claims.append(f"{ds}: {label} is not available (n/a), so it was not tested.")
                continue
            omni, pairs = compare_groups(sub[column].to_numpy(float), sub.architecture.to_numpy())
            counts = sub.groupby("architecture")[column].count()
            n_by = {a: int(counts[a]) for a in study.architectures if a in counts.index}
            for pr in pairs.itertuples():
                rec, shown = _test_row(ds, label, pr, omni, n_by)
                rows.append(rec)
                disp.append(shown)
            claims += _test_claims(ds, label, pairs, omni, n_by, alpha)
    return Table(
        "architecture_tests",
        "Differences between architectures",
        "For each dataset and metric: one-way ANOVA across architectures and every pairwise "
        "Welch t-test, p-values Holm-adjusted over the pairs of that dataset and metric.",
        pd.DataFrame(disp),
        pd.DataFrame(rows),
        claims,
    )


def _test_row(
    ds: str, label: str, pr: Any, omni: dict[str, float], n_by: dict[str, int]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One pairwise comparison ``pr`` as a record (numbers) and as a displayed row."""
    rec = {
        "dataset": ds,
        "metric": label,
        "a": pr.a,
        "b": pr.b,
        "mean_a": pr.mean_a,
        "mean_b": pr.mean_b,
        "n_a": n_by.get(pr.a, 0),
        "n_b": n_by.get(pr.b, 0),
        "welch_t": pr.statistic,
        "p": pr.p,
        "p_holm": pr.p_adj,
        "anova_F": omni["statistic"],
        "anova_p": omni["p"],
    }
    shown = {
        "dataset": ds,
        "metric": label,
        "comparison": f"{arch_label(pr.a)} vs {arch_label(pr.b)}",
        "means": f"{fmt(pr.mean_a)} vs {fmt(pr.mean_b)}",
        "n": f"{rec['n_a']}/{rec['n_b']}",
        "Welch t": fmt(pr.statistic),
        "p": fmt_p(pr.p),
        "Holm p": fmt_p(pr.p_adj),
    }
    return rec, shown


def _test_claims(
    ds: str,
    label: str,
    pairs: pd.DataFrame,
    omni: dict[str, float],
    n_by: dict[str, int],
    alpha: float,
) -> list[str]:
    """What the tests of one (dataset, metric) allow us to say."""
    claims = []
    sig = pairs[pairs.p_adj < alpha]
    n_txt = ", ".join(f"{arch_label(a)} n={n}" for a, n in n_by.items())
    if pairs.p_adj.notna().sum() == 0:
        claims.append(
            f"{ds}, {label}: too few runs per architecture to test ({n_txt}); "
            "no claim about differences is made."
        )
    elif sig.empty and np.isfinite(omni["p"]) and omni["p"] < alpha:
        claims.append(
            f"{ds}, {label}: the ANOVA finds the architectures' means differ "
            f"({p_eq(omni['p'])}), but no pairwise difference survives the Holm "
            f"correction ({n_txt})."
        )
    elif sig.empty:
        claims.append(
            f"{ds}, {label}: no difference between architectures was detected "
            f"(ANOVA {p_eq(omni['p'])}; all Holm-adjusted pairwise p ≥ {alpha}; "
            f"{n_txt})."
        )
    for pr in sig.itertuples():
        hi, lo = (pr.a, pr.b) if pr.diff > 0 else (pr.b, pr.a)
        mh, ml = max(pr.mean_a, pr.mean_b), min(pr.mean_a, pr.mean_b)
        claims.append(
            f"{ds}: {arch_label(hi)}'s {label} ({fmt(mh)}) is higher than "
            f"{arch_label(lo)}'s ({fmt(ml)}) (Welch t = {fmt(abs(pr.statistic))}, "
            f"Holm-adjusted {p_eq(pr.p_adj)}, n = {n_by.get(hi, 0)}/{n_by.get(lo, 0)})."
        )
    return claims


BASELINE_METRICS = (
    ("ces.mean", "mean CES"),
    ("specificity.mean", "mean specificity"),
    ("modularity.mu", "mu-layer modularity"),
    ("monosemantic_fraction.mu", "monosemantic fraction (mu)"),
    ("cluster_coherence.mu", "cluster coherence (mu)"),
    ("ces.mean_normalised", "mean CES (normalised)"),
    ("specificity.mean_normalised", "mean specificity (normalised)"),
)


def baseline_comparison(study: StudyData, *, alpha: float = 0.05) -> Table:
    """Each causal metric beside its random-initialisation twin, paired over runs."""
    rows, disp, claims = [], [], []
    c = study.completed
    for ds in study.datasets:
        for arch in [*study.architectures, None]:
            sub = (
                c[c.dataset == ds]
                if arch is None
                else c[(c.dataset == ds) & (c.architecture == arch)]
            )
            if sub.empty:
                continue
            for metric, label in BASELINE_METRICS:
                col = _resolve(study, ds, metric)
                if col is None or col not in sub or f"baseline.{col}" not in sub:
                    res = paired_vs_baseline([], [])
                else:
                    res = paired_vs_baseline(
                        sub[col].to_numpy(float), sub[f"baseline.{col}"].to_numpy(float)
                    )
                who = "all architectures" if arch is None else arch_label(arch)
                rows.append({"dataset": ds, "architecture": arch or "all", "metric": label, **res})
                disp.append(
                    {
                        "dataset": ds,
                        "architecture": who,
                        "metric": label,
                        "trained": fmt(res["mean_trained"]),
                        "random init": fmt(res["mean_baseline"]),
                        "difference (95% CI)": (
                            f"{fmt(res['mean_diff'])} [{fmt(res['ci_low'])}, {fmt(res['ci_high'])}]"
                        ),
                        "paired t p": fmt_p(res["t_p"]),
                        "Wilcoxon p": fmt_p(res["wilcoxon_p"]),
                        "n": res["n"],
                    }
                )
                if arch is None:
                    if np.isfinite(res["t_p"]) and res["t_p"] < alpha:
                        direction = "higher" if res["mean_diff"] > 0 else "lower"
                        claims.append(
                            f"{ds}: trained models' {label} is {direction} than their random-"
                            f"initialisation twins' (mean difference {fmt(res['mean_diff'])}, "
                            f"paired t {p_eq(res['t_p'])}, n = {res['n']})."
                        )
                    else:
                        claims.append(
                            f"{ds}: {label} of trained models was not shown to differ from the "
                            f"random-initialisation baseline (paired t {p_eq(res['t_p'])}, "
                            f"n = {res['n']})."
                        )
    return Table(
        "baseline",
        "Causal metrics against the random-network baseline",
        "Each run's metric against the same metric of its randomly initialised twin (same "
        "architecture, no training), paired over runs: mean difference with its t-based 95% "
        "CI, the paired t-test and the Wilcoxon signed-rank test (not multiplicity-adjusted).",
        pd.DataFrame(disp),
        pd.DataFrame(rows),
        claims,
    )


def ces_dci_correlation(
    study: StudyData, *, n_boot: int = 2000, alpha: float = 0.05, random_state: int = 0
) -> Table:
    """CES against DCI disentanglement: within each dataset, pooled within datasets, and
    partial correlations controlling for dataset complexity and latent size."""
    c = study.completed
    xcol, ycol = "ces.mean", "dci.disentanglement"
    if xcol not in c or ycol not in c or c.empty:
        return Table(
            "ces_dci_correlation",
            "CES against DCI disentanglement",
            "Not computed: the study has no runs with both mean CES and DCI D.",
            pd.DataFrame(),
            pd.DataFrame(),
            ["CES-DCI correlation: n/a (no runs with both metrics)."],
        )
    rows: list[dict[str, Any]] = []
    for method in ("pearson", "spearman"):
        wg = within_group_correlation(
            c, xcol, ycol, "dataset", method=method, n_boot=n_boot, random_state=random_state
        )
        for r in wg.to_dict("records"):
            rows.append({"analysis": "within dataset", **r, "controls": ""})
        rows += _partial_rows(c, xcol, ycol, method, n_boot, random_state)
    data = pd.DataFrame(rows)
    return Table(
        "ces_dci_correlation",
        "CES against DCI disentanglement",
        "Correlation of each run's mean CES with its DCI disentanglement: inside each dataset, "
        "pooled within datasets (each dataset's means removed, so differences between "
        "datasets cannot create it), and over all runs as partial correlations controlling "
        "for dataset complexity (number of factors, image resolution) and latent "
        "dimensionality (and, in the last rows, reconstruction error). Percentile bootstrap "
        f"95% CIs ({n_boot} resamples); constant covariates are dropped and not listed.",
        _correlation_display(data),
        data,
        _correlation_claims(data, alpha),
    )


def _partial_rows(
    c: pd.DataFrame, xcol: str, ycol: str, method: str, n_boot: int, random_state: int
) -> list[dict[str, Any]]:
    """Partial correlations over all runs, controlling for the covariates the runs have
    (without and with the reconstruction error)."""
    rows: list[dict[str, Any]] = []
    covs = [
        ("n_factors", "number of factors"),
        ("resolution", "resolution"),
        ("latent_dim", "latent dimensionality"),
    ]
    recon = (
        [("recon.mse_trained", "recon MSE")]
        if "recon.mse_trained" in c
        else [("recon.trained", "recon NLL")]
    )
    for label, extra in (("partial", []), ("partial + recon", recon)):
        cols = [k for k, _ in covs + extra if k in c]
        cn = tuple(n for k, n in covs + extra if k in c)
        if not cols:
            continue
        pc = partial_correlation(
            c[xcol].to_numpy(float),
            c[ycol].to_numpy(float),
            c[cols].to_numpy(float),
            method=method,
            covariate_names=cn,
            n_boot=n_boot,
            random_state=random_state,
        )
        d = pc.to_dict()
        d["controls"] = ", ".join(d["controls"]) or "(all covariates constant)"
        rows.append({"analysis": f"{label} (all runs)", "group": "all", **d})
    return rows


def _correlation_display(data: pd.DataFrame) -> pd.DataFrame:
    """The correlation rows as shown: formatted r, p and bootstrap CI."""
    return pd.DataFrame(
        {
            "analysis": data["analysis"],
            "dataset": data["group"],
            "method": data["method"],
            "r": data["r"].map(fmt),
            "p": data["p"].map(fmt_p),
            "95% bootstrap CI": [
                f"[{fmt(lo)}, {fmt(hi)}]" for lo, hi in zip(data.ci_low, data.ci_high, strict=True)
            ],
            "n": data["n"],
            "controls": data["controls"].fillna(""),
        }
    )


def _correlation_claims(data: pd.DataFrame, alpha: float) -> list[str]:
    """The pooled within-dataset verdict, then one line per dataset and method."""
    claims: list[str] = []
    pooled = data[(data.group == "(pooled within)") & (data.method == "pearson")]
    if not pooled.empty:
        p = pooled.iloc[0]
        if np.isfinite(p.p) and p.p < alpha:
            sign = "negative" if p.r < 0 else "positive"
            claims.append(
                f"Pooled within datasets, CES and DCI D are {sign}ly correlated (Pearson r = "
                f"{fmt(p.r)}, {p_eq(p.p)}, 95% bootstrap CI [{fmt(p.ci_low)}, "
                f"{fmt(p.ci_high)}], n = {p.n})."
            )
        else:
            claims.append(
                f"No within-dataset correlation of CES with DCI D was detected (pooled Pearson "
                f"r = {fmt(p.r)}, {p_eq(p.p)}, 95% bootstrap CI [{fmt(p.ci_low)}, "
                f"{fmt(p.ci_high)}], n = {p.n})."
            )
    for r in data[
        (data.analysis == "within dataset") & (data.group != "(pooled within)")
    ].itertuples():
        verdict = "significant" if np.isfinite(r.p) and r.p < alpha else "not significant"
        claims.append(
            f"{r.group} ({r.method}): r = {fmt(r.r)}, {p_eq(r.p)} ({verdict}), "
            f"CI [{fmt(r.ci_low)}, {fmt(r.ci_high)}], n = {r.n}."
        )
    return claims


def roy2025_comparison(study: StudyData) -> Table:
    """The Table 1 and Table 3 numbers of Roy (2025) beside ours (per dataset)."""
    disp, data = [], []
    labels = {
        "dci.disentanglement": "Disentanglement (DCI D)",
        "ces.mean": "Avg. effect strength (CES)",
        "specificity.mean": "Avg. specificity",
        "modularity.mu": "mu-layer modularity",
        "monosemantic_fraction.mu": "% monosemantic units (fraction)",
        "cluster_coherence.mu": "Cluster coherence",
        "ps.mu": "Latent mean PS (ours: participation form)",
    }
    for ds in study.datasets:
        for metric, theirs in ROY2025.items():
            col = (
                _layer_metric(study, ds, "polysemanticity")
                if metric == "ps.mu"
                else _resolve(study, ds, metric)
            )
            summ = _summary(study, ds, col)
            for arch, sv in zip(ROY2025_ARCHS, theirs, strict=True):
                if arch not in summ:
                    continue
                s = summ[arch]
                if s["n"] == 0:
                    verdict = "n/a (no runs)"
                elif not (np.isfinite(s["ci_low"]) and np.isfinite(s["ci_high"])):
                    verdict = "no CI (n < 2)"
                elif s["ci_low"] <= sv <= s["ci_high"]:
                    verdict = "within our 95% CI"
                else:
                    verdict = "outside our 95% CI"
                disp.append(
                    {
                        "dataset": ds,
                        "metric": labels[metric],
                        "architecture": arch_label(arch),
                        "roy2025": fmt(sv),
                        "ours": fmt_ci(s["mean"], s["ci_low"], s["ci_high"], int(s["n"])),
                        "verdict": verdict,
                    }
                )
                data.append(
                    {
                        "dataset": ds,
                        "metric": metric,
                        "architecture": arch,
                        "roy2025": sv,
                        **s,
                        "verdict": verdict,
                    }
                )
    return Table(
        "roy2025_comparison",
        "Comparison with Roy (2025)",
        "The numbers of Roy (2025) (their Tables 1 and 3: dSprites, one seed, no CIs) beside ours.",
        pd.DataFrame(disp),
        pd.DataFrame(data),
    )
