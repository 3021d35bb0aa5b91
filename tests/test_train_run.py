"""vaelens.train.Run: opening and creating run directories, cached model and dataset, artifacts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import vaelens.data
import vaelens.train.run
import vaelens.train.trainer
from test_train_fixtures import MODEL, TRUST, TinyVAE, tiny_dataset
from test_train_fixtures import trusted_load_run as load_run
from test_train_fixtures import trusted_train as train
from vaelens.errors import CheckpointError, ConfigError, TrainingDivergedError
from vaelens.train import Run, TrainConfig


def _config(out: Path, **kw) -> TrainConfig:
    base = {
        "model": MODEL,
        "dataset": "tiny",
        "steps": 12,
        "batch_size": 8,
        "seed": 1,
        "checkpoint_every": 5,
        "log_every": 4,
        "device": "cpu",
        "num_threads": 1,
        "out": out,
    }
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Count load_dataset calls (serving the tiny dataset) and model builds."""
    calls = {"load_dataset": 0, "build_model": 0}

    def load_dataset(name, **kwargs):
        assert name == "tiny" and kwargs["source"] == "auto"
        calls["load_dataset"] += 1
        return tiny_dataset()

    real_build = vaelens.train.run.build_model_from_config

    def build(*args, **kwargs):
        calls["build_model"] += 1
        return real_build(*args, **kwargs)

    monkeypatch.setattr(vaelens.data, "load_dataset", load_dataset)
    monkeypatch.setattr(vaelens.train.run, "build_model_from_config", build)
    monkeypatch.setattr(vaelens.train.trainer, "build_model_from_config", build)
    return calls


def _outputs(model: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.from_numpy(tiny_dataset().images(np.array([[0, 1, 2], [3, 0, 1], [2, 2, 2]])))
    with torch.no_grad():
        post = model.encode(x)
        return post.mean, model.decode(post.mean)


def test_open_gives_the_model_train_just_trained(tmp_path: Path) -> None:
    cfg = _config(tmp_path / "run")
    res = train(cfg, progress=False, dataset=tiny_dataset())
    trained = res.run.model()
    assert isinstance(trained, TinyVAE) and not trained.training
    assert res.run.model() is trained
    run = Run.open(tmp_path / "run", trust_code=TRUST)
    assert run.config == cfg and run.status == "completed"
    assert run.latest_checkpoint == res.checkpoint == run.checkpoints[-1]
    assert [p.name for p in run.checkpoints] == ["step_000000010.json", "step_000000012.json"]
    opened = run.model()
    assert opened is not trained and run.model() is opened and not opened.training
    for a, b in zip(_outputs(trained), _outputs(opened), strict=True):
        assert torch.equal(a, b)
    # load_run goes through the same code
    model, config = load_run(tmp_path / "run")
    assert config == cfg and torch.equal(_outputs(model)[0], _outputs(opened)[0])


def test_training_fills_the_caches_one_load_one_build(
    tmp_path: Path, counted: dict[str, int]
) -> None:
    run = Run.create(_config(tmp_path / "run"))
    res = train(run, progress=False)
    assert res.run is run and res.run_dir == run.path
    assert counted == {"load_dataset": 1, "build_model": 1}
    ds = run.dataset()
    assert run.dataset() is ds and ds.name == "tiny"
    model = run.model()
    assert run.model() is model and not model.training
    assert counted == {"load_dataset": 1, "build_model": 1}
    # a dataset already in the Run's cache is what training uses
    again = train(run, progress=False)
    assert again.resumed_from == 12 and counted["load_dataset"] == 1


def test_open_loads_the_dataset_and_builds_the_model_once(
    tmp_path: Path, counted: dict[str, int]
) -> None:
    train(_config(tmp_path / "run"), progress=False, dataset=tiny_dataset())
    counted.update(load_dataset=0, build_model=0)
    run = Run.open(tmp_path / "run", trust_code=TRUST)
    assert run.dataset() is run.dataset()
    assert run.model() is run.model()
    assert counted == {"load_dataset": 1, "build_model": 1}


def test_create_writes_nothing_and_reports_a_new_run(tmp_path: Path) -> None:
    run = Run.create({"model": MODEL, "dataset": "tiny", "steps": 3, "out": str(tmp_path / "r")})
    assert run.path == tmp_path / "r" and not run.path.exists()
    assert run.status == "new" and run.checkpoints == [] and run.latest_checkpoint is None
    with pytest.raises(CheckpointError, match="no checkpoint"):
        run.model()
    with pytest.raises(ConfigError, match="expected a TrainConfig"):
        Run.create(42)  # type: ignore[arg-type]


def test_a_diverged_run_reports_failed(tmp_path: Path) -> None:
    cfg = _config(tmp_path / "nan", model_params={"nan_at": 7})
    with pytest.raises(TrainingDivergedError):
        train(cfg, progress=False, dataset=tiny_dataset())
    run = Run.open(tmp_path / "nan", trust_code=TRUST)
    assert run.status == "failed" and run.status_record["error_type"] == "TrainingDivergedError"
    assert [p.name for p in run.checkpoints] == ["step_000000005.json"]


def test_artifact_names_must_be_plain_file_names(tmp_path: Path) -> None:
    run = Run.create(_config(tmp_path / "run"))
    assert run.artifact("analysis.json") == tmp_path / "run" / "analysis.json"
    assert run.artifact("figures") == tmp_path / "run" / "figures"
    for bad in ["../analysis.json", "figures/x.png", "..", ".", "", "a\\b", "/etc/passwd"]:
        with pytest.raises(ConfigError, match="plain file name") as info:
            run.artifact(bad)
        assert repr(bad) in str(info.value)


def test_a_directory_that_is_not_a_run_is_one_line_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "absent"
    with pytest.raises(CheckpointError, match="not found") as info:
        Run.open(missing)
    assert str(missing) in str(info.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError, match=r"no config\.json") as info:
        Run.open(empty)
    assert str(empty) in str(info.value) and "\n" not in str(info.value)
    (empty / "config.json").write_text("{not json\n")
    with pytest.raises(CheckpointError, match="not valid JSON") as info:
        Run.open(empty)
    assert "\n" not in str(info.value)
    (empty / "config.json").write_text(json.dumps({"model": "vae", "lrr": 1}))
    with pytest.raises(ConfigError, match="unknown key 'lrr'") as info:
        Run.open(empty)
    assert str(empty / "config.json") in str(info.value)
