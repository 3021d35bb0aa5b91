"""A real (tiny) study end to end: train, analyse, score, store, report; then resume."""

from __future__ import annotations

import json
from pathlib import Path

from vaelens.report import build_report
from vaelens.study.config import study_config_from_dict
from vaelens.study.runner import run_study
from vaelens.study.store import ResultStore

TINY = {
    "name": "tiny",
    "architectures": ["vae", "beta_vae"],
    "datasets": ["synthetic"],
    "seeds": [0],
    "train": {"steps": 6, "batch_size": 8, "n_train": 64, "checkpoint_every": 3},
    "model_params": {"vae": {"width": 0.125}, "beta_vae": {"width": 0.125}},
    "analysis": {"n_samples": 8, "metrics": ["mig", "sap"], "baseline": True},
}


def test_tiny_study_end_to_end(tmp_path: Path) -> None:
    cfg = study_config_from_dict(TINY)
    counts = run_study(cfg, tmp_path, workers=1)
    assert counts["completed"] == 2, counts
    with ResultStore(tmp_path / "study.sqlite") as store:
        res = store.results()
    for col in ("ces.mean", "baseline.ces.mean", "mig.mig", "recon.trained", "recon.baseline"):
        assert col in res.columns and res[col].notna().all(), col
    run_dir = tmp_path / "runs" / "vae-synthetic-s0"
    for name in ("analysis.json", "disentanglement.json", "result.json", "status.json"):
        assert (run_dir / name).is_file(), name
    first = json.loads((run_dir / "result.json").read_text())
    # a second run of the study redoes nothing and records the same numbers
    assert run_study(cfg, tmp_path, workers=1)["completed"] == 2
    assert json.loads((run_dir / "result.json").read_text()) == first
    report = build_report(tmp_path, n_boot=20)
    html = report.read_text()
    assert "vae-synthetic-s0" in html or "VAE" in html
