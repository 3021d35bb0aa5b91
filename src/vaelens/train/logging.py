"""Where the trainer reports: metrics.jsonl, status.json, TensorBoard, W&B, a progress bar.

``metrics.jsonl`` holds one JSON object per logging window (``step`` = optimiser steps
completed, the window's mean of each loss term, ``lr``, ``images_per_s``, ...), appended
and flushed line by line. On resume :meth:`MetricsLog.truncate_after` drops every line
past the checkpoint's step (and a half-written last line), so no step is logged twice.
``status.json`` is rewritten atomically: ``{"status": "running" | "completed" | "stopped" | "failed",
"step", "total_steps", "error", ...}``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any, Protocol

from vaelens.errors import ConfigError
from vaelens.io import atomic_write_json, atomic_write_text, to_jsonable

__all__ = [
    "MetricsLog",
    "ProgressBar",
    "ScalarLogger",
    "TensorBoardLogger",
    "WandbLogger",
    "eta_progress",
    "read_metrics",
    "read_status",
    "write_status",
]


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def write_status(run_dir: str | Path, status: str, **fields: Any) -> None:
    """Atomically write ``run_dir/status.json`` with ``status`` and ``fields``."""
    atomic_write_json(
        Path(run_dir) / "status.json",
        {"status": status, "updated": _now(), "pid": os.getpid(), **fields},
    )


def read_status(run_dir: str | Path) -> dict[str, Any] | None:
    """``status.json`` of a run, or ``None`` when it has none (or an unreadable one)."""
    p = Path(run_dir) / "status.json"
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


class MetricsLog:
    """Append-only JSONL file of metric records, one flushed line each."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = None

    def truncate_after(self, step: int) -> int:
        """Keep only complete lines whose ``step <= step`` (atomic rewrite); return how many."""
        if not self.path.exists():
            return 0
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines(keepends=True):
            if not line.endswith("\n"):
                break  # half-written last line of a killed run
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                break
            if int(rec.get("step", 0)) <= step:
                kept.append(line)
        atomic_write_text(self.path, "".join(kept))
        return len(kept)

    def write(self, record: dict[str, Any]) -> None:
        """Append ``record`` as one line (non-finite floats become null) and flush."""
        if self._fh is None:
            self._fh = self.path.open("a", encoding="utf-8")
        self._fh.write(json.dumps(to_jsonable(record), allow_nan=False) + "\n")
        self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """All complete records of ``run_dir/metrics.jsonl``."""
    p = Path(run_dir) / "metrics.jsonl"
    if not p.exists():
        return []
    out = []
    for line in p.read_text(encoding="utf-8").splitlines():
        if line.strip():
            out.append(json.loads(line))
    return out


class ScalarLogger(Protocol):
    """An experiment tracker the trainer feeds every metrics record."""

    def log(self, step: int, scalars: dict[str, float]) -> None: ...

    def close(self) -> None: ...


class TensorBoardLogger:
    """Scalars to ``run_dir/tensorboard`` through ``torch.utils.tensorboard``."""

    def __init__(self, run_dir: str | Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise ConfigError(
                f"tensorboard = true needs the tensorboard package ({exc}); pip install 'vaelens[tracking]'"
            ) from None
        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"))

    def log(self, step: int, scalars: dict[str, float]) -> None:
        for k, v in scalars.items():
            if v is not None:
                self.writer.add_scalar(f"train/{k}", v, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbLogger:
    """Scalars to Weights & Biases in offline mode (``wandb sync`` uploads later)."""

    def __init__(self, run_dir: str | Path, config: dict[str, Any], *, resume: bool) -> None:
        try:
            import wandb
        except ImportError:
            raise ConfigError(
                "wandb = true needs the wandb package; pip install 'vaelens[tracking]'"
            ) from None
        os.environ.setdefault("WANDB_MODE", "offline")
        run_id_file = Path(run_dir) / "wandb_run_id.txt"
        run_id = (
            run_id_file.read_text().strip() if run_id_file.exists() else wandb.util.generate_id()
        )
        atomic_write_text(run_id_file, run_id + "\n")
        self.run = wandb.init(
            project="vaelens",
            dir=str(run_dir),
            config=config,
            id=run_id,
            resume="allow" if resume else None,
            mode="offline",
        )

    def log(self, step: int, scalars: dict[str, float]) -> None:
        self.run.log({f"train/{k}": v for k, v in scalars.items() if v is not None}, step=step)

    def close(self) -> None:
        self.run.finish()


def eta_progress(
    label: str, *, after: tuple[str, ...] = (), eta_label: bool = False, console: Any = None
) -> Any:
    """A rich ``Progress``: ``label`` (a column template), the bar, done/total, time elapsed,
    (``"ETA"``,) time remaining, then the text columns ``after``."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = [TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    columns += [TextColumn("ETA")] if eta_label else []
    columns += [TimeRemainingColumn(), *(TextColumn(text) for text in after)]
    return Progress(*columns, console=console, transient=False)


class ProgressBar:
    """A rich progress bar showing step, speed and the latest loss terms (no-op if disabled)."""

    def __init__(
        self, total: int, start: int, *, enabled: bool, description: str = "train"
    ) -> None:
        self.enabled = enabled
        if not enabled:
            return
        self.progress = eta_progress("[bold]{task.description}", after=("{task.fields[terms]}",))
        self.task = self.progress.add_task(description, total=total, completed=start, terms="")
        self.progress.start()

    def update(self, step: int, terms: dict[str, float] | None = None) -> None:
        if not self.enabled:
            return
        kwargs: dict[str, Any] = {"completed": step}
        if terms is not None:
            kwargs["terms"] = " ".join(f"{k}={v:.4g}" for k, v in terms.items() if v is not None)
        self.progress.update(self.task, **kwargs)

    def close(self) -> None:
        if self.enabled:
            self.progress.stop()
