"""One config reader and one validation-error formatter for `vaelens train` and `vaelens study`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from vaelens.errors import ConfigError
from vaelens.io import format_validation_error, read_config_file
from vaelens.study.config import load_study_config, study_config_from_dict
from vaelens.train import load_config

CLI = "from vaelens.cli import main; main()"
STUDY = 'name = "s"\narchitectures = ["vae"]\ndatasets = ["synthetic"]\n'


def test_toml_yaml_and_json_read_the_same(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text('x = 1\n[sub]\ny = "é"\n', encoding="utf-8")
    (tmp_path / "a.yaml").write_text("x: 1\nsub:\n  y: é\n", encoding="utf-8")
    (tmp_path / "a.json").write_text('{"x": 1, "sub": {"y": "é"}}', encoding="utf-8")
    want = {"x": 1, "sub": {"y": "é"}}
    for suffix in ("toml", "yaml", "json"):
        assert read_config_file(tmp_path / f"a.{suffix}") == want
    (tmp_path / "empty.yml").write_text("")
    assert read_config_file(tmp_path / "empty.yml") == {}


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("absent.toml", None, "config file not found"),
        ("run.ini", b"[x]\n", r"expected a \.toml, \.yaml/\.yml or \.json file, got '\.ini'"),
        ("latin.toml", b'x = "caf\xe9"\n', r"not UTF-8 text \(byte 0xe9 at offset 8\)"),
        ("bad.toml", b"x = = 1\n", r"cannot parse: TOML error: .*line 1, column 5"),
        ("bad.json", b'{"x": }', r"cannot parse: JSON error: .*line 1 column 7"),
        ("bad.yaml", b"a: 1\nb: [1, 2\nc: 3\n", r"cannot parse: YAML error at line 3, column 2"),
        ("list.yaml", b"- 1\n- 2\n", "expected a mapping of settings at the top level, got list"),
        ("scalar.json", b"3", "expected a mapping of settings at the top level, got int"),
    ],
)
def test_bad_files_are_one_line_naming_the_file(
    tmp_path: Path, name: str, content: bytes | None, expected: str
) -> None:
    p = tmp_path / name
    if content is not None:
        p.write_bytes(content)
    with pytest.raises(ConfigError, match=expected) as info:
        read_config_file(p)
    msg = str(info.value)
    assert msg.startswith(f"{p}: ") and "\n" not in msg


class _Inner(BaseModel):
    model_config = ConfigDict(extra="forbid")
    depth: int = 1
    width: float = 1.0


class _Outer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = "x"
    inner: _Inner = _Inner()


def test_validation_errors_give_dotted_paths_and_known_keys() -> None:
    with pytest.raises(ValidationError) as info:
        _Outer.model_validate({"inner": {"dpth": 2, "width": "wide"}})
    msg = format_validation_error(info.value, "f.toml", _Outer)
    assert msg.startswith("f.toml: ") and "\n" not in msg
    assert "unknown key 'inner.dpth'" in msg and msg.endswith("known keys: depth, width")
    assert "field 'inner.width': Input should be a valid number" in msg and "(got 'wide')" in msg
    with pytest.raises(ValidationError) as info:
        _Outer.model_validate({"nme": 1, "inner": {"dpth": 2}})
    msg = format_validation_error(info.value, "f.toml", _Outer, prefix="sec", hide=("name",))
    assert "unknown key 'sec.nme'" in msg and "unknown key 'sec.inner.dpth'" in msg
    assert "known keys of 'sec': inner" in msg and "known keys of 'sec.inner': depth, width" in msg


def test_train_and_study_report_the_same_way(tmp_path: Path) -> None:
    train_file = tmp_path / "run.toml"
    train_file.write_text("lrr = 0.1\n")
    study_file = tmp_path / "study.toml"
    study_file.write_text(STUDY + "[train]\nlrr = 0.1\n")
    with pytest.raises(ConfigError) as a:
        load_config(train_file)
    with pytest.raises(ConfigError) as b:
        load_study_config(study_file)
    assert str(a.value).startswith(f"{train_file}: unknown key 'lrr'; known keys: model, ")
    assert str(b.value).startswith(f"{study_file}: unknown key 'train.lrr'; known keys: steps, ")
    # the grid's fields are not offered for [train]; the preset is
    known = str(b.value).split("known keys: ")[1].split(", ")
    assert "lr" in known and "preset" in known
    assert not {"model", "dataset", "seed", "out"} & set(known)


@pytest.mark.parametrize(
    ("train", "expected"),
    [
        ({"batch_size": "many"}, r"field 'train\.batch_size': .* \(got 'many'\)"),
        ({"steps": 10, "epochs": 2}, "train: give either steps or epochs, not both"),
        ({"n_train": 4, "batch_size": 8}, r"n_train \(4\) must be at least batch_size \(8\)"),
        ({"preset": "nope"}, "train: unknown preset 'nope'"),
        ({"sleep": 0.5}, "unknown key 'train.sleep'"),
    ],
)
def test_study_train_section_is_validated_at_load(train: dict, expected: str) -> None:
    data = {"name": "s", "architectures": ["vae"], "datasets": ["synthetic"], "train": train}
    with pytest.raises(ConfigError, match=expected):
        study_config_from_dict(data, "s.yaml")


def test_study_cli_stops_before_any_run_on_a_bad_train_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(STUDY + "[train]\nsteps = 2\nlrr = 0.1\n")
    out = tmp_path / "study"
    res = subprocess.run(
        [sys.executable, "-c", CLI, "study", "--config", str(bad), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 2, res.stdout + res.stderr
    assert res.stderr.strip().count("\n") == 0 and "Traceback" not in res.stderr
    assert "bad.toml: unknown key 'train.lrr'" in res.stderr
    assert not out.exists() and res.stdout == ""


def test_run_study_checks_a_train_section_built_in_code(tmp_path: Path) -> None:
    from vaelens.study.config import StudyConfig
    from vaelens.study.runner import run_study

    cfg = StudyConfig(name="s", architectures=["vae"], datasets=["synthetic"], train={"lrr": 1})
    with pytest.raises(ConfigError, match=r"study s: unknown key 'train\.lrr'"):
        run_study(cfg, tmp_path / "study", job="_study_jobs:fake_job", workers=1)
    assert not (tmp_path / "study").exists()
