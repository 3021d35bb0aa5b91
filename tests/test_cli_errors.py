"""Every CLI error ends in one line on stderr, with exit 2 for bad input (no traceback)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from vaelens import cli


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from vaelens.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )


def _one_error_line(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr and not proc.stdout.strip(), proc.stdout
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["train", "--steps", "0"], ["--steps", "greater than or equal to 1"]),
        (["train", "--steps", "-3"], ["--steps"]),
        (["train", "--seed", "x"], ["--seed", "integer"]),
        (["train", "--batch-size", "0"], ["--batch-size"]),
        (["train", "--lr", "nan"], ["--lr"]),
        (["train", "-p", "beta"], ["--param", "KEY=VALUE"]),
        (["train", "--config", "run.toml"], ["run.toml", "not found"]),
        (["analyze", "RUN", "--n-samples", "1"], ["n_samples"]),
        (["analyze", "RUN", "--set", "n_boot"], ["--set", "KEY=VALUE"]),
        (["nosuchcommand"], ["No such command"]),
        (["train", "--no-such-option"], ["--no-such-option"]),
        (["demo", "--preset", "nope"], ["nope", "demo-long"]),
        (["demo", "--trained", "nope"], ["nope", "not a directory"]),
        (["study", "--preset", "demo", "--trained", "nope"], ["nope", "not a directory"]),
        (["export", "RUN", "DEST"], ["run directory RUN", "not found"]),
    ],
)
def test_usage_errors_are_one_line(tmp_path: Path, args: list[str], needles: list[str]) -> None:
    _one_error_line(_cli(*args, cwd=tmp_path), *needles)
    assert not any(tmp_path.iterdir()), "a failed command left files behind"


def test_paths_that_cannot_be_written_are_one_line(tmp_path: Path) -> None:
    afile = tmp_path / "a-file"
    afile.write_text("x")
    _one_error_line(_cli("data", "render", "synthetic", "-o", str(tmp_path), "--n", "4"),
                    str(tmp_path))  # fmt: skip
    _one_error_line(_cli("report", str(afile)), "a-file")


def test_config_and_preset_together_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "study.toml").write_text(
        'name = "s"\narchitectures = ["vae"]\ndatasets = ["synthetic"]\n'
    )
    _one_error_line(_cli("study", "--config", "study.toml", "--preset", "quick", cwd=tmp_path),
                    "--config")  # fmt: skip


def test_report_of_an_empty_directory_creates_nothing(tmp_path: Path) -> None:
    _one_error_line(_cli("report", str(tmp_path)), "study.sqlite")
    assert not (tmp_path / "report").exists()


def test_data_verify_failure_is_an_error_line(tmp_path: Path) -> None:
    proc = _cli("data", "verify", "dsprites", "--root", str(tmp_path))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "checksum" in proc.stderr


def test_internal_errors_say_so_and_name_the_log(monkeypatch, capsys) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise KeyError("boom")

    monkeypatch.setattr(cli, "app", broken)
    with pytest.raises(SystemExit) as exc:
        cli.main(["data", "list"])
    assert exc.value.code == 1
    line = capsys.readouterr().err.strip()
    assert line.count("\n") == 0 and "internal error" in line and "KeyError" in line
    log = Path(line.rsplit(" ", 1)[-1])
    assert log.is_file() and "KeyError: 'boom'" in log.read_text()
    log.unlink()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--dataset", "nosuch"], "unknown name 'nosuch'"),
        (["--model", "nosuch"], "unknown variant 'nosuch'"),
    ],
)
def test_train_that_fails_validation_creates_no_run_directory(
    tmp_path: Path, args: list[str], needle: str
) -> None:
    _one_error_line(_cli("train", "--steps", "1", "--out", "run", *args, cwd=tmp_path), needle)
    assert not (tmp_path / "run").exists()


def test_train_out_pointing_at_a_file(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    _one_error_line(_cli("train", "--steps", "1", "--out", "afile", cwd=tmp_path), "is a file")
    assert (tmp_path / "afile").read_text() == "x"
