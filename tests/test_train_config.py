"""TrainConfig: TOML/YAML loading, presets and validation errors that name the culprit."""

from __future__ import annotations

from pathlib import Path

import pytest

from vaelens.errors import ConfigError
from vaelens.train import PRESETS, TrainConfig, config_from_dict, load_config, preset_config


def test_toml_and_yaml_give_the_same_config(tmp_path: Path) -> None:
    toml = tmp_path / "run.toml"
    toml.write_text(
        'model = "factor_vae"\ndataset = "dsprites"\ndataset_source = "procedural"\n'
        'steps = 500\nseed = 4\nbatch_size = 32\nschedule = "cosine"\nn_train = 4096\n'
        'out = "runs/x"\n[model_params]\ngamma = 10.0\nwidth = 0.5\n'
    )
    yaml = tmp_path / "run.yaml"
    yaml.write_text(
        "model: factor_vae\ndataset: dsprites\ndataset_source: procedural\nsteps: 500\nseed: 4\n"
        "batch_size: 32\nschedule: cosine\nn_train: 4096\nout: runs/x\n"
        "model_params:\n  gamma: 10.0\n  width: 0.5\n"
    )
    a, b = load_config(toml), load_config(yaml)
    assert a == b
    assert a.model_params == {"gamma": 10.0, "width": 0.5}
    assert a.out == Path("runs/x") and a.total_steps(4096) == 500
    # overrides (e.g. from the CLI) win over the file; None means "not given"
    c = load_config(toml, seed=9, steps=None)
    assert c.seed == 9 and c.steps == 500


@pytest.mark.parametrize("suffix", [".toml", ".yaml"])
def test_unknown_key_names_the_key_and_the_file(tmp_path: Path, suffix: str) -> None:
    p = tmp_path / f"bad{suffix}"
    p.write_text("learning_rate = 0.1\n" if suffix == ".toml" else "learning_rate: 0.1\n")
    with pytest.raises(ConfigError) as info:
        load_config(p)
    msg = str(info.value)
    assert "'learning_rate'" in msg and str(p) in msg and "lr" in msg


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('batch_size = "many"\n', "batch_size"),
        ("lr = -1.0\n", "lr"),
        ('schedule = "linear"\n', "schedule"),
        ('device = "tpu"\n', "device"),
        ("steps = 10\nepochs = 2\n", "steps or epochs"),
        ("adam_betas = [0.9, 1.0]\n", "adam_betas"),
        ("adam_betas = [0.9]\n", "adam_betas"),
    ],
)
def test_wrong_values_name_the_field_and_the_file(tmp_path: Path, text: str, field: str) -> None:
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(p)
    assert field in str(info.value) and str(p) in str(info.value)


def test_unparsable_missing_and_unsupported_files(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("steps = = 3\n")
    with pytest.raises(ConfigError, match=r"broken\.toml: cannot parse"):
        load_config(broken)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.yaml")
    ini = tmp_path / "run.ini"
    ini.write_text("[x]\n")
    with pytest.raises(ConfigError, match=r"expected a \.toml"):
        load_config(ini)
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(lst)


def test_roy2025_preset_and_its_per_variant_parameters(tmp_path: Path) -> None:
    cfg = preset_config("roy2025", model="factor_vae", dataset="synthetic")
    assert (cfg.lr, cfg.batch_size, cfg.epochs, cfg.weight_decay, cfg.schedule) == (
        1e-3,
        64,
        50,
        1e-5,
        "cosine",
    )
    assert cfg.model_params["gamma"] == 40.0 and cfg.model_params["disc_lr"] == 5e-5
    assert preset_config("roy2025", model="beta_vae").model_params["beta"] == 4.0
    # a file can start from the preset and override a field; steps replaces the epochs
    p = tmp_path / "p.yaml"
    p.write_text("preset: roy2025\nmodel: beta_vae\nsteps: 100\nmodel_params: {beta: 8.0}\n")
    cfg = load_config(p)
    assert cfg.steps == 100 and cfg.epochs is None and cfg.model_params["beta"] == 8.0
    assert cfg.total_steps(10_000) == 100
    assert preset_config("roy2025").total_steps(6400) == 50 * 100
    with pytest.raises(ConfigError, match="unknown preset 'nope'"):
        config_from_dict({"preset": "nope"})
    assert "roy2025" in PRESETS and "seeds" not in PRESETS
    # the old name of the preset is still accepted and gives the same config
    assert preset_config("seeds", model="factor_vae") == preset_config(
        "roy2025", model="factor_vae"
    )


def test_config_round_trips_through_json() -> None:
    cfg = TrainConfig(
        model="vae", steps=5, amp=True, channels_last=False, model_params={"width": 0.25}
    )
    assert cfg.amp == "bf16"
    again = config_from_dict(cfg.to_json_dict())
    assert again == cfg
    with pytest.raises(ConfigError, match="n_train"):
        config_from_dict({"n_train": 10, "batch_size": 64})


def test_dlib_preset_is_disentanglement_libs_budget() -> None:
    cfg = preset_config("dlib", model="factor_vae")
    assert (cfg.steps, cfg.batch_size, cfg.lr, cfg.schedule) == (300_000, 64, 1e-4, "constant")
    assert cfg.model_params["backbone"] == "dlib"
    assert preset_config("dlib", epochs=2).steps is None  # epochs replace the preset's steps


def test_adam_betas_default_bound_and_json(tmp_path: Path) -> None:
    """``adam_betas`` defaults to Adam's (0.9, 0.999) and round-trips through JSON; a run
    written before the field existed reads as the default, so it still resumes (train()'s
    use of it: tests/test_train_resume.py)."""
    from vaelens.train.trainer import _check_resume_config

    assert TrainConfig().adam_betas == (0.9, 0.999)
    cfg = config_from_dict({"adam_betas": [0.5, 0.99], "steps": 10})
    assert cfg.adam_betas == (0.5, 0.99)
    assert TrainConfig.model_validate(cfg.to_json_dict()) == cfg  # JSON lists come back
    old = {k: v for k, v in TrainConfig(steps=10).to_json_dict().items() if k != "adam_betas"}
    _check_resume_config(tmp_path, old, TrainConfig(steps=10))  # no error: the default
    with pytest.raises(ConfigError, match="adam_betas"):
        _check_resume_config(tmp_path, old, cfg)
