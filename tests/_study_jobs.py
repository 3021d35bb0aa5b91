"""Stand-in jobs for the study-runner tests (imported by worker processes by name)."""

from __future__ import annotations

import hashlib
import sqlite3
import time
from pathlib import Path
from typing import Any

#: a real study small enough for a test: two architectures, one seed, 6 steps a run
TINY_STUDY: dict[str, Any] = {
    "name": "tiny",
    "architectures": ["vae", "beta_vae"],
    "datasets": ["synthetic"],
    "seeds": [0],
    "train": {"steps": 6, "batch_size": 8, "n_train": 64, "checkpoint_every": 3},
    "model_params": {"vae": {"width": 0.125}, "beta_vae": {"width": 0.125}},
    "analysis": {"n_samples": 8, "metrics": ["mig"], "baseline": True},
}


def fake_job(spec: dict[str, Any], storage: str) -> dict[str, Any]:
    """Deterministic metrics from the run's identity; fails when hparams ask it to.

    ``hparams["sleep"]`` (seconds) slows the job down: hparams are passed through as data,
    whereas ``[train]`` is validated against TrainConfig when the study is loaded.
    """
    if spec["hparams"].get("explode"):
        raise RuntimeError(f"exploded on purpose in {spec['run_id']}")
    delay = float(spec["hparams"].get("sleep", 0.0))
    run_dir = Path(storage) / "runs" / spec["run_id"]
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "attempt").open("a").write("x")
    time.sleep(delay)
    h = int(hashlib.sha1(spec["run_id"].encode()).hexdigest()[:8], 16)
    return {
        "metrics": {
            "ces": {"mean": (h % 1000) / 100.0},
            "dci": {"d": (h % 97) / 97.0},
            "seed": spec["seed"],
        },
        "train_seconds": delay,
        "analysis_seconds": 0.0,
    }


def db_snapshot(db: Path) -> list[tuple]:
    """Runs (identity and status) and metrics of a study database, in a stable order.

    Timings are left out: they differ between an interrupted and an uninterrupted study.
    """
    con = sqlite3.connect(db)
    try:
        runs = con.execute(
            "SELECT run_id, architecture, dataset, seed, hparams, status FROM runs ORDER BY run_id"
        ).fetchall()
        metrics = con.execute(
            "SELECT run_id, name, value FROM metrics ORDER BY run_id, name"
        ).fetchall()
    finally:
        con.close()
    return runs + metrics
