"""One driver per study directory: an exclusive lock held for the driver's life.

The driver takes ``fcntl.flock(LOCK_EX | LOCK_NB)`` on ``<study_dir>/driver.lock`` before it
touches the store and keeps the file open until it returns. The kernel drops the lock when
the process ends in any way (a return, an exception, ``kill -9``), so a crashed driver never
leaves a stale lock; the file itself stays, holding the last holder's pid, host and start
time for the message a second driver gets. Readers (``vaelens study status``, the report)
take no lock. The lock is advisory and per host: on a network file system it is only as
good as that file system's ``flock``.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from vaelens.errors import StudyLockedError

__all__ = ["LOCK_NAME", "study_lock"]

LOCK_NAME = "driver.lock"


def _holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode("utf-8") or "{}")
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(info["started"])))
        return f"pid {int(info['pid'])} on {info['host']}, since {since}"
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, OSError):
        return "a process whose pid could not be read"


@contextmanager
def study_lock(study_dir: str | Path) -> Iterator[Path]:
    """Hold ``<study_dir>/driver.lock`` exclusively for the ``with`` block; yields its path.

    Raises :class:`StudyLockedError` (one line naming the holder's pid) when another live
    process holds it. ``study_dir`` must exist.
    """
    import fcntl

    path = Path(study_dir) / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise StudyLockedError(
            f"{study_dir}: another study driver is running this study ({holder}); "
            "wait for it to finish or stop it, then run the command again"
        ) from None
    try:
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode("utf-8"), 0)
        yield path
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
