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
    adjust_pvalues,
    compare_groups,
    correlation,
    match_by_rank,
    mixed_slope,
    paired_vs_baseline,
    partial_correlation,
    summary_interval,
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


#: metric columns that cannot be negative (by prefix): their intervals are log-scale t
#: intervals (:func:`~vaelens.stats.summary_interval`), which cannot cross zero
NONNEGATIVE_PREFIXES = (
    "dci.",
    "mig.mig",
    "sap.sap",
    "factor_vae.eval_accuracy",
    "beta_vae.eval_accuracy",
    "interchange.min_set_size.",
    "ces.",
    "ces_posterior.",
    "latent.collapsed_fraction",
    "controls.retrained_ces.",
    "controls.retrained_edge_jaccard",
    "controls.ces_",
    "specificity.",
    "recon.",
    "modularity.",
    "baseline.modularity.",
    "polysemanticity.",
    "polysemanticity_roy2025.",
    "monosemantic_fraction.",
    "cluster_coherence.",
    "interchange.mean_min_set_size",
)

#: metrics a study may not have (optional analysis blocks; disentanglement scores of studies
#: run without them): a table row or a test of one is left out, not shown as n/a, when no run
#: of the study has it
OPTIONAL_METRICS = (
    "mig.mig",
    "sap.sap",
    "factor_vae.eval_accuracy",
    "beta_vae.eval_accuracy",
    "interchange.mean_min_set_size",
    "interchange.mean_share_max",
)


def _absent_optional(column: str | None, frame: pd.DataFrame) -> bool:
    """Whether ``column`` is one of :data:`OPTIONAL_METRICS` that no run of ``frame`` has."""
    return column in OPTIONAL_METRICS and column not in frame.columns


def _nonnegative(column: str | None, vals: np.ndarray) -> bool:
    """Whether ``column`` is a non-negative metric (and its values agree)."""
    ok = vals[np.isfinite(vals)]
    return bool(column and column.startswith(NONNEGATIVE_PREFIXES) and (ok >= 0).all())


def _summary(study: StudyData, dataset: str, column: str | None) -> dict[str, dict[str, Any]]:
    """Per architecture of ``dataset``: :func:`~vaelens.stats.summary_interval` of
    ``column`` across seeds (mean, sd, n, min, max, ci_low, ci_high, interval)."""
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
        out[arch] = summary_interval(vals, nonnegative=_nonnegative(column, vals))
    return out


def _cell(s: dict[str, Any]) -> str:
    """A summary as shown: ``m ± h (n=5)`` (t), ``m [lo, hi] (n=5)`` (log-t), ``m (seeds
    a, b; n=2)`` (range), ``m (n=1)``, or ``n/a``."""
    n, kind = int(s["n"]), s.get("interval", "t")
    if n == 0 or not np.isfinite(s["mean"]):
        return "n/a"
    if kind == "range":
        return f"{fmt(s['mean'])} (seeds {fmt(s['min'])}, {fmt(s['max'])}; n={n})"
    if kind == "log-t" and np.isfinite(s["ci_low"]):
        return f"{fmt(s['mean'])} [{fmt(s['ci_low'])}, {fmt(s['ci_high'])}] (n={n})"
    return fmt_ci(s["mean"], s["ci_low"], s["ci_high"], n)


#: what every summary cell shows, for the captions
INTERVAL_TEXT = (
    "mean across seeds with its 95% interval: ± the half-width of the t interval for metrics "
    "that can be negative, [low, high] of the log-scale t interval mean·exp(∓t·SE/mean) for "
    "non-negative metrics (it cannot cross zero); with n = 2 no interval, the two seeds' "
    "values instead; n = completed runs"
)


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
            if _absent_optional(column, study.completed):
                continue
            summ = _summary(study, ds, column)
            rec = {"dataset": ds, "metric": label}
            for arch in study.architectures:
                s = summ[arch]
                rec[arch_label(arch)] = _cell(s)
                data.append(
                    {"dataset": ds, "metric": label, "column": column, "architecture": arch, **s}
                )
            disp.append(rec)
    return Table(key, title, caption, pd.DataFrame(disp), pd.DataFrame(data))


def architecture_comparison(study: StudyData) -> Table:
    """Table 1: the disentanglement scores (DCI D, MIG, SAP, FactorVAE, BetaVAE), CES,
    specificity, mu-layer modularity, reconstruction, collapse and the interchange means."""
    rows = [
        ("Disentanglement (DCI D)", "dci.disentanglement"),
        ("MIG", "mig.mig"),
        ("SAP", "sap.sap"),
        ("FactorVAE score (held-out accuracy)", "factor_vae.eval_accuracy"),
        ("BetaVAE score (held-out accuracy)", "beta_vae.eval_accuracy"),
        ("Mean CES (Roy (2025) form)", "ces.mean"),
        ("Mean CES (normalised)", "ces.mean_normalised"),
        ("Mean CES, posterior-unit sweep (mean + a s_i)", "ces_posterior.mean"),
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
        ("Collapsed latents (fraction, mean KL < threshold)", "latent.collapsed_fraction"),
        ("Latents per factor (interchange, 90% of the effect)", "interchange.mean_min_set_size"),
        ("Best single-latent share per factor (interchange)", "interchange.mean_share_max"),
    ]
    return _metric_table(
        study,
        "table1_architectures",
        "Table 1: architecture comparison",
        f"Each cell is the {INTERVAL_TEXT}; 'n/a' where no run has the metric. CES rows: "
        "the Roy (2025) form sets each latent to the absolute values -3..3; the "
        "posterior-unit sweep sets it to m_i + a s_i (the same a, in units of that latent's "
        "aggregate-posterior spread), so architectures are compared on interventions of the "
        "same relative size.",
        rows,
    )


CONTROL_ROWS = (
    ("Decoder retrained on the frozen encoder: Spearman of per-latent CES",
     "controls.retrained_ces_spearman"),
    ("  its mean CES", "controls.retrained_ces.mean"),
    ("  its causal-graph edges shared with the original (Jaccard)",
     "controls.retrained_edge_jaccard"),
    ("Mean CES, latents drawn from the aggregate posterior", "controls.ces_aggregate.mean"),
    ("Mean CES, latents drawn from the prior N(0, I)", "controls.ces_prior.mean"),
    ("Mean CES / reconstruction distance", "controls.ces_recon_normalised.mean"),
    ("Mean CES / spread of the reconstructions", "controls.ces_spread_normalised.mean"),
)  # fmt: skip


def controls_table(study: StudyData) -> Table:
    """The referee's controls (docs/controls.md), per dataset and architecture."""
    return _metric_table(
        study,
        "table_controls",
        "Controls",
        "What a decoder artifact or the choice of latents would change. A decoder retrained "
        "from scratch on the frozen encoder's posterior means: if per-latent CES keeps its "
        "order (Spearman near 1) the effects belong to the representation, not to one "
        "decoder's training. Latents drawn from the aggregate posterior or the prior instead "
        "of the encoder's own: effects that need the encoder's exact codes shrink. CES over "
        "the reconstruction distance: a model cannot score high merely by large outputs. "
        f"Each cell is the {INTERVAL_TEXT}.",
        list(CONTROL_ROWS),
    )


def interchange_table(study: StudyData) -> Table:
    """Per factor: how many latents carry it and how much one latent alone carries.

    From each run's interchange block (docs/interchange.md): ``interchange.min_set_size.<f>``
    (the greedy minimal set reaching 90% of the all-latent share, confirmed by a joint patch)
    and ``interchange.share_max.<f>`` (the largest single-latent share), across seeds.
    """
    disp, data = [], []
    for ds in study.datasets:
        for f in study.factor_names(ds):
            for label, col in (("latents needed (90% of the effect)", f"interchange.min_set_size.{f}"),
                               ("best single-latent share", f"interchange.share_max.{f}")):  # fmt: skip
                summ = _summary(study, ds, col)
                if not any(summ[a]["n"] for a in study.architectures):
                    continue
                rec = {"dataset": ds, "factor": f, "measure": label}
                for arch in study.architectures:
                    rec[arch_label(arch)] = _cell(summ[arch])
                    data.append({"dataset": ds, "factor": f, "measure": col, "architecture": arch,
                                 **summ[arch]})  # fmt: skip
                disp.append(rec)
    return Table(
        "table_interchange",
        "Interchange: which latents carry each factor",
        "Interchange interventions scored against the dataset's real counterfactual images: "
        "a latent's share is the part of the factor's output change it carries when taken "
        "from the changed image x' (1 = all of it). 'Latents needed' is the greedy minimal "
        "set reaching 90% of what all latents together carry, confirmed by a joint patch. "
        f"Each cell is the {INTERVAL_TEXT}.",
        pd.DataFrame(disp),
        pd.DataFrame(data),
    )


#: (label, our column, disentanglement_lib's column as `vaelens zoo study` stores it)
ZOO_PAIRS = (
    ("DCI disentanglement", "dci.disentanglement", "dlib.dci.disentanglement"),
    ("DCI completeness", "dci.completeness", "dlib.dci.completeness"),
    ("MIG", "mig.mig", "dlib.mig.discrete_mig"),
    ("SAP", "sap.sap", "dlib.sap_score.SAP_score"),
    ("FactorVAE score", "factor_vae.eval_accuracy", "dlib.factor_vae_metric.eval_accuracy"),
    ("BetaVAE score", "beta_vae.eval_accuracy", "dlib.beta_vae_sklearn.eval_accuracy"),
    ("mean CES against the library's DCI D", "ces.mean", "dlib.dci.disentanglement"),
)


def zoo_comparison(study: StudyData, *, n_boot: int = 2000, random_state: int = 0) -> Table:
    """Our scores beside disentanglement_lib's own for imported zoo models, per dataset.

    For each pair of :data:`ZOO_PAIRS` present: the mean of ours and of theirs over the
    models, and the Pearson and Spearman correlation between them across models (one
    point a model), with bootstrap and Fisher-z intervals. The last pair relates our
    causal metric to the library's disentanglement score across the zoo.
    """
    rows, disp = [], []
    c = study.continuous
    for ds in study.datasets:
        sub = c[c.dataset == ds]
        for label, ours, theirs in ZOO_PAIRS:
            if ours not in sub or theirs not in sub:
                continue
            x, y = sub[ours].to_numpy(float), sub[theirs].to_numpy(float)
            for method in ("pearson", "spearman"):
                r = correlation(x, y, method=method, n_boot=n_boot, random_state=random_state)
                rec = {"dataset": ds, "pair": label, "ours": ours, "library": theirs,
                       "mean_ours": float(np.nanmean(x)), "mean_library": float(np.nanmean(y)),
                       **r.to_dict()}  # fmt: skip
                rows.append(rec)
                disp.append({
                    "dataset": ds, "pair": label, "method": method,
                    "ours (mean)": fmt(rec["mean_ours"]), "library (mean)": fmt(rec["mean_library"]),
                    "r": fmt(r.r), "p": fmt_p(r.p), "95% bootstrap CI": f"[{fmt(r.ci_low)}, {fmt(r.ci_high)}]",
                    "n": f"{r.n} models",
                })  # fmt: skip
    return Table(
        "table_zoo",
        "Pretrained zoo: our scores beside disentanglement_lib's",
        "Imported disentanglement_lib models (vaelens zoo study): each of our disentanglement "
        "scores against the library's own stored score for the same model (one point a model), "
        "and our mean CES against the library's DCI D. Our scores use our estimators and "
        "samples (see docs/metrics.md), so equal values are not expected; a high correlation "
        "says the two rank the models alike.",
        pd.DataFrame(disp),
        pd.DataFrame(rows),
    )


def per_dimension_effects(study: StudyData) -> Table:
    """Table 2: CES of each latent rank (latents matched across seeds by their CES rank)."""
    disp, data = [], []
    for ds in study.datasets:
        per: dict[str, np.ndarray] = {}
        for arch in study.architectures:
            (per[arch],) = match_by_rank(
                [a.trained.latent.ces for a in study.analyses_of(ds, arch)]
            )
        n_dim = max((m.shape[1] for m in per.values()), default=0)
        for i in range(n_dim):
            rec: dict[str, Any] = {"dataset": ds, "rank": i + 1}
            for arch in study.architectures:
                m = per[arch]
                vals = m[:, i] if i < m.shape[1] else np.empty(0)
                s = summary_interval(vals, nonnegative=_nonnegative("ces.", vals))
                rec[arch_label(arch)] = _cell(s)
                data.append({"dataset": ds, "rank": i + 1, "architecture": arch, **s})
            disp.append(rec)
    return Table(
        "table2_dimensions",
        "Table 2: causal effect strength of the latents, by rank",
        "CES (Roy (2025) eq. 7, mean L2 change of the decoded image when one dimension is set to "
        "each intervention value) of the latents ranked by CES within each run: latent indices "
        "are arbitrary in each run, so rank 1 (each run's strongest latent) is compared with "
        f"rank 1, and so on. Each cell is the {INTERVAL_TEXT}.",
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
        "[1, |F|]; neither can produce a mean below 1. Each cell is the "
        f"{INTERVAL_TEXT}.",
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
                    cell = _cell(s)
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
        f"count anti-correlated circuits as shared). Each cell is the {INTERVAL_TEXT}; the "
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
                    s = _group_stats(vals, nonnegative=key == "n_eff")
                    rec[arch_label(arch)] = _cell(s)
                    data.append({"dataset": ds, "factor": f, "layer": layer, "measure": key,
                                 "architecture": arch, **s})  # fmt: skip
                disp.append(rec)
    return Table(
        "table5_mediation",
        "Table 5: mediation by channel",
        "How each factor's effect on the latent mean is carried by the channels of the "
        "mediated layer (exact activation patching, one channel at a time): the indirect "
        "share of the top channel, of the top 3, and the effective number of channels "
        "(Σ|s|)² / Σs² (1 = a single channel). Mean across seeds with the interval of Table 1 (see Statistics); runs where the "
        "factor did not move the latent are left out. Whole-layer shares are not shown: in a "
        "sequential encoder each layer carries the whole effect by construction (share 1).",
        pd.DataFrame(disp),
        pd.DataFrame(data),
    )


def _group_stats(vals: np.ndarray, *, nonnegative: bool = False) -> dict[str, Any]:
    """:func:`~vaelens.stats.summary_interval` of the finite ``vals`` (n = 0 when none)."""
    vals = vals[np.isfinite(vals)]
    return summary_interval(vals, nonnegative=nonnegative and bool((vals >= 0).all()))


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
                vals = np.array([getattr(b, key) for b in blocks], dtype=float)
                s = _group_stats(vals, nonnegative=True)
                if not blocks:
                    continue
                disp.append({"dataset": ds, "architecture": arch_label(arch), "measure": label,
                             "value": _cell(s)})  # fmt: skip
                data.append({"dataset": ds, "architecture": arch, "measure": key, **s})
    return Table(
        "table_vq",
        "VQ-VAEs: discrete interventions",
        "A VQ-VAE decodes the nearest codebook entry, so a continuous latent traversal mostly "
        "snaps back to the same code. Its interventions are code swaps (the code at one "
        "position replaced by a random other code); the continuous-shift effect is shown "
        "beside for comparison. These runs are left out of the CES-DCI correlation and the "
        "architecture tests (their CES is a code-swap effect and their DCI codes are "
        "spatially averaged z_e). Mean across seeds with the interval of Table 1 (see Statistics).",
        pd.DataFrame(disp),
        pd.DataFrame(data),
    )


TEST_METRICS = (
    ("dci.disentanglement", "DCI D"),
    ("mig.mig", "MIG"),
    ("ces.mean", "mean CES"),
    ("specificity.mean", "mean specificity"),
    ("modularity.mu", "mu-layer modularity"),
    ("monosemantic_fraction.mu", "monosemantic fraction (mu)"),
    ("latent.collapsed_fraction", "collapsed latent fraction"),
    ("interchange.mean_min_set_size", "latents per factor (interchange)"),
    ("interchange.mean_share_max", "best single-latent share (interchange)"),
)


def _resolve(study: StudyData, ds: str, metric: str) -> str | None:
    if metric.endswith(".mu"):
        return _layer_metric(study, ds, metric[: -len(".mu")])
    return metric


def architecture_tests(study: StudyData, *, alpha: float = 0.05) -> Table:
    """Differences between architectures: Welch's ANOVA, pairwise Welch t with Holm correction
    over the pairs of each (dataset, metric) (``p_holm``, the claims) and over every test of
    a dataset together (``p_holm_all``, one closing claim per dataset)."""
    rows, disp, claims = [], [], []
    c = study.continuous  # VQ-VAE runs have their own table
    for ds in study.datasets:
        sub = c[c.dataset == ds]
        rank = {a: i for i, a in enumerate(study.architectures)}
        sub = sub.iloc[np.argsort(sub.architecture.map(rank).to_numpy(), kind="stable")]
        for metric, label in TEST_METRICS:
            column = _resolve(study, ds, metric)
            if _absent_optional(column, sub):
                continue
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
            constant = _constant_groups(sub[column].to_numpy(float), sub.architecture.to_numpy())
            claims += _test_claims(ds, label, pairs, omni, n_by, alpha, constant)
        claims += _across_metrics(ds, rows, disp, alpha)
    return Table(
        "architecture_tests",
        "Differences between architectures",
        "For each dataset and metric: Welch's (1951) ANOVA across architectures (no "
        "equal-variance assumption; F* on k - 1 and (k² - 1) / (3 Σ (1 - w_i/W)² / (n_i - 1)) "
        "df, w_i = n_i / s_i²) and every pairwise Welch t-test, p-values Holm-adjusted over "
        "the pairs of that dataset and metric ('Holm p'); 'Holm p, all metrics' adjusts "
        "the same p-values over every test of the dataset, the metrics together (the "
        "claims above use 'Holm p').",
        pd.DataFrame(disp),
        pd.DataFrame(rows),
        claims,
    )


def _across_metrics(
    ds: str, rows: list[dict[str, Any]], disp: list[dict[str, Any]], alpha: float
) -> list[str]:
    """Holm-adjust the pairwise p-values of dataset ``ds`` over all its metrics together
    (``p_holm_all`` in ``rows``, shown in ``disp``) and say how many differences survive."""
    idx = [i for i, r in enumerate(rows) if r["dataset"] == ds]
    if not idx:
        return []
    p = np.array([rows[i]["p"] for i in idx], dtype=float)
    adj = adjust_pvalues(p, "holm")
    for i, a in zip(idx, adj, strict=True):
        rows[i]["p_holm_all"] = float(a)
        disp[i]["Holm p, all metrics"] = fmt_p(a)
    tested, per_metric = int(np.isfinite(p).sum()), sum(rows[i]["p_holm"] < alpha for i in idx)
    if tested == 0:
        return []
    kept = int((adj < alpha).sum())
    return [
        f"{ds}: {per_metric} of {tested} tests show a difference at Holm-adjusted p < {alpha} "
        f"within their metric; adjusted over all {tested} together, {kept} "
        f"{'does' if kept == 1 else 'do'}."
    ]


def _constant_groups(values: np.ndarray, groups: np.ndarray) -> dict[str, float] | None:
    """``{architecture: value}`` when there are 2 or more architectures and each has 2 or
    more finite values, all equal within it (a t test is then undefined); None otherwise."""
    labels = pd.unique(groups)
    if len(labels) < 2:
        return None
    out = {}
    for g in labels:
        v = values[(groups == g) & np.isfinite(values)]
        if v.size < 2 or np.ptp(v) > 0:
            return None
        out[str(g)] = float(v[0])
    return out


def _test_row(
    ds: str, label: str, pr: Any, omni: dict[str, Any], n_by: dict[str, int]
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
        "anova_df1": omni.get("df1", np.nan),
        "anova_df2": omni.get("df2", np.nan),
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
    omni: dict[str, Any],
    n_by: dict[str, int],
    alpha: float,
    constant: dict[str, float] | None = None,
) -> list[str]:
    """What the tests of one (dataset, metric) allow us to say; ``constant``: each
    architecture's single value when every architecture's runs (2 or more) agree exactly."""
    claims = []
    sig = pairs[pairs.p_adj < alpha]
    n_txt = ", ".join(f"{arch_label(a)} n={n}" for a, n in n_by.items())
    if pairs.p_adj.notna().sum() == 0 and constant:
        means = ", ".join(f"{arch_label(a)} {fmt(m)}" for a, m in constant.items())
        claims.append(
            f"{ds}, {label}: the runs of each architecture agree exactly ({means}; {n_txt}), "
            "so there is no spread to test a difference against."
        )
    elif pairs.p_adj.notna().sum() == 0:
        claims.append(
            f"{ds}, {label}: too few runs per architecture to test ({n_txt}); "
            "no claim about differences is made."
        )
    elif sig.empty and np.isfinite(omni["p"]) and omni["p"] < alpha:
        claims.append(
            f"{ds}, {label}: Welch's ANOVA finds the architectures' means differ "
            f"({p_eq(omni['p'])}), but no pairwise difference survives the Holm "
            f"correction ({n_txt})."
        )
    elif sig.empty:
        claims.append(
            f"{ds}, {label}: no difference between architectures was detected "
            f"(Welch's ANOVA {p_eq(omni['p'])}; all Holm-adjusted pairwise p ≥ {alpha}; "
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


#: the covariates of the partial correlations over all runs (dropped when constant or
#: collinear with the ones before them)
CORR_COVARIATES = (
    ("n_factors", "number of factors"),
    ("channels", "channels"),
    ("factor_entropy", "factor-level entropy Σ log(levels)"),
    ("resolution", "resolution"),
    ("latent_dim", "latent dimensionality"),
)
MIXED_ANALYSIS = "mixed model CES ~ DCI, random intercept per architecture"


def ces_dci_correlation(
    study: StudyData, *, n_boot: int = 2000, alpha: float = 0.05, random_state: int = 0
) -> Table:
    """CES against DCI disentanglement, with the architecture as the unit where it matters.

    Rows (Pearson and Spearman unless said): per run inside each dataset and pooled within
    datasets; over architecture means (one point per architecture and dataset); inside each
    dataset controlling for reconstruction MSE; a random-intercept mixed model per dataset
    and pooled (statsmodels, slope of CES on DCI); partial correlations over all runs
    controlling for dataset covariates (and reconstruction); the pooled correlations without
    the dataset of most leverage (Pearson). Per-dataset p-values are Holm-adjusted over the
    datasets of each (analysis, method); every correlation has a bootstrap and a Fisher-z
    interval.
    """
    c = study.continuous  # VQ-VAE runs have their own table
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
            rows.append({"analysis": "within dataset", **r, "controls": "", "unit": "run"})
        rows += _arch_mean_rows(c, xcol, ycol, method, n_boot, random_state)
        rows += _recon_within_rows(c, xcol, ycol, method, n_boot, random_state)
    rows += _mixed_rows(c, xcol, ycol)
    for method in ("pearson", "spearman"):
        rows += _partial_rows(c, xcol, ycol, method, n_boot, random_state)
    rows += _leverage_rows(c, xcol, ycol, n_boot, random_state)
    data = _holm_over_datasets(pd.DataFrame(rows), set(study.datasets))
    return Table(
        "ces_dci_correlation",
        "CES against DCI disentanglement",
        "Correlation of mean CES with DCI disentanglement. 'within dataset': each run a "
        "point, inside each dataset and pooled within datasets (each dataset's means "
        "removed, so differences between datasets cannot create it); the runs of one "
        "architecture are not independent, so 'architecture means' repeats it with one "
        "point per architecture and dataset (n = architectures), and the mixed model fits "
        "CES ~ DCI with a random intercept per architecture (REML, Wald test and 95% CI of "
        "the slope; pooled: dataset fixed effects, a random intercept per architecture "
        "within dataset). 'within dataset | recon': partial correlation controlling for the "
        "reconstruction MSE. 'partial (all runs)': over all runs, controlling for the dataset "
        "covariates (number of factors, channels, factor-level entropy Σ log(levels), "
        "resolution) and latent size, dropping those constant or collinear over the runs. "
        "'without <dataset>': the pooled correlations without the dataset whose removal "
        "moves them most, with the leave-one-dataset-out range of r. Holm p: Holm-adjusted "
        "over the datasets of each analysis and method. Intervals: bootstrap (BCa from 10 "
        f"points, else percentile; {n_boot} resamples, whole rows) and Fisher-z "
        "(tanh(atanh r ∓ 1.96/√(n - 3 - K)), K controls or removed means; Spearman's "
        "variance 1.06/(n - 3 - K)).",
        _correlation_display(data),
        data,
        _correlation_claims(data, alpha),
    )


def _arch_mean_rows(
    c: pd.DataFrame, xcol: str, ycol: str, method: str, n_boot: int, random_state: int
) -> list[dict[str, Any]]:
    """Correlations over architecture means: one point per (dataset, architecture)."""
    both = c[np.isfinite(c[xcol].astype(float)) & np.isfinite(c[ycol].astype(float))]
    means = both.groupby(["dataset", "architecture"], as_index=False).agg(
        x=(xcol, "mean"), y=(ycol, "mean"), runs=(xcol, "size")
    )
    if means.empty:
        return []
    wg = within_group_correlation(
        means, "x", "y", "dataset", method=method, n_boot=n_boot, random_state=random_state
    )
    rows = []
    for r in wg.to_dict("records"):
        runs = (
            means.runs
            if r["group"] == "(pooled within)"
            else means.runs[means.dataset == r["group"]]
        )
        note = f"runs per point: {runs.min()}–{runs.max()}" if len(runs) else ""
        rows.append(
            {"analysis": "architecture means", **r, "controls": "", "unit": "architecture",
             "note": note}
        )  # fmt: skip
    return rows


def _recon_within_rows(
    c: pd.DataFrame, xcol: str, ycol: str, method: str, n_boot: int, random_state: int
) -> list[dict[str, Any]]:
    """Inside each dataset, CES-DCI controlling for the reconstruction MSE."""
    col = next((k for k in ("recon.mse_trained", "recon.trained") if k in c), None)
    if col is None:
        return []
    label = "recon MSE" if col == "recon.mse_trained" else "recon NLL"
    rows = []
    for ds, sub in c.groupby("dataset", sort=True):
        pc = partial_correlation(
            sub[xcol].to_numpy(float), sub[ycol].to_numpy(float), sub[col].to_numpy(float),
            method=method, covariate_names=(label,), n_boot=n_boot, random_state=random_state,
        )  # fmt: skip
        d = pc.to_dict()
        d["controls"] = ", ".join(d["controls"]) or f"({label} constant)"
        rows.append({"analysis": "within dataset | recon", "group": ds, **d, "unit": "run"})
    return rows


def _mixed_rows(c: pd.DataFrame, xcol: str, ycol: str) -> list[dict[str, Any]]:
    """CES ~ DCI with a random intercept per architecture: per dataset and pooled."""
    rows = []

    def row(group: str, res: dict[str, Any]) -> dict[str, Any]:
        return {
            "analysis": MIXED_ANALYSIS, "group": group, "method": "mixedlm", "r": np.nan,
            "p": res["p"], "ci_low": np.nan, "ci_high": np.nan, "n": res["n"], "level": 0.95,
            "controls": "", "fz_low": np.nan, "fz_high": np.nan, "unit": "run",
            "slope": res["slope"], "se": res["se"], "slope_low": res["ci_low"],
            "slope_high": res["ci_high"], "n_groups": res["n_groups"],
            "group_var": res["group_var"], "note": res["note"],
        }  # fmt: skip

    for ds, sub in c.groupby("dataset", sort=True):
        res = mixed_slope(sub[ycol].to_numpy(float), sub[xcol].to_numpy(float), sub.architecture)
        rows.append(row(str(ds), res))
    datasets = sorted(c.dataset.unique())
    if len(datasets) > 1:
        dummies = np.column_stack([(c.dataset == d).to_numpy(float) for d in datasets[1:]])
        res = mixed_slope(
            c[ycol].to_numpy(float), c[xcol].to_numpy(float),
            (c.dataset + "/" + c.architecture).to_numpy(), fixed=dummies,
        )  # fmt: skip
        rows.append(row("all (dataset fixed effects)", res))
    return rows


def _partial_rows(
    c: pd.DataFrame, xcol: str, ycol: str, method: str, n_boot: int, random_state: int
) -> list[dict[str, Any]]:
    """Partial correlations over all runs, controlling for the covariates the runs have
    (without and with the reconstruction error)."""
    rows: list[dict[str, Any]] = []
    for label, extra in (("partial", []), ("partial + recon", _recon_cov(c))):
        pc = _partial_all(c, xcol, ycol, method, extra, n_boot, random_state)
        if pc is None:
            continue
        d = pc.to_dict()
        d["controls"] = ", ".join(d["controls"]) or "(all covariates constant)"
        rows.append({"analysis": f"{label} (all runs)", "group": "all", **d, "unit": "run"})
    return rows


def _recon_cov(c: pd.DataFrame) -> list[tuple[str, str]]:
    return (
        [("recon.mse_trained", "recon MSE")]
        if "recon.mse_trained" in c
        else [("recon.trained", "recon NLL")]
    )


def _partial_all(
    c: pd.DataFrame,
    xcol: str,
    ycol: str,
    method: str,
    extra: list[tuple[str, str]],
    n_boot: int,
    random_state: int,
) -> Any:
    """:func:`partial_correlation` over the rows of ``c`` with the covariates it has."""
    covs = [(k, n) for k, n in (*CORR_COVARIATES, *extra) if k in c]
    if not covs:
        return None
    return partial_correlation(
        c[xcol].to_numpy(float), c[ycol].to_numpy(float), c[[k for k, _ in covs]].to_numpy(float),
        method=method, covariate_names=tuple(n for _, n in covs), n_boot=n_boot,
        random_state=random_state,
    )  # fmt: skip


def _pooled_within_r(c: pd.DataFrame, xcol: str, ycol: str) -> float:
    """Pearson r of CES and DCI after removing each dataset's means (no bootstrap)."""
    both = c[np.isfinite(c[xcol].astype(float)) & np.isfinite(c[ycol].astype(float))]
    if len(both) < 3:
        return float("nan")
    g = both.groupby("dataset")
    cx = both[xcol].astype(float) - g[xcol].transform("mean")
    cy = both[ycol].astype(float) - g[ycol].transform("mean")
    return float(correlation(cx, cy, n_boot=0).r)


def _leverage_rows(
    c: pd.DataFrame, xcol: str, ycol: str, n_boot: int, random_state: int
) -> list[dict[str, Any]]:
    """The pooled Pearson correlations without the dataset of most leverage (the one whose
    removal moves r most), with the leave-one-dataset-out range of r in ``note``."""
    datasets = sorted(c.dataset.unique())
    if len(datasets) < 3:
        return []
    rows = []
    scans = (
        ("within dataset", lambda d: _pooled_within_r(d, xcol, ycol)),
        ("partial (all runs)", lambda d: _lodo_partial_r(d, xcol, ycol)),
    )
    for analysis, r_of in scans:
        full = r_of(c)
        loo = {d: r_of(c[c.dataset != d]) for d in datasets}
        finite = {d: r for d, r in loo.items() if np.isfinite(r)}
        if not finite or not np.isfinite(full):
            continue
        worst = max(finite, key=lambda d: abs(finite[d] - full))
        rest = c[c.dataset != worst]
        if analysis == "within dataset":
            d = (
                within_group_correlation(
                    rest, xcol, ycol, "dataset", n_boot=n_boot, random_state=random_state
                )
                .iloc[-1]
                .to_dict()
            )
            d.pop("group")
        else:
            pc = _partial_all(rest, xcol, ycol, "pearson", [], n_boot, random_state)
            d = pc.to_dict()
            d["controls"] = ", ".join(d["controls"]) or "(all covariates constant)"
        d["controls"] = d.get("controls") or ""
        lo, hi = min(finite.values()), max(finite.values())
        rows.append(
            {
                "analysis": f"{analysis}, without the dataset of most leverage",
                "group": f"without {worst}",
                **d,
                "unit": "run",
                "r_all": full,
                "lodo_min": lo,
                "lodo_max": hi,
                "note": (
                    f"with all datasets r = {fmt(full)}; leaving one dataset out, r ranges "
                    f"{fmt(lo)} to {fmt(hi)} over {len(finite)} datasets"
                ),
            }
        )
    return rows


def _lodo_partial_r(c: pd.DataFrame, xcol: str, ycol: str) -> float:
    pc = _partial_all(c, xcol, ycol, "pearson", [], 0, 0)
    return float(pc.r) if pc is not None else float("nan")


def _holm_over_datasets(data: pd.DataFrame, datasets: set[str]) -> pd.DataFrame:
    """``p_holm``: Holm over the per-dataset rows of each (analysis, method); NaN elsewhere."""
    data = data.copy()
    data["p_holm"] = np.nan
    per_ds = data.group.isin(datasets)
    for _, idx in data[per_ds].groupby(["analysis", "method"]).groups.items():
        data.loc[idx, "p_holm"] = adjust_pvalues(data.loc[idx, "p"].to_numpy(float), "holm")
    return data


def _estimate_text(r: Any) -> str:
    if r.method == "mixedlm":
        if not np.isfinite(r.slope):
            return "n/a"
        return (
            f"slope {fmt(r.slope)} (SE {fmt(r.se, 2)}; Wald 95% CI [{fmt(r.slope_low)}, "
            f"{fmt(r.slope_high)}])"
        )
    return f"r = {fmt(r.r)}"


def _correlation_display(data: pd.DataFrame) -> pd.DataFrame:
    """The correlation rows as shown: estimate, p, Holm p, bootstrap and Fisher-z CIs."""
    note = data["note"].fillna("") if "note" in data else pd.Series("", index=data.index)
    units = data["unit"].fillna("run")
    n_groups = data["n_groups"] if "n_groups" in data else pd.Series(np.nan, index=data.index)
    n_txt = [
        f"{n} {u}s" + (f", {int(g)} groups" if np.isfinite(g) else "")
        for n, u, g in zip(data["n"], units, n_groups.astype(float), strict=True)
    ]
    ctl = data["controls"].fillna("")
    return pd.DataFrame(
        {
            "analysis": data["analysis"],
            "dataset": data["group"],
            "method": data["method"],
            "estimate": [_estimate_text(r) for r in data.itertuples()],
            "p": data["p"].map(fmt_p),
            "Holm p": data["p_holm"].map(fmt_p),
            "95% bootstrap CI": [
                f"[{fmt(lo)}, {fmt(hi)}]" if m != "mixedlm" else "—"
                for lo, hi, m in zip(data.ci_low, data.ci_high, data.method, strict=True)
            ],
            "95% Fisher-z CI": [
                f"[{fmt(lo)}, {fmt(hi)}]" if m != "mixedlm" else "—"
                for lo, hi, m in zip(data.fz_low, data.fz_high, data.method, strict=True)
            ],
            "n": n_txt,
            "controls / note": [
                "; ".join(t for t in (a, b) if t) for a, b in zip(ctl, note, strict=True)
            ],
        }
    )


def _pooled_claim(p: Any, alpha: float, what: str) -> str:
    ci = (
        f"95% bootstrap CI [{fmt(p.ci_low)}, {fmt(p.ci_high)}], Fisher-z "
        f"[{fmt(p.fz_low)}, {fmt(p.fz_high)}], n = {p.n}"
    )
    if np.isfinite(p.p) and p.p < alpha:
        sign = "negative" if p.r < 0 else "positive"
        return f"{what}, CES and DCI D are {sign}ly correlated (Pearson r = {fmt(p.r)}, {p_eq(p.p)}, {ci})."
    return f"{what}, no correlation of CES with DCI D was detected (Pearson r = {fmt(p.r)}, {p_eq(p.p)}, {ci})."


def _correlation_claims(data: pd.DataFrame, alpha: float) -> list[str]:
    """The pooled verdicts (runs, architecture means, mixed model, leverage), then one line
    per dataset and method with its Holm-adjusted p."""
    claims: list[str] = []
    pearson = data[data.method == "pearson"]
    for analysis, what in (
        ("within dataset", "Pooled within datasets (runs as points)"),
        ("architecture means", "Over architecture means, pooled within datasets"),
    ):
        pooled = pearson[(pearson.analysis == analysis) & (pearson.group == "(pooled within)")]
        if not pooled.empty:
            claims.append(_pooled_claim(pooled.iloc[0], alpha, what))
    mixed = data[(data.method == "mixedlm") & (data.group == "all (dataset fixed effects)")]
    for r in mixed.itertuples():
        if np.isfinite(r.slope):
            verdict = "significant" if np.isfinite(r.p) and r.p < alpha else "not significant"
            claims.append(
                f"Mixed model (random intercept per architecture within dataset, dataset fixed "
                f"effects): CES ~ DCI slope {fmt(r.slope)} (Wald 95% CI [{fmt(r.slope_low)}, "
                f"{fmt(r.slope_high)}], {p_eq(r.p)}, {verdict}; n = {r.n} runs in "
                f"{int(r.n_groups)} groups)" + (f"; {r.note}." if r.note else ".")
            )
        else:
            claims.append(f"Mixed model: not fitted ({r.note}).")
    for r in data[data.analysis.str.contains("without the dataset of most leverage")].itertuples():
        claims.append(
            f"{r.analysis.split(',')[0]} {r.group}: Pearson r = {fmt(r.r)} ({p_eq(r.p)}, "
            f"n = {r.n}); {r.note}."
        )
    per_ds = data[
        data.analysis.isin(["within dataset", "within dataset | recon"]) & data.p_holm.notna()
    ]
    for r in per_ds.itertuples():
        verdict = "significant" if np.isfinite(r.p_holm) and r.p_holm < alpha else "not significant"
        ctl = " controlling for reconstruction" if r.analysis.endswith("recon") else ""
        claims.append(
            f"{r.group} ({r.method}{ctl}): r = {fmt(r.r)}, {p_eq(r.p)}, Holm-adjusted "
            f"{p_eq(r.p_holm)} ({verdict}), CI [{fmt(r.ci_low)}, {fmt(r.ci_high)}], n = {r.n}."
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
                    verdict = "no CI (n < 3)"
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
                        "ours": _cell(s),
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
        "The numbers of Roy (2025) (their Tables 1 and 3: dSprites, one seed, no CIs) beside "
        f"ours; each of our cells is the {INTERVAL_TEXT}.",
        pd.DataFrame(disp),
        pd.DataFrame(data),
    )
