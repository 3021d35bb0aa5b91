"""Study runner: planning, the SQLite store, resuming after a kill, failures, executors."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from _study_jobs import db_snapshot
from vaelens.errors import ConfigError, StudyLockedError
from vaelens.study.config import load_study_config, plan_runs, study_config_from_dict
from vaelens.study.runner import run_study, study_status
from vaelens.study.store import ResultStore

JOB = "_study_jobs:fake_job"
HERE = Path(__file__).parent


def _cfg(**over):
    base = {
        "name": "t",
        "architectures": ["vae", "beta_vae"],
        "datasets": ["synthetic"],
        "seeds": [0, 1],
    }
    base.update(over)
    return study_config_from_dict(base)


def test_plan_crosses_grid_and_ids_are_stable() -> None:
    cfg = _cfg(grid={"beta_vae.beta": [1.0, 4.0]}, model_params={"beta_vae": {"latent_dim": 8}})
    runs = plan_runs(cfg)
    assert len(runs) == 2 + 4  # vae x 2 seeds + beta_vae x 2 betas x 2 seeds
    ids = [r.run_id for r in runs]
    assert ids == [r.run_id for r in plan_runs(cfg)]
    assert "vae-synthetic-s0" in ids
    betas = sorted(
        {(r.hparams["beta"], r.hparams["latent_dim"]) for r in runs if r.architecture == "beta_vae"}
    )
    assert betas == [(1.0, 8), (4.0, 8)]


def test_config_errors_name_the_key_and_file(tmp_path: Path) -> None:
    bad = tmp_path / "s.toml"
    bad.write_text('name = "x"\narchitectures = ["vae"]\ndatasets = ["synthetic"]\nbogus = 1\n')
    with pytest.raises(ConfigError, match=r"s\.toml: unknown key 'bogus'"):
        load_study_config(bad)
    yml = tmp_path / "s.yaml"
    yml.write_text("name: x\narchitectures: [vae]\ndatasets: [synthetic]\ntrain: {seed: 3}\n")
    with pytest.raises(ConfigError, match="set by the grid"):
        load_study_config(yml)
    with pytest.raises(ConfigError, match=r"must be 'architecture\.param'"):
        _cfg(grid={"beta": [1]})
    with pytest.raises(ConfigError, match="not found"):
        load_study_config(tmp_path / "missing.toml")


def test_store_records_and_exports(tmp_path: Path) -> None:
    cfg = _cfg(architectures=["vae", "explody"], model_params={"explody": {"explode": True}})
    counts = run_study(cfg, tmp_path, job=JOB, workers=1)
    assert counts == {"pending": 0, "running": 0, "completed": 2, "failed": 2}
    status = study_status(tmp_path)
    assert status["total"] == 4 and len(status["failed"]) == 2
    assert "exploded on purpose" in status["failed"][0]["error"]
    with ResultStore(tmp_path / "study.sqlite") as store:
        res = store.results()
        paths = store.export(tmp_path)
    done = res[res.status == "completed"]
    assert {"ces.mean", "dci.d", "metrics.seed", "seed"} <= set(done.columns)
    assert (done["metrics.seed"] == done["seed"]).all()
    assert done["ces.mean"].notna().all()
    assert [p.name for p in paths] == ["results.csv", "results.parquet"]
    assert len(pd.read_csv(paths[0])) == 4
    assert len(pd.read_parquet(paths[1])) == 4
    # re-running does nothing new: completed and failed runs are not redone
    counts = run_study(cfg, tmp_path, job=JOB, workers=1)
    assert counts["completed"] == 2
    assert all((tmp_path / "runs" / r / "attempt").read_text() == "x" for r in done.run_id)
    # retry_failed gives failed runs another attempt
    run_study(cfg, tmp_path, job=JOB, workers=1, retry_failed=True)
    with ResultStore(tmp_path / "study.sqlite") as store:
        assert set(store.runs(status="failed").attempts) == {2}


def test_a_different_config_in_the_same_dir_is_refused(tmp_path: Path) -> None:
    run_study(_cfg(), tmp_path, job=JOB, workers=1)
    with pytest.raises(ConfigError, match="different config"):
        run_study(_cfg(seeds=[5]), tmp_path, job=JOB, workers=1)


def test_process_pool_executor(tmp_path: Path) -> None:
    counts = run_study(_cfg(), tmp_path, job=JOB, workers=2)
    assert counts["completed"] == 4


def test_kill_midway_then_resume_equals_uninterrupted(tmp_path: Path) -> None:
    spec = {
        "name": "k",
        "architectures": ["vae", "beta_vae"],
        "datasets": ["synthetic", "dsprites"],
        "seeds": [0, 1],
        "model_params": {"vae": {"sleep": 0.4}, "beta_vae": {"sleep": 0.4}},
    }
    study_file = tmp_path / "k.json"
    study_file.write_text(json.dumps(spec))
    script = textwrap.dedent(
        f"""
        import json, sys
        sys.path.insert(0, {str(HERE)!r})
        from vaelens.study.config import study_config_from_dict
        from vaelens.study.runner import run_study
        cfg = study_config_from_dict(json.load(open(sys.argv[1])))
        run_study(cfg, sys.argv[2], job={JOB!r}, workers=1)
        """
    )
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", script, str(study_file), str(killed)])
    db = killed / "study.sqlite"
    deadline = time.time() + 60
    while time.time() < deadline:  # wait until some but not all runs are recorded
        if db.exists():
            try:
                done = (
                    sqlite3.connect(db)
                    .execute("SELECT COUNT(*) FROM runs WHERE status='completed'")
                    .fetchone()[0]
                )
            except sqlite3.OperationalError:
                done = 0
            if done >= 2:
                break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    mid = study_status(killed)["counts"]
    assert 0 < mid["completed"] < 8
    # resume with the same command
    subprocess.run([sys.executable, "-c", script, str(study_file), str(killed)], check=True)
    fresh = tmp_path / "fresh"
    subprocess.run([sys.executable, "-c", script, str(study_file), str(fresh)], check=True)
    assert db_snapshot(db) == db_snapshot(fresh / "study.sqlite")
    assert study_status(killed)["counts"]["completed"] == 8


def test_ray_executor_on_a_local_instance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("ray")
    # Ray's workers are new processes: they find the stand-in job through PYTHONPATH
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    cfg = _cfg(architectures=["vae"], seeds=[0, 1], resources={"num_cpus": 1, "num_gpus": 0})
    counts = run_study(
        cfg, tmp_path / "study", executor="ray", job=JOB, storage=tmp_path / "shared"
    )
    assert counts["completed"] == 2
    assert sorted(p.name for p in (tmp_path / "shared" / "runs").iterdir()) == [
        "vae-synthetic-s0",
        "vae-synthetic-s1",
    ]
    with ResultStore(tmp_path / "study" / "study.sqlite") as store:
        assert store.results()["ces.mean"].notna().all()


def test_one_driver_per_study_directory(tmp_path: Path) -> None:
    """A second driver is refused naming the first's pid; kill -9 frees the directory."""
    spec = {"name": "lock", "architectures": ["vae"], "datasets": ["synthetic"],
            "seeds": [0, 1, 2], "model_params": {"vae": {"sleep": 30}}}  # fmt: skip
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(HERE)!r})
        from vaelens.study.config import study_config_from_dict
        from vaelens.study.runner import run_study
        run_study(study_config_from_dict({spec!r}), sys.argv[1], job={JOB!r}, workers=1)
        """
    )
    study = tmp_path / "study"
    proc = subprocess.Popen([sys.executable, "-c", script, str(study)])
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not list(study.glob("runs/*/attempt")):
            time.sleep(0.05)  # the first driver holds the lock and is inside a run
        assert list(study.glob("runs/*/attempt")), "the first driver never started a run"
        cfg = study_config_from_dict(spec)
        with pytest.raises(StudyLockedError, match=f"pid {proc.pid} ") as exc:
            run_study(cfg, study, job=JOB, workers=1)
        assert "\n" not in str(exc.value)
        status = study_status(study)["counts"]  # readers need no lock
        assert status["running"] == 1 and status["completed"] == 0
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    fast = {**spec, "model_params": {"vae": {"sleep": 0}}}
    with pytest.raises(ConfigError, match="different config"):  # the lock is free again
        run_study(study_config_from_dict(fast), study, job=JOB, workers=1)
    counts = run_study(study_config_from_dict(spec), study, job=JOB, workers=1, max_runs=0)
    assert counts["running"] == 0 and counts["pending"] == 3  # the killed run was reset


def test_builtin_presets_validate_and_standard_is_dlibs_budget() -> None:
    from vaelens.study.config import plan_runs
    from vaelens.study.presets import PRESETS, preset

    for name in PRESETS:
        assert plan_runs(preset(name)), name
    runs = plan_runs(preset("standard"))
    assert len(runs) == 60
    assert {r.train["steps"] for r in runs} == {300_000} and {r.train["lr"] for r in runs} == {1e-4}
    assert {r.hparams["backbone"] for r in runs} == {"dlib"}


def test_demo_long_is_the_demo_with_20_times_the_steps() -> None:
    from vaelens.study.config import plan_runs
    from vaelens.study.presets import preset

    short, long = plan_runs(preset("demo")), plan_runs(preset("demo-long"))
    assert [r.run_id for r in short] == [r.run_id for r in long] and len(short) == 6
    for a, b in zip(short, long, strict=True):
        assert b.train["steps"] == 20 * a.train["steps"] == 60_000
        assert {**b.train, "steps": 0, "checkpoint_every": 0} == {
            **a.train,
            "steps": 0,
            "checkpoint_every": 0,
        }
        assert a.hparams == b.hparams
    assert preset("demo").analysis == preset("demo-long").analysis
