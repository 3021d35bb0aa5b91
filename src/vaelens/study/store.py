"""The results store of a study: an embedded SQLite database in the study directory.

Only the driver process writes (workers return their results to it), every state change
is one transaction, and the database runs in WAL mode, so a study killed at any moment
leaves a consistent file: a run is ``pending``, ``running``, ``completed`` or ``failed``,
and its metrics are written in the same transaction that marks it completed.

Tables:
- ``runs``: one row a run: its id, architecture, dataset, seed, hyperparameters and full
  config (JSON), status, attempts, error, timings, and the run directory;
- ``metrics``: long format ``(run_id, name, value)``, one row a scalar metric;
- ``meta``: the study's name and config.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vaelens.errors import ArgumentError, ConfigError
from vaelens.io import to_jsonable

__all__ = ["STATUSES", "ResultStore"]

STATUSES = ("pending", "running", "completed", "failed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    architecture TEXT NOT NULL,
    dataset TEXT NOT NULL,
    seed INTEGER NOT NULL,
    hparams TEXT NOT NULL,
    config TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'running', 'completed', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    run_dir TEXT,
    started_at REAL,
    finished_at REAL,
    train_seconds REAL,
    analysis_seconds REAL
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    name TEXT NOT NULL,
    value REAL,
    PRIMARY KEY (run_id, name)
);
"""


def flatten_metrics(tree: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Scalar leaves of a nested dict as ``{"a.b.c": value}`` (lists and strings are skipped).

    Non-finite floats are kept as NaN (stored as SQL NULL).
    """
    out: dict[str, float] = {}
    for key, val in tree.items():
        name = f"{prefix}{key}"
        if isinstance(val, Mapping):
            out.update(flatten_metrics(val, f"{name}."))
        elif isinstance(val, bool | int | float | np.integer | np.floating):
            out[name] = float(val)
    return out


class ResultStore:
    """SQLite store of one study (``<study_dir>/study.sqlite``)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"{self.path}: not a vaelens study database ({exc})") from None

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        else:
            self._conn.execute("COMMIT")

    # -------------------------------------------------------------- meta

    def set_meta(self, key: str, value: Any) -> None:
        with self._tx() as c:
            c.execute(
                "INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(to_jsonable(value)))
            )

    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    # -------------------------------------------------------------- runs

    def add_runs(self, runs: list[Mapping[str, Any]]) -> int:
        """Insert planned runs that are not in the store yet; returns how many were new."""
        new = 0
        with self._tx() as c:
            for r in runs:
                cur = c.execute(
                    "INSERT OR IGNORE INTO runs (run_id, architecture, dataset, seed, hparams, config, status, run_dir)"
                    " VALUES (?, ?, ?, ?, ?, ?, 'pending', ?)",
                    (
                        r["run_id"],
                        r["architecture"],
                        r["dataset"],
                        int(r["seed"]),
                        json.dumps(to_jsonable(r.get("hparams", {})), sort_keys=True),
                        json.dumps(to_jsonable(r.get("config", {})), sort_keys=True),
                        r.get("run_dir"),
                    ),
                )
                new += cur.rowcount
        return new

    def reset_interrupted(self) -> int:
        """Runs left ``running`` by a killed driver go back to ``pending`` (they resume)."""
        with self._tx() as c:
            return c.execute("UPDATE runs SET status = 'pending' WHERE status = 'running'").rowcount

    def reset_failed(self) -> int:
        """Failed runs go back to ``pending`` (``--retry-failed``)."""
        with self._tx() as c:
            return c.execute(
                "UPDATE runs SET status = 'pending', error = NULL WHERE status = 'failed'"
            ).rowcount

    def mark_running(self, run_id: str) -> None:
        with self._tx() as c:
            c.execute(
                "UPDATE runs SET status = 'running', attempts = attempts + 1, started_at = ? WHERE run_id = ?",
                (time.time(), run_id),
            )

    def mark_completed(
        self,
        run_id: str,
        metrics: Mapping[str, Any],
        *,
        train_seconds: float | None = None,
        analysis_seconds: float | None = None,
    ) -> None:
        """Record a finished run and its scalar metrics in one transaction (replacing any old ones)."""
        flat = flatten_metrics(metrics)
        with self._tx() as c:
            c.execute("DELETE FROM metrics WHERE run_id = ?", (run_id,))
            c.executemany(
                "INSERT INTO metrics VALUES (?, ?, ?)",
                [(run_id, k, v if np.isfinite(v) else None) for k, v in sorted(flat.items())],
            )
            c.execute(
                "UPDATE runs SET status = 'completed', error = NULL, finished_at = ?, train_seconds = ?,"
                " analysis_seconds = ? WHERE run_id = ?",
                (time.time(), train_seconds, analysis_seconds, run_id),
            )

    def mark_failed(self, run_id: str, error: str) -> None:
        with self._tx() as c:
            c.execute(
                "UPDATE runs SET status = 'failed', error = ?, finished_at = ? WHERE run_id = ?",
                (error, time.time(), run_id),
            )

    def runs(self, status: str | None = None) -> pd.DataFrame:
        """The runs table (hparams and config parsed from JSON)."""
        if status is not None and status not in STATUSES:
            raise ArgumentError(f"status: expected one of {STATUSES}, got {status!r}")
        sql = "SELECT * FROM runs" + (" WHERE status = ?" if status else "") + " ORDER BY run_id"
        df = pd.read_sql_query(sql, self._conn, params=(status,) if status else None)
        for col in ("hparams", "config"):
            df[col] = df[col].map(json.loads)
        return df

    def pending_ids(self) -> list[str]:
        rows = self._conn.execute(
            "SELECT run_id FROM runs WHERE status = 'pending' ORDER BY run_id"
        ).fetchall()
        return [r[0] for r in rows]

    def run_row(self, run_id: str) -> dict[str, Any]:
        df = self.runs()
        sel = df[df.run_id == run_id]
        if sel.empty:
            raise KeyError(run_id)
        return sel.iloc[0].to_dict()

    def counts(self) -> dict[str, int]:
        rows = self._conn.execute("SELECT status, COUNT(*) FROM runs GROUP BY status").fetchall()
        out = dict.fromkeys(STATUSES, 0)
        out.update({s: n for s, n in rows})
        return out

    def metrics_long(self) -> pd.DataFrame:
        return pd.read_sql_query("SELECT * FROM metrics ORDER BY run_id, name", self._conn)

    def results(self) -> pd.DataFrame:
        """One row a run (all statuses), one column a metric, beside the run's fields."""
        runs = self.runs().drop(columns=["config"])
        long = self.metrics_long()
        if long.empty:
            return runs
        wide = long.pivot(index="run_id", columns="name", values="value").reset_index()
        wide.columns.name = None
        clash = {c: f"metrics.{c}" for c in wide.columns if c != "run_id" and c in runs.columns}
        wide = wide.rename(columns=clash)
        return runs.merge(wide, on="run_id", how="left")

    def export(self, directory: str | Path, *, parquet: bool = True) -> list[Path]:
        """Write ``results.csv`` (and ``results.parquet`` when pyarrow is installed)."""
        from vaelens.io import atomic_open

        out_dir = Path(directory)
        df = self.results()
        df["hparams"] = df["hparams"].map(lambda h: json.dumps(h, sort_keys=True))
        paths = []
        csv = out_dir / "results.csv"
        with atomic_open(csv, "w") as fh:
            df.to_csv(fh, index=False)
        paths.append(csv)
        if parquet:
            try:
                import pyarrow  # noqa: F401
            except ImportError:
                return paths
            pq = out_dir / "results.parquet"
            with atomic_open(pq, "wb") as fh:
                df.to_parquet(fh, index=False)
            paths.append(pq)
        return paths
