"""Assembling the study report: one self-contained HTML file plus the tables as CSV and Markdown."""

from __future__ import annotations

import base64
import html
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from vaelens.errors import ConfigError
from vaelens.io import atomic_open
from vaelens.progress import Progress, stage_teller
from vaelens.report import figures as figs
from vaelens.report import interchange as itabs
from vaelens.report import tables as tabs
from vaelens.report.data import StudyData, arch_label, fmt, load_study, p_eq, study_database
from vaelens.report.limits import limitations

__all__ = ["REPORT_STAGES", "build_report"]

#: The stages :func:`build_report` tells its ``progress`` callback, in order (then "done").
REPORT_STAGES = (
    "study",  # reading study.sqlite and each run's analysis.json
    "statistics",  # mediation, architecture tests, CES-DCI correlation (bootstrap)
    "architectures",  # sections 1-2 with the CES-DCI figure
    "latents",  # sections 3-4: per-dimension effects, causal graphs, polysemanticity
    "circuits",  # sections 5-6: modularity and mediation figures
    "comparisons",  # the later sections: baseline, tests, controls, interchange, zoo, ...
    "html",  # the self-contained HTML file
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{border-bottom:2px solid #444}h2{border-bottom:1px solid #bbb;margin-top:2em}
table{border-collapse:collapse;margin:.6em 0;font-size:.82em}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f0f0f0}tr:nth-child(even) td{background:#fafafa}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #ddd}
figcaption,.caption{font-size:.85em;color:#444}.claims li{margin:.2em 0}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:.4em .8em}
.bad{background:#fdecea;border-left:4px solid #d93025;padding:.4em .8em}
code{background:#f4f4f4;padding:0 3px}
"""

# Sets body[data-images-ok] to "loaded/total" once the page has loaded (used by tests; the
# report itself needs no JavaScript).
CHECK_SCRIPT = """<script>
window.addEventListener('load', function () {
  var imgs = document.images, ok = 0;
  for (var i = 0; i < imgs.length; i++) {
    if (imgs[i].complete && imgs[i].naturalWidth > 0) { ok++; }
  }
  document.body.dataset.imagesOk = ok + '/' + imgs.length;
});
</script>"""


def _e(text: object) -> str:
    return html.escape(str(text))


def _table_html(df: pd.DataFrame) -> str:
    if df.empty:
        return "<p>n/a (no data)</p>"
    head = "".join(f"<th>{_e(c)}</th>" for c in df.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_e(v)}</td>" for v in row) + "</tr>"
        for row in df.itertuples(index=False)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(png: bytes, alt: str, caption: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{_e(alt)}">'
        f"<figcaption>{_e(caption)}</figcaption></figure>"
    )


def _claims(claims: list[str]) -> str:
    if not claims:
        return ""
    return '<ul class="claims">' + "".join(f"<li>{_e(c)}</li>" for c in claims) + "</ul>"


class _Report:
    def __init__(self, out_dir: Path) -> None:
        self.parts: list[str] = []
        self.out_dir = out_dir
        self.table_files: list[Path] = []
        self.n_images = 0
        self.n_sections = 0

    def add(self, s: str) -> None:
        self.parts.append(s)

    def section(self, title: str) -> None:
        """A numbered section heading: sections a study does not have (controls, zoo, ...)
        leave no gap in the numbers."""
        self.n_sections += 1
        self.add(f'<h2 id="section-{self.n_sections}">{self.n_sections}. {title}</h2>')

    def table(self, t: tabs.Table) -> None:
        tdir = self.out_dir / "tables"
        tdir.mkdir(parents=True, exist_ok=True)
        with atomic_open(tdir / f"{t.key}.csv", "w") as fh:
            t.data.to_csv(fh, index=False)
        with atomic_open(tdir / f"{t.key}.md", "w") as fh:
            fh.write(f"## {t.title}\n\n{t.caption}\n\n{tabs.to_markdown(t.display)}")
            if t.claims:
                fh.write("\n" + "".join(f"- {c}\n" for c in t.claims))
        self.table_files += [tdir / f"{t.key}.csv", tdir / f"{t.key}.md"]
        self.add(f"<h3>{_e(t.title)}</h3><p class='caption'>{_e(t.caption)}</p>")
        self.add(_table_html(t.display))
        self.add(_claims(t.claims))

    def figure(self, png: bytes | None, alt: str, caption: str) -> None:
        if png is None:
            self.add(f"<p>{_e(alt)}: n/a (nothing to draw).</p>")
            return
        self.n_images += 1
        self.add(_img(png, alt, caption))

    def per_dataset(
        self, study: StudyData, fn: Callable[[StudyData, str], bytes | None], alt: str, cap: str
    ) -> None:
        for ds in study.datasets:
            self.figure(fn(study, ds), f"{alt} ({ds})", cap)


def _seed_counts(study: StudyData) -> tuple[int, int]:
    c = study.completed
    if c.empty:
        return 0, 0
    n = c.groupby(["dataset", "architecture"]).size()
    return int(n.min()), int(n.max())


def _roy2025_ci_text(theirs: tabs.Table) -> list[str]:
    """Per dataset, how many of the numbers of Roy (2025) lie outside our 95% CI."""
    out = []
    if theirs.data.empty:
        return out
    for ds, sub in theirs.data.groupby("dataset", sort=True):
        off = sub[sub.verdict == "outside our 95% CI"]
        tested = sub[sub.verdict.isin(["outside our 95% CI", "within our 95% CI"])]
        if tested.empty:
            out.append(f"{ds}: none of the numbers of Roy (2025) can be checked against a CI.")
            continue
        listed = "; ".join(
            f"{m} {arch_label(a)} (Roy (2025) {fmt(v)}, ours {fmt(mu)})"
            for m, a, v, mu in zip(
                off.metric, off.architecture, off.roy2025, off["mean"], strict=True
            )
        )
        out.append(
            f"{ds}: {len(off)} of {len(tested)} Roy (2025) numbers with a CI of ours lie outside "
            f"it" + (f": {listed}." if listed else ".")
        )
    return out


def _roy2025_corr_text(corr: tabs.Table) -> list[str]:
    """Whether our pooled within-dataset CES-DCI correlation agrees with Roy (2025)'s claim."""
    data = corr.data
    if data.empty or "group" not in data:
        return []
    pooled = data[
        (data.analysis == "within dataset")
        & (data.group == "(pooled within)")
        & (data.method == "pearson")
    ]
    if pooled.empty:
        return []
    p = pooled.iloc[0]
    if np.isfinite(p.p) and p.p < 0.05 and p.r < 0:
        return [
            f"Ours agrees in sign: pooled within datasets r = {fmt(p.r)} ({p_eq(p.p)}, n = {p.n})."
        ]
    if np.isfinite(p.p) and p.p < 0.05:
        return [
            f"Ours disagrees: pooled within datasets the correlation is positive, "
            f"r = {fmt(p.r)} ({p_eq(p.p)}, n = {p.n})."
        ]
    return [
        f"Ours does not reproduce it: no within-dataset correlation was detected "
        f"(pooled r = {fmt(p.r)}, {p_eq(p.p)}, n = {p.n})."
    ]


def _ces_order_text(study: StudyData) -> list[str]:
    """Per dataset, our order of the architectures of Roy (2025) by mean CES."""
    out = []
    for ds in study.datasets:
        c = study.completed[study.completed.dataset == ds]
        if "ces.mean" not in c or c.empty:
            continue
        means = c.groupby("architecture")["ces.mean"].mean()
        means = means[[a for a in tabs.ROY2025_ARCHS if a in means.index]].dropna()
        if len(means) >= 2:
            order = " > ".join(arch_label(a) for a in means.sort_values(ascending=False).index)
            out.append(
                f"{ds}: our mean-CES order is {order} (means; tests in the section "
                "'Tests of architecture differences')."
            )
    return out


def _roy2025_text(study: StudyData, corr: tabs.Table, theirs: tabs.Table) -> list[str]:
    out = _roy2025_ci_text(theirs)
    s = tabs.ROY2025
    r_roy2025 = float(np.corrcoef(s["ces.mean"], s["dci.disentanglement"])[0, 1])
    out.append(
        "Roy (2025) Table 1 (dSprites, one seed a model, no error bars) ranks mean CES "
        "FactorVAE > VAE > β-VAE and DCI D in the same order; across their three models the "
        f"two columns correlate positively (Pearson r = {r_roy2025:.2f}, n = 3, no test possible)."
        " The extended version of Roy (2025) instead claims a consistent negative "
        "within-dataset CES-DCI correlation."
    )
    out += _roy2025_corr_text(corr)
    out += _ces_order_text(study)
    out.append(
        "Metric forms: CES is Roy (2025) eq. 7 (mean L2 change of the decoded image), which "
        "grows with the image size, the pixel scale and the intervention range, so absolute "
        "values are comparable only under the same decoder output, image size and latent "
        "values; the normalised form divides it out. Specificity: Roy (2025)'s 1/(H + eps) is "
        "unbounded and depends on the number of pixels; the normalised form is 1 - H/log D. "
        "Polysemanticity: Roy (2025)'s printed formula and the participation ratio both lie in "
        "[1, |F|], so Roy (2025)'s latent means below 1 (0.837, 0.612, 0.493) are impossible "
        "under either form; our tables give both. Roy (2025)'s modularity and PS of exactly "
        "1.000 in every early layer point to a degenerate computation, not a finding."
    )
    return out


def _check_args(study_dir: Path, n_boot: int) -> None:
    if not study_dir.is_dir():
        raise ConfigError(f"study_dir: {study_dir} is not a directory")
    if n_boot < 0:
        raise ConfigError(f"n_boot: expected a non-negative integer, got {n_boot}")
    study_database(study_dir)  # no study: fail before the first stage is told


def _add_header(rep: _Report, study: StudyData, study_dir: Path) -> None:
    """Title, what the study holds, and a note when configurations have a single seed."""
    counts = study.runs.status.value_counts().to_dict()
    lo, hi = _seed_counts(study)
    rep.add(f"<h1>vaelens study report: {_e(study.name)}</h1>")
    rep.add(
        f"<p>Study directory <code>{_e(study_dir)}</code>; generated "
        f"{_e(time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()))}. Runs: "
        + ", ".join(f"{_e(k)} {v}" for k, v in sorted(counts.items()))
        + f". Architectures: {_e(', '.join(arch_label(a) for a in study.architectures))}. "
        f"Datasets: {_e(', '.join(study.datasets))}. Completed runs per (dataset, "
        f"architecture): {lo} to {hi}.</p>"
    )
    if hi < 2:
        rep.add(
            "<p class='note'>Only one seed per configuration: no confidence intervals and no "
            "tests are possible; cells show the single value with n=1.</p>"
        )
    elif lo < 2:
        rep.add(
            "<p class='note'>Some configurations have a single completed run: their cells "
            "show n=1 and no CI.</p>"
        )


def _adopted_from(study: StudyData) -> dict[str, str]:
    """``{run_id: folder}`` of the runs whose training a study adopted (``adopted.json``)."""
    found: dict[str, str] = {}
    for rid, run_dir in study.run_dirs.items():
        try:
            record = json.loads((Path(run_dir) / "adopted.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and isinstance(record.get("from"), str):
            found[rid] = str(Path(record["from"]).parent)
    return found


def _add_provenance(rep: _Report, study: StudyData) -> None:
    """Where the training of adopted runs came from (``run_study(trained=...)``)."""
    adopted = _adopted_from(study)
    if adopted:
        folders = ", ".join(f"<code>{_e(f)}</code>" for f in sorted(set(adopted.values())))
        rep.add(
            f"<p class='note'>Training of {len(adopted)} of {len(study.runs)} runs was not done "
            f"by this study: it was adopted from finished runs of the same settings in {folders} "
            "(each run's adopted.json names its source and checkpoint SHA-256); the analyses "
            "were run here.</p>"
        )


def _add_failures(rep: _Report, study: StudyData) -> None:
    """Runs that did not complete and files that could not be read."""
    rep.add("<h2>Failed and incomplete runs</h2>")
    bad = study.runs[study.runs.status != "completed"]
    if bad.empty:
        rep.add("<p>Every run completed.</p>")
    else:
        shown = bad[["run_id", "architecture", "dataset", "seed", "status", "error"]].fillna("")
        rep.add(_table_html(shown))
    if study.problems:
        rep.add("<div class='bad'><p>Files that could not be read:</p>")
        rep.add(_claims(study.problems) + "</div>")


def _add_limits(rep: _Report, study: StudyData, tests: tabs.Table, corr: tabs.Table) -> None:
    """What this study cannot conclude (:func:`vaelens.report.limits.limitations`)."""
    found = limitations(study, tests, corr)
    if found:
        rep.add("<h2>What this study cannot conclude</h2>")
        rep.add("<ul>" + "".join(f"<li>{_e(s)}</li>" for s in found) + "</ul>")


def _add_controls(rep: _Report, study: StudyData) -> None:
    table = tabs.controls_table(study)
    if any(c.startswith("controls.") for c in study.completed.columns):
        _add_section(rep, study, "Controls (docs/controls.md)", table)


def _add_architectures(rep: _Report, study: StudyData, tests: tabs.Table) -> None:
    rep.section("Architecture comparison")
    rep.table(tabs.architecture_comparison(study))
    rep.add(
        "<p>Claims about differences between architectures (Welch t, Holm-adjusted over "
        "pairs; a difference is stated only when the adjusted p &lt; 0.05):</p>"
    )
    rep.add(_claims(tests.claims))


def _add_correlation(rep: _Report, study: StudyData, corr: tabs.Table) -> None:
    rep.section("CES against DCI disentanglement")
    rep.figure(
        figs.ces_vs_dci(study),
        "CES vs DCI",
        "Small points are runs; ringed diamonds are architecture means (one per "
        "architecture and dataset: the runs of one architecture are not independent); lines "
        "are per-dataset least-squares fits over the runs with their 95% confidence band "
        "(t-based band of the mean line). Statistics, with the architecture as the unit, in "
        "the table below.",
    )
    rep.table(corr)


FigureFn = Callable[[StudyData, str], bytes | None]


def _add_section(
    rep: _Report,
    study: StudyData,
    heading: str,
    table: tabs.Table,
    figures: tuple[tuple[FigureFn, str, str], ...] = (),
) -> None:
    """A numbered section: heading, its table, then each ``(fn, alt, caption)`` per dataset."""
    rep.section(heading)
    rep.table(table)
    for fn, alt, caption in figures:
        rep.per_dataset(study, fn, alt, caption)


def _add_interchange(rep: _Report, study: StudyData) -> None:
    """The interchange section: summary across seeds, the matrices, circuits and alignment."""
    tables = [
        tabs.interchange_table(study),
        itabs.interchange_matrices(study),
        itabs.circuit_table(study),
        itabs.alignment_table(study),
    ]
    tables = [t for t in tables if not t.display.empty]
    if not tables:
        return
    rep.section("Interchange interventions (docs/interchange.md)")
    for table in tables:
        rep.table(table)


def _add_dimensions(rep: _Report, study: StudyData) -> None:
    _add_section(
        rep,
        study,
        "Effect strength and specificity per latent, by rank",
        tabs.per_dimension_effects(study),
        (
            (
                figs.ces_specificity_per_dim,
                "CES and specificity per dimension",
                "Latents ordered by CES within each run (latent indices are arbitrary in each "
                "run, so rank 1 is compared with rank 1). Bars: mean across seeds; error bars: "
                "95% log-scale t interval (cannot cross zero) with 3 or more seeds; with fewer, "
                "dots show each seed's value. Specificity is Roy (2025)'s 1/(H + eps), at the "
                "same latents; dead latents have none.",
            ),
        ),
    )
    rep.add("<h3>Latent-to-factor causal graph</h3>")
    rep.per_dataset(
        study,
        figs.causal_graph,
        "causal graph",
        "Edges from latent dimensions to the factors they control, width and opacity "
        "proportional to the effect (first completed seed of each architecture). Where the "
        "run has interchange interventions (their section below) the graph is theirs: an edge where "
        "the share's 95% bootstrap lower bound is above the threshold, width the share, "
        "measured against the real counterfactual images; otherwise ('probe' in the panel "
        "title) the linear-probe graph of the causal-graph block, edges at 15% of its "
        "strongest weight.",
    )


def _add_polysemanticity(rep: _Report, study: StudyData) -> None:
    _add_section(
        rep,
        study,
        "Polysemanticity",
        tabs.polysemanticity_table(study),
        (
            (
                figs.polysemanticity_hist,
                "polysemanticity histograms",
                "Distribution of per-unit PS in the latent (mu) layer, pooled over seeds, in "
                "both forms; dead units are left out.",
            ),
            (
                figs.unit_response_heatmaps,
                "unit-response heatmaps",
                "Circuit motifs: each row is a unit, each column a factor; colour is the unit's "
                "response to that factor as a share of its total response (first completed "
                "seed).",
            ),
        ),
    )


def _add_modularity(rep: _Report, study: StudyData) -> None:
    _add_section(
        rep,
        study,
        "Circuit modularity",
        tabs.modularity_by_layer(study),
        (
            (
                figs.modularity_layers,
                "modularity by layer",
                "Mean across seeds with 95% CI; dotted: the random-initialisation twins.",
            ),
        ),
    )
    rep.figure(
        figs.modularity_vs_effect(study),
        "modularity vs effect",
        "One point a run: mu-layer modularity against mean CES (Roy (2025)'s 'modularity "
        "paradox' plot). No correlation is claimed from this figure.",
    )


def _add_mediation(rep: _Report, study: StudyData, mediation: tabs.Table) -> None:
    _add_section(
        rep,
        study,
        "Causal mediation",
        mediation,
        (
            (
                figs.mediation_by_channel,
                "mediation by channel",
                "Cumulative share of each factor's effect on the latent mean carried by the "
                "top-k channels of the mediated layer (channels ranked within each run), mean "
                "over seeds: a curve that reaches 1 at k = 1 is a single-channel circuit.",
            ),
        ),
    )


def _add_baseline_and_tests(rep: _Report, study: StudyData, tests: tabs.Table) -> None:
    _add_section(
        rep,
        study,
        "Causal metrics against the random-network baseline",
        tabs.baseline_comparison(study),
    )
    _add_section(rep, study, "Tests of architecture differences", tests)
    vq = tabs.vq_interventions(study)
    if not vq.display.empty:
        _add_section(rep, study, "VQ-VAEs: discrete interventions", vq)


def _add_run_traversal(rep: _Report, study: StudyData, ds: str, arch: str) -> bool:
    """The traversal figure of the first run of (``ds``, ``arch``) that has one; True if shown."""
    for rid in study.runs_of(ds, arch):
        path = study.run_dirs[rid] / "figures" / "traversals.png"
        if not path.is_file():
            continue
        data = path.read_bytes()
        if not data.startswith(PNG_MAGIC):
            rep.add(f"<p>{_e(path)}: not a PNG file; skipped.</p>")
            return False
        rep.figure(
            data,
            f"traversals {rid}",
            f"{arch_label(arch)} on {ds} (run {rid}): each row a latent "
            "dimension set to each intervention value, decoded; a row is labelled with the "
            "factor it carries most of (its interchange share, where that is an edge of "
            "the interchange graph) or as collapsed.",
        )
        return True
    return False


def _add_traversals(rep: _Report, study: StudyData) -> None:
    rep.section("Latent traversals")
    found = False
    for ds in study.datasets:
        for arch in study.architectures:
            found = _add_run_traversal(rep, study, ds, arch) or found
    if not found:
        rep.add("<p>No run has figures/traversals.png.</p>")


def _add_roy2025(rep: _Report, study: StudyData, corr: tabs.Table) -> None:
    rep.section("Comparison with Roy (2025)")
    theirs = tabs.roy2025_comparison(study)
    rep.table(theirs)
    rep.add(_claims(_roy2025_text(study, corr, theirs)))


def _write_document(rep: _Report, study: StudyData, out: Path) -> Path:
    doc = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>vaelens report: {_e(study.name)}</title><style>{CSS}</style></head>"
        f"<body data-images-total='{rep.n_images}'>"
        + "\n".join(rep.parts)
        + CHECK_SCRIPT
        + "</body></html>"
    )
    path = out / "report.html"
    with atomic_open(path, "w") as fh:
        fh.write(doc)
    return path


def build_report(
    study_dir: str | Path,
    out_dir: str | Path | None = None,
    *,
    n_boot: int = 2000,
    mediation_factor: str | None = None,
    random_state: int = 0,
    progress: Progress | None = None,
) -> Path:
    """Write the report of the study in ``study_dir`` and return the path of ``report.html``.

    ``out_dir`` (default ``study_dir/report``) receives ``report.html`` (self-contained:
    figures as base64 PNG data URIs, inline CSS, no external requests) and ``tables/``
    with every table as ``<key>.csv`` (numbers, long form) and ``<key>.md`` (as shown).
    ``n_boot`` bootstrap resamples for correlation CIs; ``mediation_factor`` the factor of
    Table 5 (default: each dataset's first factor). Raises :class:`ConfigError` when
    ``study_dir`` holds no study.

    ``progress(stage, done, total)`` is called as each stage of :data:`REPORT_STAGES`
    starts (reading the study, the statistics, groups of sections with their figures,
    writing the HTML) and with ``("done", total, total)`` at the end.
    """
    study_dir = Path(study_dir)
    _check_args(study_dir, n_boot)
    stage = stage_teller(progress, REPORT_STAGES)
    out = Path(out_dir) if out_dir is not None else study_dir / "report"
    stage("study")
    study = load_study(study_dir)  # before anything is created: no study, no report/
    stage("statistics")
    out.mkdir(parents=True, exist_ok=True)
    rep = _Report(out)
    _add_header(rep, study, study_dir)
    _add_provenance(rep, study)
    _add_failures(rep, study)
    mediation = tabs.mediation_by_layer(study, mediation_factor)  # validates the factor first
    tests = tabs.architecture_tests(study)
    corr = tabs.ces_dci_correlation(study, n_boot=n_boot, random_state=random_state)
    _add_limits(rep, study, tests, corr)
    stage("architectures")
    _add_architectures(rep, study, tests)
    _add_correlation(rep, study, corr)
    stage("latents")
    _add_dimensions(rep, study)
    _add_polysemanticity(rep, study)
    stage("circuits")
    _add_modularity(rep, study)
    _add_mediation(rep, study, mediation)
    stage("comparisons")
    _add_baseline_and_tests(rep, study, tests)
    _add_controls(rep, study)
    _add_interchange(rep, study)
    if any(col.startswith("dlib.") for col in study.completed.columns):
        _add_section(rep, study, "Pretrained zoo", tabs.zoo_comparison(study, n_boot=n_boot))
    _add_traversals(rep, study)
    _add_roy2025(rep, study, corr)
    stage("html")
    path = _write_document(rep, study, out)
    stage("done")
    return path
