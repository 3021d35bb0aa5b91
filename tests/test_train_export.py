"""Exported runs: weights without optimiser state, read like a run, never trained further."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from vaelens.cli import app
from vaelens.errors import CheckpointError, ConfigError
from vaelens.models import build_model
from vaelens.train import Run, export_run, load_checkpoint, train, trainer

TINY = {
    "model": "vae",
    "dataset": "synthetic",
    "steps": 6,
    "batch_size": 8,
    "n_train": 64,
    "checkpoint_every": 3,
    "log_every": 2,
    "model_params": {"width": 0.125},
}


def _trained(tmp_path: Path, **changes: object) -> Path:
    out = tmp_path / "run"
    train({**TINY, "out": str(out), **changes}, progress=False)
    return out


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_an_exported_run_keeps_the_weights_and_drops_the_optimiser(tmp_path: Path) -> None:
    src = _trained(tmp_path)
    dest = export_run(src, tmp_path / "shipped" / "vae")
    ckpts = Run.open(dest).checkpoints
    assert [p.name for p in ckpts] == ["step_000000006.json"]  # the finished one only
    ckpt = load_checkpoint(ckpts[0])
    assert ckpt.meta["optimizers"] == {} and ckpt.step == 6
    assert not any(k.startswith("optim.") for k in ckpt.tensors)
    full = load_checkpoint(Run.open(src).latest_checkpoint)
    assert ckpt.meta["exported"]["from_tensors_sha256"] == full.meta["tensors_sha256"]
    assert ckpt.meta["config"]["out"] == str(dest)
    assert ckpts[0].with_suffix(".safetensors").stat().st_size < 0.5 * (
        Run.open(src).latest_checkpoint.with_suffix(".safetensors").stat().st_size
    )
    assert _same_weights(Run.open(dest).model(), Run.open(src).model())
    assert (dest / "metrics.jsonl").read_text() == (src / "metrics.jsonl").read_text()
    assert json.loads((dest / "config.json").read_text())["out"] == str(dest)
    assert Run.open(dest).status == "completed"
    assert dest.stat().st_mode & 0o055  # not mkdtemp's 0700: others may read a shared export
    assert [p.name for p in dest.parent.iterdir()] == ["vae"]  # no temporary folder left


def test_train_returns_at_once_on_an_export(tmp_path: Path) -> None:
    dest = export_run(_trained(tmp_path), tmp_path / "exported")
    tensors = Run.open(dest).latest_checkpoint.with_suffix(".safetensors")
    before = tensors.read_bytes()
    again = train({**TINY, "out": str(dest)}, progress=False)
    assert (again.status, again.step, again.total_steps) == ("completed", 6, 6)
    assert tensors.read_bytes() == before and len(Run.open(dest).checkpoints) == 1
    assert _same_weights(again.run.model(), Run.open(dest).model())


def test_a_finished_full_run_is_not_retrained(tmp_path: Path, monkeypatch) -> None:
    src = _trained(tmp_path)
    files = {p: p.read_bytes() for p in src.rglob("*") if p.is_file() and p.name != "status.json"}

    def no_building(*args: object, **kwargs: object) -> None:
        raise AssertionError("a finished run built its training set")

    monkeypatch.setattr(trainer, "build_training_set", no_building)
    res = train({**TINY, "out": str(src)}, progress=False)
    assert res.status == "completed" and res.resumed_from == 6 and res.metrics["step"] == 6
    shorter = train({**TINY, "out": str(src), "steps": 3}, progress=False)  # trained longer
    assert (shorter.step, shorter.total_steps) == (6, 6)
    given = build_model("vae", width=0.125, image_size=64).train()
    again = train({**TINY, "out": str(src)}, progress=False, model=given)
    assert again.run.model() is given and not given.training
    assert _same_weights(given, Run.open(src).model())
    assert files == {p: p.read_bytes() for p in files}  # config.json says 6 steps still


def test_epoch_and_plateau_runs_export_and_return_at_once(tmp_path: Path) -> None:
    for name, changes in {
        "epochs": {"steps": None, "epochs": 1},  # 64 images at batch 8: 8 steps
        "plateau": {"steps": 60, "plateau_patience": 2, "plateau_rtol": 0.9},
    }.items():
        out = tmp_path / name
        first = train({**TINY, **changes, "out": str(out)}, progress=False)
        assert first.status == "completed" and first.step in (8, 4), (name, first.step)
        dest = export_run(out, tmp_path / f"{name}-export")
        again = train({**TINY, **changes, "out": str(dest)}, progress=False)
        assert (again.status, again.step) == ("completed", first.step), name
        assert again.stopped_by == first.stopped_by


def test_a_refused_extension_leaves_the_export_as_it_was(tmp_path: Path) -> None:
    dest = export_run(_trained(tmp_path), tmp_path / "exported")
    before = {p: p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    with pytest.raises(CheckpointError, match=r"holds weights only.*past step 6"):
        train({**TINY, "out": str(dest), "steps": 9}, progress=False)
    assert {p: p.read_bytes() for p in dest.rglob("*") if p.is_file()} == before


def test_export_refuses_an_unfinished_run_and_an_existing_destination(tmp_path: Path) -> None:
    src = _trained(tmp_path)
    (tmp_path / "taken").mkdir()
    with pytest.raises(ConfigError, match="taken: already exists"):
        export_run(src, tmp_path / "taken")
    for p in (src / "checkpoints").glob("step_000000006.*"):
        p.unlink()  # the newest checkpoint is now step 3 of 6
    with pytest.raises(ConfigError, match=r"training is not finished \(step 3 of 6\)"):
        export_run(src, tmp_path / "new")
    assert not (tmp_path / "new").exists()
    with pytest.raises(CheckpointError, match=r"config\.json"):
        export_run(tmp_path / "taken", tmp_path / "new")


def test_export_command(tmp_path: Path) -> None:
    src = _trained(tmp_path)
    res = CliRunner().invoke(app, ["export", str(src), str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert "wrote" in res.output and "MB" in res.output
    assert Run.open(tmp_path / "out").status == "completed"
