"""The multiprocess metrics folder: emptied at start, a dead worker's live gauges dropped.

prometheus-client writes one file per process and metric kind, named by PID; a
scrape sums them all. gunicorn tells us when a worker dies (``child_exit`` in
``gunicorn.conf.py``); granian does not, and respawns the worker. So a worker
drops the files of dead PIDs when it starts, and every scrape does too: a
worker killed between two scrapes no longer counts as a request in flight.
Counters and histograms of dead workers stay, as prometheus-client intends:
their requests did happen.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

#: The gauges whose files describe a live process only (``multiprocess_mode="live..."``).
_LIVE_FILE = re.compile(r"^gauge_live[a-z]*_(\d+)\.db$")


def prepare(path: str | os.PathLike[str]) -> None:
    """Create the folder and delete a previous run's files: call before the app is built.

    prometheus-client is not imported here: it picks its storage when first
    imported, so the caller may still set ``PROMETHEUS_MULTIPROC_DIR`` after this.
    """
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink()


def drop_dead(path: str | os.PathLike[str]) -> list[int]:
    """Mark every PID with live-gauge files that is no longer running as dead; return those PIDs.

    POSIX only: Windows has no way to ask whether a PID runs without a handle,
    and granian runs one worker there anyway.
    """
    if os.name != "posix":
        return []
    from prometheus_client import multiprocess

    dead = []
    try:
        names = os.listdir(path)
    except FileNotFoundError:
        return []
    for pid in sorted({int(m.group(1)) for name in names if (m := _LIVE_FILE.match(name))}):
        if pid != os.getpid() and not _running(pid):
            multiprocess.mark_process_dead(pid, str(path))
            dead.append(pid)
    return dead


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True
