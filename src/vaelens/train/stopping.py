"""Stop rules: end a run early when its loss has stopped improving.

:class:`PlateauRule` watches one loss term's window mean (one value per ``log_every`` steps,
the values ``metrics.jsonl`` records). With ``b`` the best value so far, a window value
``v`` is an improvement when ``v < b - rtol * |b|``; the run stops at the first window
whose step is at least ``patience`` steps after the last improvement. Windows before
``start`` (the model's KL warm-up, during which the reconstruction is best and then gets
worse by design) are not watched. Its state (best value,
its step, whether it fired) travels in every checkpoint, so a resumed run stops exactly
where an uninterrupted one would, and a run that stopped on a plateau stays stopped.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["PlateauRule"]


class PlateauRule:
    """Plateau stop rule over the window means of ``term`` (off when ``patience == 0``)."""

    def __init__(self, patience: int, rtol: float, term: str, start: int = 0) -> None:
        self.patience = int(patience)
        self.start = int(start)
        self.rtol = float(rtol)
        self.term = term
        self.best = math.inf
        self.best_step = 0
        self.fired_at: int | None = None

    @property
    def enabled(self) -> bool:
        return self.patience > 0

    @property
    def fired(self) -> bool:
        return self.fired_at is not None

    def update(self, step: int, means: dict[str, float]) -> bool:
        """Feed the window means recorded at ``step``; True when the run should stop now.

        Watches ``term``, or ``loss`` when the model reports no such term.
        """
        if not self.enabled or self.fired or step < self.start:
            return self.fired
        value = means.get(self.term, means.get("loss"))
        if value is None or not math.isfinite(value):
            return False
        if not math.isfinite(self.best) or value < self.best - self.rtol * abs(self.best):
            self.best, self.best_step = float(value), int(step)
        elif step - self.best_step >= self.patience:
            self.fired_at = int(step)
        return self.fired

    def state(self) -> dict[str, Any]:
        best = self.best if math.isfinite(self.best) else None
        return {"best": best, "best_step": self.best_step, "fired_at": self.fired_at}

    def load(self, state: dict[str, Any] | None) -> None:
        if not state:
            return
        best = state.get("best")
        self.best = math.inf if best is None else float(best)
        self.best_step = int(state.get("best_step", 0))
        fired = state.get("fired_at")
        self.fired_at = None if fired is None else int(fired)
