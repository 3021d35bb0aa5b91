"""build_report on fake study directories: files, self-containment, statistics, missing data."""

from __future__ import annotations

import base64
import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from report_fixtures import FACTORS, make_fake_study
from vaelens.errors import ConfigError
from vaelens.report import build_report
from vaelens.report.data import StudyData, fmt_ci, load_study
from vaelens.report.html import REPORT_STAGES
from vaelens.report.tables import architecture_tests, to_markdown
from vaelens.stats import within_group_correlation
from vaelens.study.store import ResultStore

N_BOOT = 50
TABLE_KEYS = (
    "table1_architectures",
    "table2_dimensions",
    "table3_polysemanticity",
    "table4_modularity",
    "table5_mediation",
    "ces_dci_correlation",
    "baseline",
    "architecture_tests",
    "roy2025_comparison",
)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    study = make_fake_study(tmp_path_factory.mktemp("study"))
    return study, build_report(study, n_boot=N_BOOT)


def test_report_files_and_self_contained(built: tuple[Path, Path]) -> None:
    study, html_path = built
    assert html_path == study / "report" / "report.html"
    text = html_path.read_text()
    # no external requests: every src/href is a data URI, no stylesheet links
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)""", text)
    assert refs and all(r.startswith("data:image/png;base64,") for r in refs)
    assert "<link" not in text and "@import" not in text and "url(" not in text
    pngs = re.findall(r'<img src="data:image/png;base64,([^"]+)"', text)
    total = int(re.search(r"data-images-total='(\d+)'", text).group(1))
    assert len(pngs) == total == len(refs)
    assert all(base64.b64decode(p).startswith(b"\x89PNG\r\n\x1a\n") for p in pngs)
    # 6 traversal images (3 archs x 2 datasets) embedded from the runs
    assert text.count("traversals ") >= 6
    for key in TABLE_KEYS:
        assert (study / "report" / "tables" / f"{key}.csv").is_file(), key
        md = (study / "report" / "tables" / f"{key}.md").read_text()
        assert md.startswith("## ") and "|---|" in md
    # the failed run and its error are listed; the numbers of Roy (2025) are there
    assert "factor_vae-dsprites-s1" in text and "TrainingDivergedError" in text
    assert "Comparison with Roy (2025)" in text and "0.0636" in text
    assert "0.587" in text  # Roy (2025)'s FactorVAE % monosemantic (as a fraction)


def test_table1_matches_the_store(built: tuple[Path, Path]) -> None:
    study, _ = built
    t1 = pd.read_csv(study / "report" / "tables" / "table1_architectures.csv")
    with ResultStore(study / "study.sqlite") as store:
        res = store.results()
    done = res[res.status == "completed"]
    for (ds, arch), sub in done.groupby(["dataset", "architecture"]):
        for col in ("ces.mean", "dci.disentanglement", "specificity.mean"):
            vals = sub[col].dropna().to_numpy(float)
            row = t1[(t1.dataset == ds) & (t1.architecture == arch) & (t1.column == col)].iloc[0]
            assert row.n == vals.size
            assert row["mean"] == pytest.approx(vals.mean())
            if vals.size >= 3:  # non-negative metrics: the log-scale t interval
                from scipy import stats as sps

                se = vals.std(ddof=1) / np.sqrt(vals.size)
                f = np.exp(sps.t.ppf(0.975, vals.size - 1) * se / vals.mean())
                assert (row.ci_low, row.ci_high) == pytest.approx(
                    (vals.mean() / f, vals.mean() * f)
                )
                assert row.interval == "log-t"
            elif vals.size == 2:  # no interval from two seeds: their values
                assert np.isnan(row.ci_low) and row.interval == "range"
                assert (row["min"], row["max"]) == pytest.approx((vals.min(), vals.max()))
            else:
                assert np.isnan(row.ci_low)
    # the run without DCI leaves n = 1 for its cell, shown without a CI
    row = t1[(t1.dataset == "synthetic") & (t1.architecture == "vae")]
    assert row[row.column == "dci.disentanglement"].n.iloc[0] == 1


def test_correlation_table_matches_stats(built: tuple[Path, Path]) -> None:
    study, _ = built
    corr = pd.read_csv(study / "report" / "tables" / "ces_dci_correlation.csv")
    data = load_study(study).completed
    exp = within_group_correlation(
        data, "ces.mean", "dci.disentanglement", "dataset", n_boot=N_BOOT
    )
    got = corr[(corr.analysis == "within dataset") & (corr.method == "pearson")]
    np.testing.assert_allclose(got.r.to_numpy(), exp.r.to_numpy())
    np.testing.assert_allclose(got.p.to_numpy(), exp.p.to_numpy())
    partial = corr[corr.analysis == "partial (all runs)"]
    assert set(partial.method) == {"pearson", "spearman"}
    # channels, resolution and latent size are constant in the fixture, and with two
    # datasets the factor-level entropy is collinear with the factor count: only it stays
    assert all(c == "number of factors" for c in partial.controls)
    # every correlation has its Fisher-z interval beside the bootstrap one (from n - 3 - K >= 1)
    rows = corr[(corr.method != "mixedlm") & (corr.n >= 6)]
    assert rows.fz_low.notna().all() and (rows.fz_low <= rows.r).all()
    assert (rows.r <= rows.fz_high).all()
    assert corr[(corr.analysis == "architecture means") & (corr.n == 3)].fz_low.isna().all()


def test_claims_follow_the_adjusted_pvalues(tmp_path: Path) -> None:
    study = make_fake_study(
        tmp_path,
        datasets=("synthetic",),
        seeds=(0, 1, 2, 3),
        failed=(),
        no_dci=(),
        traversals=False,
    )
    table = architecture_tests(load_study(study))
    ces = table.data[table.data.metric == "mean CES"]
    assert (ces.p_holm < 0.05).any()  # FactorVAE's CES is shifted up by 1.4 in the fixture
    for row in table.data.itertuples():
        higher = row.a if row.mean_a > row.mean_b else row.b
        stated = [
            c
            for c in table.claims
            if f"{row.metric} (" in c
            and "is higher than" in c
            and {row.a, row.b} <= {w for w in ("vae", "beta_vae", "factor_vae")}
            and _names(c) == {row.a, row.b}
        ]
        if row.p_holm < 0.05:
            assert len(stated) == 1 and stated[0].startswith(f"synthetic: {_label(higher)}'s")
            assert f"{row.p_holm:.3g}" in stated[0] or "p < 0.001" in stated[0]
        else:
            assert not stated


def _label(arch: str) -> str:
    return {"vae": "VAE", "beta_vae": "β-VAE", "factor_vae": "FactorVAE"}[arch]


def _names(claim: str) -> set[str]:
    found = set()
    for arch in ("factor_vae", "beta_vae", "vae"):
        lab = _label(arch)
        if f"{lab}'s" in claim:
            found.add(arch)
            claim = claim.replace(f"{lab}'s", "")
    return found


def test_one_seed_gives_no_ci_and_does_not_crash(tmp_path: Path) -> None:
    study = make_fake_study(
        tmp_path, datasets=("dsprites",), seeds=(0,), failed=(), no_dci=(), traversals=False
    )
    text = build_report(study, tmp_path / "out", n_boot=N_BOOT).read_text()
    assert "Only one seed per configuration" in text
    t1 = pd.read_csv(tmp_path / "out" / "tables" / "table1_architectures.csv")
    assert t1.ci_low.isna().all() and (t1.n <= 1).all()
    md = (tmp_path / "out" / "tables" / "table1_architectures.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("| ")]
    valued = [r for r in rows[1:] if "n/a" not in r]
    assert valued and not any("±" in r for r in rows) and all("(n=1)" in r for r in valued)
    assert "too few runs per architecture to test" in text
    assert "No run has figures/traversals.png" in text


def test_progress_hears_each_stage_then_done(tmp_path: Path) -> None:
    study = make_fake_study(
        tmp_path, datasets=("dsprites",), seeds=(0,), failed=(), no_dci=(), traversals=False
    )
    heard: list[tuple[str, int, int]] = []
    path = build_report(study, n_boot=N_BOOT, progress=lambda *a: heard.append(a))
    n = len(REPORT_STAGES)
    assert heard == [*((s, i, n) for i, s in enumerate(REPORT_STAGES)), ("done", n, n)]
    assert REPORT_STAGES[0] == "study" and REPORT_STAGES[-1] == "html" and path.is_file()
    heard.clear()
    with pytest.raises(ConfigError, match=r"study\.sqlite"):  # no study: no stage is told
        build_report(tmp_path / "runs", progress=lambda *a: heard.append(a))
    assert heard == []


def test_missing_analysis_and_metrics_show_na(tmp_path: Path) -> None:
    study = make_fake_study(tmp_path, datasets=("synthetic",), seeds=(0, 1), traversals=False)
    (study / "runs" / "vae-synthetic-s0" / "analysis.json").unlink()
    (study / "runs" / "beta_vae-synthetic-s0" / "analysis.json").write_text("{not json")
    old = study / "runs" / "factor_vae-synthetic-s0" / "analysis.json"
    old.write_text(json.dumps({**json.loads(old.read_text()), "schema_version": 1}))
    text = build_report(study, n_boot=N_BOOT).read_text()
    assert "vae-synthetic-s0: no analysis.json" in text
    assert "beta_vae-synthetic-s0" in text and "not a readable JSON file" in text
    assert "factor_vae-synthetic-s0" in text and "analysis schema version 1" in text
    with pytest.raises(ConfigError, match="mediation_factor: 'colour'"):
        build_report(study, n_boot=N_BOOT, mediation_factor="colour")
    t2 = pd.read_csv(study / "report" / "tables" / "table2_dimensions.csv")
    assert (t2[t2.architecture == "vae"].n == 1).all()  # only s1's analysis is left


def test_errors_and_formatting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"study\.sqlite"):
        build_report(tmp_path)
    with pytest.raises(ConfigError, match="not a directory"):
        build_report(tmp_path / "nope")
    assert fmt_ci(float("nan"), np.nan, np.nan, 0) == "n/a"
    assert fmt_ci(2.0, 1.0, 3.0, 3) == "2 ± 1 (n=3)"
    md = to_markdown(pd.DataFrame({"a|b": ["x|y"], "c": [1]}))
    assert md.splitlines()[0] == "| a\\|b | c |" and "x\\|y" in md


def test_study_without_completed_runs(tmp_path: Path) -> None:
    with ResultStore(tmp_path / "study.sqlite") as store:
        store.add_runs([{"run_id": "r0", "architecture": "vae", "dataset": "dsprites", "seed": 0}])
    text = build_report(tmp_path, n_boot=N_BOOT).read_text()
    assert "r0" in text and "pending" in text
    with pytest.raises(ConfigError, match="n_boot"):
        build_report(tmp_path, n_boot=-1)
    t1 = (tmp_path / "report" / "tables" / "table1_architectures.md").read_text()
    assert "| dsprites | Mean CES (Roy (2025) form) | n/a |" in t1


def test_mediation_table_is_per_channel(tmp_path: Path) -> None:
    from vaelens.report.data import load_study
    from vaelens.report.tables import channel_concentration, mediation_by_layer

    one = channel_concentration(np.array([1.0, 0.0, 0.0, 0.0]))
    assert one == {"top1": 1.0, "top3": 1.0, "n_eff": 1.0}
    even = channel_concentration(np.full(4, 0.25))
    assert even["top1"] == 0.25 and even["top3"] == 0.75 and even["n_eff"] == pytest.approx(4.0)
    assert np.isnan(channel_concentration(np.full(3, np.nan))["n_eff"])
    study = load_study(make_fake_study(tmp_path, datasets=("synthetic",), seeds=(0, 1)))
    table = mediation_by_layer(study)
    assert set(table.display.factor) == set(FACTORS["synthetic"])  # every factor, not one
    assert set(table.data.measure) == {"top1", "top3", "n_eff"}
    assert "whole-layer" in table.caption.lower() or "Whole-layer" in table.caption
    only = mediation_by_layer(study, "posX")
    assert set(only.display.factor) == {"posX"}


def test_vq_runs_get_their_own_table(tmp_path: Path) -> None:
    from vaelens.report.data import load_study
    from vaelens.report.tables import vq_interventions

    study = make_fake_study(tmp_path, architectures=("vae", "vq_vae"), datasets=("dsprites",),
                            seeds=(0, 1), failed=(), no_dci=())  # fmt: skip
    table = vq_interventions(load_study(study))
    assert set(table.data.architecture) == {"vq_vae"}
    assert (table.data.n == 2).all()
    html = build_report(study, n_boot=N_BOOT).read_text()
    assert "VQ-VAEs: discrete interventions" in html
    assert vq_interventions(load_study(make_fake_study(tmp_path / "c"))).display.empty


def test_table2_compares_latents_by_rank(tmp_path: Path) -> None:
    study = load_study(
        make_fake_study(
            tmp_path, datasets=("synthetic",), seeds=(0, 1, 2), failed=(), no_dci=(),
            traversals=False,
        )
    )  # fmt: skip
    from vaelens.report.tables import per_dimension_effects

    t2 = per_dimension_effects(study).data
    for arch in study.architectures:
        ces = [a.trained.latent.ces for a in study.analyses_of("synthetic", arch)]
        rows = t2[t2.architecture == arch].sort_values("rank")
        # rank 1 is each run's strongest latent, whatever its index
        assert rows["mean"].iloc[0] == pytest.approx(np.mean([c.max() for c in ces]))
        assert rows["mean"].iloc[-1] == pytest.approx(np.mean([c.min() for c in ces]))
        assert (np.diff(rows["mean"].to_numpy()) <= 0).all()
        assert (rows.interval == "log-t").all() and (rows.ci_low > 0).all()


def test_correlation_with_architecture_units_and_a_leverage_dataset(tmp_path: Path) -> None:
    # CelebA (40 factors, 3 channels) carries a planted negative CES-DCI slope; the others none
    study = load_study(
        make_fake_study(
            tmp_path, datasets=("synthetic", "dsprites", "shapes3d", "celeba"),
            seeds=(0, 1, 2, 3), failed=(), no_dci=(), traversals=False,
            dci_slope={"synthetic": 0.0, "dsprites": 0.0, "shapes3d": 0.0, "celeba": -0.1},
        )
    )  # fmt: skip
    c = study.completed
    cov = c.groupby("dataset")[["n_factors", "channels", "factor_entropy"]].first()
    assert cov.loc["celeba"].tolist() == pytest.approx([40, 3, 40 * np.log(2)])
    assert cov.loc["dsprites"].tolist() == pytest.approx([5, 1, np.log(3 * 6 * 40 * 32 * 32)])
    from vaelens.report.tables import ces_dci_correlation

    table = ces_dci_correlation(study, n_boot=N_BOOT)
    d = table.data
    pear = d[d.method == "pearson"]
    partial = pear[pear.analysis == "partial (all runs)"].iloc[0]
    assert partial.controls == "number of factors, channels, factor-level entropy Σ log(levels)"
    within = pear[(pear.analysis == "within dataset")]
    assert within.set_index("group").loc["celeba"].r < -0.8
    pooled = within.set_index("group").loc["(pooled within)"]
    assert pooled.r < -0.2 and pooled.p < 0.05
    # Holm over the four datasets of each (analysis, method)
    from vaelens.stats import adjust_pvalues

    per_ds = within[within.group != "(pooled within)"]
    np.testing.assert_allclose(per_ds.p_holm, adjust_pvalues(per_ds.p.to_numpy(), "holm"))
    # without CelebA, the dataset of most leverage, the pooled correlation vanishes
    lev = pear[pear.analysis == "within dataset, without the dataset of most leverage"].iloc[0]
    assert lev.group == "without celeba" and lev.p > 0.05 and abs(lev.r) < abs(pooled.r) / 2
    exp = within_group_correlation(
        c[c.dataset != "celeba"], "ces.mean", "dci.disentanglement", "dataset", n_boot=N_BOOT
    ).iloc[-1]
    assert lev.r == pytest.approx(exp.r) and lev.lodo_max == pytest.approx(exp.r)
    assert lev.r_all == pytest.approx(pooled.r) and lev.lodo_min < -0.2  # the other omissions
    # architecture means: one point per (dataset, architecture)
    means = pear[pear.analysis == "architecture means"].set_index("group")
    assert means.loc["celeba"].n == 3 and means.loc["(pooled within)"].n == 12
    # the mixed model per dataset and pooled (random intercept per architecture)
    mixed = d[d.method == "mixedlm"].set_index("group")
    assert set(mixed.index) == {*study.datasets, "all (dataset fixed effects)"}
    assert (mixed.n_groups.loc["all (dataset fixed effects)"]) == 12
    if importlib.util.find_spec("statsmodels") is not None:
        allm = mixed.loc["all (dataset fixed effects)"]
        assert "not installed" not in allm.note
        if np.isfinite(allm.slope):
            assert allm.slope < 0
    shown = table.display
    assert {"95% bootstrap CI", "95% Fisher-z CI", "Holm p"} <= set(shown.columns)
    assert any("without celeba" in claim for claim in table.claims)


def test_architecture_tests_use_welch_anova(tmp_path: Path) -> None:
    study = load_study(
        make_fake_study(
            tmp_path, datasets=("synthetic",), seeds=(0, 1, 2), failed=(), no_dci=(),
            traversals=False,
        )
    )  # fmt: skip
    from vaelens.stats import welch_anova

    data = architecture_tests(study).data
    row = data[data.metric == "mean CES"].iloc[0]
    c = study.completed
    exp = welch_anova(*(c[c.architecture == a]["ces.mean"] for a in study.architectures))
    assert row.anova_F == pytest.approx(exp["statistic"]) and row.anova_p == pytest.approx(exp["p"])
    assert row.anova_df2 == pytest.approx(exp["df2"])


def test_vq_runs_stay_out_of_the_continuous_statistics(tmp_path: Path) -> None:
    from vaelens.report.data import load_study
    from vaelens.report.tables import architecture_tests, ces_dci_correlation

    study = load_study(make_fake_study(tmp_path, architectures=("vae", "beta_vae", "vq_vae"),
                                       datasets=("dsprites",), seeds=(0, 1, 2), failed=(),
                                       no_dci=()))  # fmt: skip
    assert set(study.continuous.architecture) == {"vae", "beta_vae"}
    assert "vq_vae" in set(study.completed.architecture)
    corr = ces_dci_correlation(study, n_boot=N_BOOT)
    per_run = corr.data[corr.data.analysis == "within dataset"]
    assert (per_run.n <= 6).all()  # 2 continuous architectures x 3 seeds, not 9 runs
    tests = architecture_tests(study)
    assert "vq_vae" not in " ".join(map(str, tests.data.to_numpy().ravel()))


def test_report_says_what_the_study_cannot_conclude(tmp_path: Path) -> None:
    from vaelens.report.data import load_study
    from vaelens.report.limits import limitations
    from vaelens.report.tables import architecture_tests, ces_dci_correlation

    path = make_fake_study(tmp_path, seeds=(0, 1))
    study = load_study(path)
    tests, corr = architecture_tests(study), ces_dci_correlation(study, n_boot=N_BOOT)
    found = " ".join(limitations(study, tests, corr))
    assert "seed's value instead of an interval" in found  # 2 seeds
    assert "2 dataset(s)" in found  # synthetic and dsprites only
    assert "controls were not run" in found
    assert "architecture means rests on at most 3 points" in found
    html = build_report(path, n_boot=N_BOOT).read_text()
    assert "What this study cannot conclude" in html
    assert html.index("What this study cannot conclude") < html.index("1. Architecture comparison")


def _vae_pair_study(tmp_path: Path) -> StudyData:
    """A fake study of VAE and beta-VAE on one dataset, 3 seeds each, every run completed."""
    return load_study(
        make_fake_study(
            tmp_path, architectures=("vae", "beta_vae"), datasets=("synthetic",),
            seeds=(0, 1, 2), failed=(), no_dci=(), traversals=False,
        )
    )  # fmt: skip


def test_interchange_metrics_are_tested_only_when_the_runs_have_them(tmp_path: Path) -> None:
    from vaelens.report.tables import architecture_comparison

    study = _vae_pair_study(tmp_path)
    label = "latents per factor (interchange)"
    assert label not in set(architecture_tests(study).data.metric)
    assert not any("interchange" in c for c in architecture_tests(study).claims)
    assert "interchange.mean_min_set_size" not in set(architecture_comparison(study).data.column)
    c = study.completed  # plant: the beta-VAE needs clearly fewer latents per factor
    planted = {"vae": [4.0, 4.4, 4.8], "beta_vae": [2.0, 2.2, 2.4]}
    for arch, vals in planted.items():
        rows = c.index[c.architecture == arch]
        c.loc[rows, "interchange.mean_min_set_size"] = vals
    tests = architecture_tests(study)
    row = tests.data[tests.data.metric == label].iloc[0]
    assert row.p_holm < 0.05 and row.n_a == row.n_b == 3
    assert any(f"VAE's {label} (4.4) is higher than β-VAE's (2.2)" in x for x in tests.claims)
    from vaelens.stats import adjust_pvalues  # and over all metrics of the dataset together

    expected = adjust_pvalues(tests.data.p.to_numpy(float), "holm")
    np.testing.assert_allclose(tests.data.p_holm_all.to_numpy(float), expected)
    assert tests.data.p_holm_all.min() >= tests.data.p_holm.min()
    tested = int(np.isfinite(tests.data.p).sum())
    assert any(f"adjusted over all {tested} together" in x for x in tests.claims)
    t1 = architecture_comparison(study).data
    cell = t1[(t1.column == "interchange.mean_min_set_size") & (t1.architecture == "beta_vae")]
    assert cell.iloc[0]["mean"] == pytest.approx(2.2) and cell.iloc[0].n == 3


def test_a_metric_every_run_agrees_on_is_reported_as_such(tmp_path: Path) -> None:
    study = _vae_pair_study(tmp_path)
    c = study.completed
    c["latent.collapsed_fraction"] = np.where(c.architecture == "vae", 0.0, 0.4)
    claims = [x for x in architecture_tests(study).claims if "collapsed latent fraction" in x]
    assert claims == [
        "synthetic, collapsed latent fraction: the runs of each architecture agree exactly "
        "(VAE 0, β-VAE 0.4; VAE n=3, β-VAE n=3), so there is no spread to test a difference "
        "against."
    ]
    c.loc[c.index[0], "latent.collapsed_fraction"] = 0.1  # one VAE run differs: a real test
    claims = [x for x in architecture_tests(study).claims if "collapsed latent fraction" in x]
    assert claims and "agree exactly" not in claims[0]


def test_sections_are_numbered_without_gaps(built: tuple[Path, Path]) -> None:
    _, html_path = built
    html = html_path.read_text()
    numbers = [int(n) for n in re.findall(r'<h2 id="section-(\d+)">\1\. ', html)]
    assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) >= 10
    assert len(re.findall(r"<h2[^>]*>\s*\d", html)) == len(numbers)  # none numbered by hand
