"""The dashboard's activity, shared with its training jobs through one small file in the home
folder: a job trains on every core while no page runs, and on the cores the dashboard leaves it
(:func:`job_threads`) while one does (:func:`threads_now`, applied between batches by
:class:`engine.training.callbacks.AdaptiveThreads`), so that the two never oversubscribe the
cores.
"""

from __future__ import annotations

import os
import time

from engine.core.config import home_dir

#: File (in the home folder) holding the number of pages the dashboard is running; its time
#: says when that last changed.
ACTIVITY_FILE = "dashboard-activity"
#: A count this old (s) is stale: its dashboard stopped while a page ran.
STALE_S = 600.0


def note_dashboard_activity(running: int) -> None:
    """Record that the dashboard now runs ``running`` pages (called as each page starts and
    ends). Best effort: where the home folder cannot be written, pages still run (and jobs,
    which could not be started there either, see an idle dashboard)."""
    path = home_dir() / ACTIVITY_FILE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(str(running))
    except OSError:
        pass


def dashboard_busy(quiet_s: float = 5.0) -> bool:
    """Whether a dashboard page runs now or ran in the last ``quiet_s`` seconds."""
    path = home_dir() / ACTIVITY_FILE
    try:
        age = time.time() - path.stat().st_mtime
        running = path.read_text().strip() not in ("", "0")
    except OSError:  # no dashboard on this home folder
        return False
    return age < quiet_s or (running and age < STALE_S)


def job_threads() -> int:
    """Torch threads of a training job while the dashboard is busy: the cores it leaves free
    (``$CRYSTAL_SCREEN_THREADS``, which the dashboard sets for its own process and its jobs
    inherit; one core when unset), at least one."""
    dashboard = int(os.environ.get("CRYSTAL_SCREEN_THREADS", 1))
    return max(1, (os.cpu_count() or 2) - dashboard)


def threads_now() -> int:
    """Torch threads a training job should use now: every core while the dashboard is idle,
    :func:`job_threads` while it is busy."""
    return job_threads() if dashboard_busy() else (os.cpu_count() or 1)
