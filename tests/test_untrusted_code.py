"""Run directories, configs and study files are untrusted: loading never runs code they name.

A ``"module:attr"`` model name found in a file is imported only when the caller trusts
it (``trust_code=[...]``, CLI ``--trust-code``); otherwise one line names the file, the
name and the module, and nothing is imported. The poisoned name used throughout is
``os:system`` with ``{"command": "touch <tmp>/pwned"}``, which the loader used to run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from torch import nn

from _custom_models import MLPVAE, NAME
from vaelens.errors import ArgumentError, ConfigError
from vaelens.study.config import RunSpec, study_config_from_dict
from vaelens.study.runner import run_study
from vaelens.train import Run, build_model_from_config, load_run, train

TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src"
SMALL = {"dataset": "synthetic", "steps": 2, "batch_size": 8, "n_train": 16, "device": "cpu"}
BAD = "os:system"
HINT = "trust_code=['os:system'] (CLI: --trust-code os:system)"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``vaelens ARGS`` in a fresh interpreter that can import the tests' helper modules."""
    path = os.pathsep.join([str(TESTS), str(SRC), os.environ.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-c", "from vaelens.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": path},
    )


def _one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny run of the registered ``vae`` (trained once per module; tests copy it)."""
    out = tmp_path_factory.mktemp("trained") / "run"
    cfg = {**SMALL, "model": "vae", "model_params": {"width": 0.125}, "out": str(out)}
    train(cfg, progress=False)
    return out


def _poisoned(trained_run: Path, tmp_path: Path, where: str) -> tuple[Path, Path, str]:
    """A copy of the run whose sidecars (or config.json) name ``os:system``; returns
    ``(run_dir, the file the command would create, the file the error must name)``."""
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    pwned = tmp_path / "pwned"
    hparams = {"command": f"touch {pwned}"}
    if where == "sidecar":
        sidecars = sorted((run / "checkpoints").glob("step_*.json"))
        for path in sidecars:
            meta = json.loads(path.read_text())
            meta["model"].update(name=BAD, hparams=hparams)
            path.write_text(json.dumps(meta))
        named = sidecars[-1]
    else:
        path = run / "config.json"
        cfg = json.loads(path.read_text())
        cfg.update(model=BAD, model_params=hparams)
        path.write_text(json.dumps(cfg))
        named = path
    return run, pwned, str(named)


def _assert_refused(message: str, named: str) -> None:
    line = _one_line(message)
    assert f"{named}: model 'os:system' is not a registered vaelens model" in line, line
    assert "import and run code from module 'os'" in line and HINT in line, line


@pytest.mark.parametrize("where", ["sidecar", "config"])
def test_python_loaders_refuse_code_named_by_a_run_directory(
    trained_run: Path, tmp_path: Path, where: str
) -> None:
    run, pwned, named = _poisoned(trained_run, tmp_path, where)
    for load in (
        lambda: Run.open(run).model(),
        lambda: Run.open(run).load_model(),
        lambda: load_run(run),
        lambda: Run.open(run, trust_code=["other.mod:Model"]).model(),
    ):
        with pytest.raises(ConfigError) as info:
            load()
        _assert_refused(str(info.value), named)
        assert not pwned.exists()


@pytest.mark.parametrize("where", ["sidecar", "config"])
def test_cli_metrics_and_analyze_refuse_code_named_by_a_run_directory(
    trained_run: Path, tmp_path: Path, where: str
) -> None:
    run, pwned, named = _poisoned(trained_run, tmp_path, where)
    for args in (
        ["metrics", str(run), "--metrics", "mig"],
        ["analyze", str(run), "--n-samples", "8", "--no-baseline"],
    ):
        proc = _cli(*args)
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr
        _assert_refused(proc.stderr.removeprefix("error: "), named)
        assert not pwned.exists()
    assert not (run / "disentanglement.json").exists() and not (run / "analysis.json").exists()


def test_even_trusted_names_must_be_a_model_class_not_any_callable(tmp_path: Path) -> None:
    pwned = tmp_path / "pwned"
    params = {"command": f"touch {pwned}"}
    with pytest.raises(ConfigError, match=r"expected an nn\.Module class"):
        build_model_from_config(BAD, params, None, trust_code=True)
    for name, what in (
        ("os:path.join", "is a module"),
        ("builtins:__import__", "no '__' attributes"),
        ("vaelens.models:registry.__builtins__", "no '__' attributes"),
        ("os system:x", "dotted identifiers"),
    ):
        with pytest.raises(ConfigError, match=re.escape(what)):
            build_model_from_config(name, {}, None, trust_code=True)
    assert not pwned.exists()


def test_trust_code_must_be_a_list_of_names_or_true() -> None:
    with pytest.raises(ArgumentError, match=r"write \['_custom_models:MLPVAE'\]"):
        Run.open(".", trust_code=NAME)  # a bare string is not a list of names
    with pytest.raises(ArgumentError, match="expected 'module:attr' names"):
        load_run(".", trust_code=["MLPVAE"])


def test_a_trusted_custom_class_trains_and_loads(tmp_path: Path) -> None:
    out = tmp_path / "run"
    cfg = {**SMALL, "model": NAME, "out": str(out)}
    with pytest.raises(ConfigError) as info:
        train(cfg, progress=False)
    line = _one_line(str(info.value))
    assert f"model '{NAME}' is not a registered vaelens model" in line
    assert "module '_custom_models'" in line and f"--trust-code {NAME}" in line
    assert not out.exists()  # refused before the run directory is created
    res = train(cfg, progress=False, trust_code=[NAME])
    assert res.status == "completed" and isinstance(res.run.model(), MLPVAE)
    assert isinstance(Run.open(out, trust_code=[NAME]).model(), MLPVAE)
    assert isinstance(Run.open(out, trust_code=True).model(), MLPVAE)
    model, config = load_run(out, trust_code=[NAME])
    assert isinstance(model, MLPVAE) and config.model == NAME
    with pytest.raises(ConfigError) as info:
        Run.open(out).model()
    assert f"{out / 'config.json'}: model '{NAME}' is not a registered" in str(info.value)


def test_cli_trusts_a_model_typed_on_the_command_line_not_one_from_a_file(
    tmp_path: Path,
) -> None:
    out = tmp_path / "run"
    small = ["--dataset", "synthetic", "--steps", "2", "--batch-size", "8", "--n-train", "16"]
    proc = _cli("train", "--model", NAME, *small, "--out", str(out), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "config.json").read_text())["model"] == NAME
    # the run directory names the class now: loading it needs --trust-code
    proc = _cli("metrics", str(out), "--metrics", "mig")
    assert proc.returncode == 2 and f"--trust-code {NAME}" in _one_line(proc.stderr)
    proc = _cli("metrics", str(out), "--metrics", "mig", "--trust-code", NAME)
    assert proc.returncode == 0, proc.stderr
    assert (out / "disentanglement.json").is_file()

    cfg_file = tmp_path / "train.toml"
    cfg_file.write_text(
        f'model = "{NAME}"\ndataset = "synthetic"\nsteps = 2\nbatch_size = 8\nn_train = 16\n'
        f'out = "{tmp_path / "from_file"}"\n'
    )
    proc = _cli("train", "--config", str(cfg_file), "--no-progress")
    assert proc.returncode == 2, proc.stderr
    line = _one_line(proc.stderr)
    assert f"{cfg_file}: model '{NAME}' is not a registered vaelens model" in line, line
    assert not (tmp_path / "from_file").exists()
    proc = _cli("train", "--config", str(cfg_file), "--no-progress", "--trust-code", NAME)
    assert proc.returncode == 0, proc.stderr
    proc = _cli("train", "--model", "vae", *small, "--out", str(out), "--trust-code", "nocolon")
    assert proc.returncode == 2 and "--trust-code" in _one_line(proc.stderr)


STUDY = {
    "name": "untrusted",
    "architectures": ["vae", BAD],
    "datasets": ["synthetic"],
    "train": {"steps": 2, "batch_size": 8, "n_train": 16},
    "model_params": {BAD: {"command": "touch pwned"}},
}


def test_a_study_naming_code_fails_at_start_and_creates_nothing(tmp_path: Path) -> None:
    cfg = study_config_from_dict(STUDY)
    study_dir = tmp_path / "study"
    with pytest.raises(ConfigError) as info:
        run_study(cfg, study_dir, workers=1)
    line = _one_line(str(info.value))
    assert "study untrusted: architectures: model 'os:system' is not a registered" in line
    assert HINT in line
    assert not study_dir.exists()
    cfg_file = tmp_path / "study.json"
    cfg_file.write_text(json.dumps(STUDY))
    proc = _cli("study", "--config", str(cfg_file), "--out", str(study_dir))
    assert proc.returncode == 2, proc.stderr
    line = _one_line(proc.stderr)
    assert f"{cfg_file}: architectures: model 'os:system'" in line and HINT in line
    assert not study_dir.exists() and not (tmp_path / "pwned").exists()


def test_study_trust_reaches_spawned_workers_and_a_study_file_cannot_grant_it(
    tmp_path: Path,
) -> None:
    spec = {**STUDY, "architectures": ["vae", NAME], "model_params": {}}
    cfg = study_config_from_dict(spec)
    with pytest.raises(ConfigError, match="not a registered vaelens model"):
        run_study(cfg, tmp_path / "s", job="_custom_models:record_job", workers=2)
    assert not (tmp_path / "s").exists()
    counts = run_study(
        cfg, tmp_path / "s", job="_custom_models:record_job", workers=2, trust_code=[NAME]
    )
    assert counts["completed"] == 2, counts
    for run_dir in (tmp_path / "s" / "runs").iterdir():
        seen = json.loads((run_dir / "spec.json").read_text())
        assert seen["trust_code"] == [NAME] and seen["pid"] != os.getpid()
    with pytest.raises(ConfigError, match="trust_code"):
        study_config_from_dict({**spec, "trust_code": [NAME]})


def test_the_study_job_trains_with_the_trust_of_its_spec(tmp_path: Path) -> None:
    from vaelens.study.job import _train

    spec = {
        "run_id": "custom",
        "architecture": NAME,
        "dataset": "synthetic",
        "seed": 0,
        "hparams": {},
        "train": {"steps": 2, "batch_size": 8, "n_train": 16},
        "dataset_options": {},
        "analysis": {},
    }
    with pytest.raises(ConfigError, match=f"--trust-code {NAME}"):
        _train(RunSpec.model_validate(spec), tmp_path / "a")
    assert not (tmp_path / "a").exists()
    run = _train(RunSpec.model_validate({**spec, "trust_code": [NAME]}), tmp_path / "b")
    assert isinstance(run.model(), nn.Module) and isinstance(run.model(), MLPVAE)
