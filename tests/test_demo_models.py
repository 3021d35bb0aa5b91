"""The repository's demo models (models/demo-long): `make demo` adopts every run from them."""

from __future__ import annotations

from pathlib import Path

from vaelens.study.adopt import _match, find_trained
from vaelens.study.config import plan_runs
from vaelens.study.job import train_config
from vaelens.study.presets import preset
from vaelens.train import config_from_dict
from vaelens.train.export import finished_training

MODELS = Path(__file__).resolve().parents[1] / "models" / "demo-long"


def test_every_run_of_demo_long_has_its_trained_model_here(tmp_path: Path) -> None:
    trained = find_trained(MODELS)
    specs = plan_runs(preset("demo-long"))
    assert len(trained) == len(specs) == 6
    for spec in specs:
        config = config_from_dict(train_config(spec, tmp_path / spec.run_id))
        assert _match(config, trained) == MODELS / spec.run_id, spec.run_id


def test_the_demo_models_are_intact_weights_only_checkpoints() -> None:
    for run_dir in sorted(p for p in MODELS.iterdir() if p.is_dir()):
        ckpt, config = finished_training(run_dir)  # size and SHA-256 checked
        assert ckpt.meta["optimizers"] == {} and ckpt.step == config.steps == 60_000
        assert not any(k.startswith("optim.") for k in ckpt.tensors)
