"""The command line: data commands, one-line errors, progress, a train -> analyze -> metrics run."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from rich.console import Console
from typer.testing import CliRunner

from report_fixtures import make_fake_study
from vaelens import cli
from vaelens.analysis import load_analysis
from vaelens.cli import app
from vaelens.report.html import REPORT_STAGES

runner = CliRunner()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from vaelens.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_data_list_shows_the_six_datasets() -> None:
    res = runner.invoke(app, ["data", "list"], terminal_width=200)
    assert res.exit_code == 0, res.output
    for name in ("synthetic", "dsprites", "shapes3d", "mpi3d", "smallnorb", "celeba"):
        assert name in res.output
    assert "orientation=40" in res.output and "posY=32" in res.output


@pytest.mark.parametrize("name", ["dsprites", "shapes3d", "synthetic"])
def test_data_render_writes_a_png_grid(tmp_path: Path, name: str) -> None:
    out = tmp_path / f"{name}.png"
    res = runner.invoke(app, ["data", "render", name, "-o", str(out), "--n", "16", "--nrow", "4"])
    assert res.exit_code == 0, res.output
    img = Image.open(out)
    assert img.format == "PNG" and img.size[0] > 4 * 64


def test_stage_progress_off_a_terminal_prints_one_line_a_stage(monkeypatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr(cli, "console", Console(file=out, force_terminal=False))
    with cli.StageProgress("build-cache") as progress:
        for done in (0, 1000, 2000):  # one stage told per chunk
            progress("render", done, 2100)
        progress("done", 2100, 2100)
    assert progress.bar is None
    assert out.getvalue().splitlines() == ["build-cache: render", "build-cache: done"]


def test_stage_progress_in_a_terminal_is_a_bar(monkeypatch) -> None:
    monkeypatch.setattr(cli, "console", Console(file=io.StringIO(), force_terminal=True))
    with cli.StageProgress("report") as progress:
        progress("study", 0, 7)
        progress("html", 6, 7)
        task = progress.bar.tasks[0]
        assert (task.completed, task.total, task.fields["stage"]) == (6, 7, "html")


def test_data_render_off_a_terminal_prints_its_stages(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(cli, "console", Console(width=400))  # long paths on one line
    out = tmp_path / "s.png"
    res = runner.invoke(app, ["data", "render", "synthetic", "-o", str(out), "--n", "4"])
    assert res.exit_code == 0, res.output
    assert res.output.splitlines() == [
        "render: synthetic",
        "render: done",
        f"wrote {out} (4 samples of synthetic, source procedural)",
    ]


def test_report_off_a_terminal_prints_one_line_a_stage(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(cli, "console", Console(width=400))
    study = make_fake_study(
        tmp_path, datasets=("dsprites",), seeds=(0,), failed=(), no_dci=(), traversals=False
    )
    res = runner.invoke(app, ["report", str(study), "--n-boot", "20"])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines == [*(f"report: {s}" for s in REPORT_STAGES), "report: done", lines[-1]]
    assert lines[-1] == f"wrote {study / 'report' / 'report.html'}"


def test_errors_are_one_line_with_exit_code_2(tmp_path: Path) -> None:
    res = _cli("data", "info", "nosuch")
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0
    assert "unknown name 'nosuch'" in res.stderr and "Traceback" not in res.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text('model = "vae"\ndataset = "synthetic"\nsteps = 2\nbogus = 1\n')
    res = _cli("train", "--config", str(bad))
    assert res.returncode == 2 and "bogus" in res.stderr and "Traceback" not in res.stderr


def test_train_analyze_metrics_on_a_tiny_run(tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = [
        "train",
        "--model",
        "beta_vae",
        "--dataset",
        "synthetic",
        "--steps",
        "4",
        "--out",
        str(run),
        "-p",
        "width=0.125",
        "-p",
        "beta=2",
        "--batch-size",
        "8",
        "--n-train",
        "64",
        "--no-progress",
    ]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["model_params"]["beta"] == 2 and cfg["model_params"]["width"] == 0.125
    for bad, what in (
        (["--n-samples", "1"], "n_samples"),
        (["-s", "n_bot=20"], "unknown setting 'n_bot'"),
        (["-s", "n_boot"], "expected KEY=VALUE"),
    ):
        proc = _cli("analyze", str(run), *bad)
        assert proc.returncode == 2 and what in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and not proc.stdout, proc.stderr
        assert not (run / "analysis.json").exists()
    args = ["analyze", str(run), "--n-samples", "8", "--no-baseline", "-s", "n_boot=20"]
    res = runner.invoke(app, [*args, "-s", "latent_values=[-2, 0, 2]"])
    assert res.exit_code == 0, res.output
    analysis = load_analysis(run / "analysis.json")
    assert len(analysis.trained.latent.ces) == 10 and analysis.baseline is None
    assert analysis.meta.settings.n_boot == 20
    assert analysis.meta.settings.latent_values == (-2.0, 0.0, 2.0)
    assert "interchange shares" in res.output and "minimal" in res.output
    assert (run / "figures" / "traversals.png").is_file()
    res = runner.invoke(app, ["metrics", str(run), "--metrics", "mig,sap"])
    assert res.exit_code == 0, res.output
    scores = json.loads((run / "disentanglement.json").read_text())
    assert set(scores) == {"mig", "sap"} and 0 <= scores["mig"]["mig"] <= 1
