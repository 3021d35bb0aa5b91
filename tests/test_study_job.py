"""A real (tiny) study end to end: train, analyse, score, store, report; then resume."""

from __future__ import annotations

import json
from pathlib import Path

from _study_jobs import TINY_STUDY, db_snapshot
from vaelens.report import build_report
from vaelens.study.config import study_config_from_dict
from vaelens.study.runner import run_study, study_status
from vaelens.study.store import ResultStore

TINY = {
    **TINY_STUDY,
    "analysis": {
        "n_samples": 8,
        "metrics": ["mig", "sap"],
        "baseline": True,
        "circuits": True,
        "alignment": True,
        "alignment_steps": 10,
    },
}


def test_tiny_study_end_to_end(tmp_path: Path) -> None:
    cfg = study_config_from_dict(TINY)
    counts = run_study(cfg, tmp_path, workers=1)
    assert counts["completed"] == 2, counts
    with ResultStore(tmp_path / "study.sqlite") as store:
        res = store.results()
    cols = ("ces.mean", "baseline.ces.mean", "mig.mig", "recon.trained", "recon.baseline")
    for col in (*cols, "recon.mse_trained", "recon.mse_baseline", "recon.mse_mean_image"):
        assert col in res.columns and res[col].notna().all(), col
    run_dir = tmp_path / "runs" / "vae-synthetic-s0"
    for name in ("analysis.json", "disentanglement.json", "result.json", "status.json"):
        assert (run_dir / name).is_file(), name
    first = json.loads((run_dir / "result.json").read_text())
    assert json.loads((run_dir / "stage.json").read_text())["stage"] == "done"
    runs = {r["run_id"]: r for r in study_status(tmp_path)["runs"]}
    assert runs["vae-synthetic-s0"]["stage"] == "done"
    assert runs["vae-synthetic-s0"]["step"] == runs["vae-synthetic-s0"]["total_steps"] > 0
    # a second run of the study redoes nothing and records the same numbers
    assert run_study(cfg, tmp_path, workers=1)["completed"] == 2
    assert json.loads((run_dir / "result.json").read_text()) == first
    report = build_report(tmp_path, n_boot=20)
    html = report.read_text()
    assert "vae-synthetic-s0" in html or "VAE" in html
    assert "Interchange interventions" in html  # the real pipeline's interchange block
    assert "was not done by this study" not in html  # trained here, nothing adopted
    inter = (tmp_path / "report" / "tables" / "table_interchange.csv").read_text()
    assert "interchange.min_set_size.shape" in inter
    matrix = (tmp_path / "report" / "tables" / "table_interchange_matrix.md").read_text()
    assert "minimal set" in matrix and "z0" in matrix
    for key in ("table_circuits", "table_alignment"):
        assert (tmp_path / "report" / "tables" / f"{key}.csv").is_file(), key


def test_real_study_killed_mid_training_resumes_to_the_same_database(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    spec = dict(TINY, train={**TINY["train"], "steps": 40, "checkpoint_every": 5})
    cfg_file = tmp_path / "tiny.json"
    cfg_file.write_text(json.dumps(spec))
    script = (
        "import json, sys\n"
        "from vaelens.study.config import study_config_from_dict\n"
        "from vaelens.study.runner import run_study\n"
        "run_study(study_config_from_dict(json.load(open(sys.argv[1]))), sys.argv[2], workers=1)\n"
    )
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", script, str(cfg_file), str(killed)])
    # kill once the second run has written a checkpoint but not finished training
    ckpts = killed / "runs" / "vae-synthetic-s0" / "checkpoints"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if ckpts.is_dir() and any(p.suffix == ".json" for p in ckpts.iterdir()):
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "runs" / "vae-synthetic-s0" / "result.json").exists()
    subprocess.run([sys.executable, "-c", script, str(cfg_file), str(killed)], check=True)
    fresh = tmp_path / "fresh"
    subprocess.run([sys.executable, "-c", script, str(cfg_file), str(fresh)], check=True)
    assert db_snapshot(killed / "study.sqlite") == db_snapshot(fresh / "study.sqlite")


def test_a_study_run_loads_its_dataset_once_and_builds_its_model_once(
    tmp_path: Path, monkeypatch
) -> None:
    import vaelens.data
    import vaelens.train.run
    import vaelens.train.trainer
    from vaelens.study.config import plan_runs
    from vaelens.study.job import execute_run

    calls = {"load_dataset": 0, "build_model": 0}
    real_load, real_build = vaelens.data.load_dataset, vaelens.train.run.build_model_from_config

    def load_dataset(*args, **kwargs):
        calls["load_dataset"] += 1
        return real_load(*args, **kwargs)

    def build(*args, **kwargs):
        calls["build_model"] += 1
        return real_build(*args, **kwargs)

    monkeypatch.setattr(vaelens.data, "load_dataset", load_dataset)
    monkeypatch.setattr(vaelens.train.run, "build_model_from_config", build)
    monkeypatch.setattr(vaelens.train.trainer, "build_model_from_config", build)
    spec = plan_runs(study_config_from_dict(TINY))[0]
    result = execute_run(spec.model_dump(mode="json"), str(tmp_path))
    assert calls == {"load_dataset": 1, "build_model": 1}
    assert result["metrics"]["ces.mean"] > 0 and "mig" in result["metrics"]
