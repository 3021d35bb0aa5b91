"""Studies analysing finished training (run_study(trained=...)) instead of training again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from _study_jobs import TINY_STUDY
from vaelens.errors import CheckpointError, ConfigError
from vaelens.report import build_report
from vaelens.study.config import study_config_from_dict
from vaelens.study.runner import run_study
from vaelens.train import Run, export_run, load_checkpoint

IDS = ("beta_vae-synthetic-s0", "vae-synthetic-s0")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A finished tiny study and a folder with its two runs exported."""
    root = tmp_path_factory.mktemp("adopt")
    run_study(study_config_from_dict(TINY_STUDY), root / "first", workers=1)
    for rid in IDS:
        export_run(root / "first" / "runs" / rid, root / "shipped" / rid)
    return root / "first", root / "shipped"


def _metrics(study: Path, rid: str) -> dict:
    return json.loads((study / "runs" / rid / "result.json").read_text())["metrics"]


def test_a_study_analyses_exported_runs_without_training(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    first, shipped = trained
    events: list[tuple[str, str, dict]] = []
    cfg = study_config_from_dict(TINY_STUDY)
    counts = run_study(
        cfg, tmp_path, workers=1, trained=shipped, on_event=lambda *e: events.append(e)
    )
    assert counts["completed"] == 2
    assert [info.get("adopted") for kind, _, info in events if kind == "plan"] == [2]
    adopted = {rid: info["from"] for kind, rid, info in events if kind == "adopt"}
    assert adopted == {rid: str(shipped / rid) for rid in IDS}
    for rid in IDS:
        ckpt = load_checkpoint(Run.open(tmp_path / "runs" / rid).latest_checkpoint)
        assert ckpt.meta["optimizers"] == {} and ckpt.step == 6  # the export's, not retrained
        assert _metrics(tmp_path, rid) == _metrics(first, rid)  # same weights, same analysis
        record = json.loads((tmp_path / "runs" / rid / "adopted.json").read_text())
        assert record == {
            "from": str(shipped / rid),
            "step": 6,
            "tensors_sha256": ckpt.meta["tensors_sha256"],
        }
    html = build_report(tmp_path, n_boot=20).read_text()
    assert "Training of 2 of 2 runs was not done by this study" in html and str(shipped) in html


def test_runs_of_other_settings_are_trained(trained: tuple[Path, Path], tmp_path: Path) -> None:
    _, shipped = trained
    other = {**TINY_STUDY, "architectures": ["vae"], "train": {**TINY_STUDY["train"], "lr": 2e-3}}
    events: list[tuple[str, str, dict]] = []
    cfg = study_config_from_dict(other)
    run_study(cfg, tmp_path, workers=1, trained=shipped, on_event=lambda *e: events.append(e))
    assert not [e for e in events if e[0] == "adopt"]
    ckpt = load_checkpoint(Run.open(tmp_path / "runs" / "vae-synthetic-s0").latest_checkpoint)
    assert ckpt.meta["optimizers"]  # trained here


def test_a_bad_trained_folder_fails_before_the_study_exists(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    first, _ = trained
    cfg = study_config_from_dict(TINY_STUDY)
    with pytest.raises(ConfigError, match="nope: not a directory"):
        run_study(cfg, tmp_path / "a", workers=1, trained=tmp_path / "nope")
    unfinished = tmp_path / "unfinished"
    run = unfinished / "r"
    run.mkdir(parents=True)
    src = first / "runs" / IDS[1]
    (run / "config.json").write_text((src / "config.json").read_text())
    (run / "checkpoints").mkdir()
    for p in (src / "checkpoints").glob("step_000000003.*"):  # step 3 of 6
        (run / "checkpoints" / p.name).write_bytes(p.read_bytes())
    with pytest.raises(ConfigError, match=r"r: training is not finished \(step 3 of 6\)"):
        run_study(cfg, tmp_path / "b", workers=1, trained=unfinished)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_tampered_checkpoint_is_not_adopted(trained: tuple[Path, Path], tmp_path: Path) -> None:
    _, shipped = trained
    bad = tmp_path / "bad"
    export_run(shipped / IDS[1], bad / IDS[1])
    tensors = Run.open(bad / IDS[1]).latest_checkpoint.with_suffix(".safetensors")
    blob = bytearray(tensors.read_bytes())
    blob[-1] ^= 1
    tensors.write_bytes(bytes(blob))
    cfg = study_config_from_dict({**TINY_STUDY, "architectures": ["vae"]})
    with pytest.raises(CheckpointError, match="SHA-256"):
        run_study(cfg, tmp_path / "study", workers=1, trained=bad)
    assert not (tmp_path / "study" / "runs" / IDS[1] / "checkpoints").exists()


def test_two_runs_of_the_same_settings_are_refused(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    _, shipped = trained
    twice = tmp_path / "twice"
    for name in ("a", "b"):
        export_run(shipped / IDS[1], twice / name)
    cfg = study_config_from_dict({**TINY_STUDY, "architectures": ["vae"]})
    with pytest.raises(ConfigError, match="twice: a and b have the same training settings"):
        run_study(cfg, tmp_path / "study", workers=1, trained=twice)
