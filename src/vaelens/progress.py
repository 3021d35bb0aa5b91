"""The progress protocol of the long steps, beneath every package.

Every long step (rendering, training, analysis, metrics, studies, reports) reports to an
optional callback ``progress(stage, done, total)``: ``stage`` names what starts now,
``done`` of ``total`` are finished. The CLI turns the calls into bars (in a terminal) or one
line per stage (outside one); the library never prints.

Imports from: nothing of vaelens.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

__all__ = ["Progress", "stage_teller"]

#: ``progress(stage, done, total)``
Progress = Callable[[str, int, int], None]


def stage_teller(progress: Progress | None, stages: Sequence[str]) -> Callable[[str], None]:
    """``tell(name)`` for a step whose stages are ``stages``, in order: it calls
    ``progress(name, i, len(stages))`` with ``i`` the index of ``name`` in ``stages`` (the
    stages before it are done), or ``len(stages)`` for a name not among them (``"done"``).
    Without a ``progress`` callback, ``tell`` does nothing."""
    names = list(stages)

    def tell(name: str) -> None:
        if progress is not None:
            done = names.index(name) if name in names else len(names)
            progress(name, done, len(names))

    return tell
