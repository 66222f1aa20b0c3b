"""Detached worker processes: start one with its log, tell whether it lives, stop it.

A worker is ``python -m <module> <job_dir>`` in its own session (it survives a page reload or a
restart of the dashboard), with stdout and stderr appended to a log file. Liveness
and stopping use :mod:`psutil`: a zombie, or a later process that got the same pid (its start
time differs), counts as gone. Shared by the training and the physics jobs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import psutil

from engine.core.config import PROJECT_ROOT, home_dir

__all__ = ["WorkerProcess", "alive", "launch", "terminate"]

#: Seconds allowed for the processes left after SIGKILL to disappear.
_KILL_WAIT_S = 5.0

# Popen objects of workers started by this process, so that finished children are reaped (a
# zombie would otherwise linger until this process ends).
_CHILDREN: dict[int, subprocess.Popen] = {}


class WorkerProcess(NamedTuple):
    """A started worker: its pid and start time (``psutil.Process.create_time``, seconds since
    the epoch; None if it had already ended when asked)."""

    pid: int
    created: float | None


def launch(module: str, directory: Path, log: Path, *, python: str | None = None) -> WorkerProcess:
    """Start ``python -m module directory`` detached, its output appended to ``log``.

    Args:
        module: the worker module, e.g. ``engine.apps.jobs.worker``.
        directory: the job directory (the worker's only argument).
        log: file that receives the worker's stdout and stderr.
        python: interpreter (default: the running one).
    """
    env = dict(os.environ, CRYSTAL_SCREEN_HOME=str(home_dir()))
    env.setdefault("PYTHONUNBUFFERED", "1")
    existing = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(PROJECT_ROOT) + (os.pathsep + existing if existing else "")
    with open(log, "ab") as handle:
        proc = subprocess.Popen(
            [python or sys.executable, "-m", module, str(directory)],
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            cwd=str(PROJECT_ROOT),
            env=env,
            start_new_session=True,
            close_fds=True,
        )
    _CHILDREN[proc.pid] = proc
    try:
        created = psutil.Process(proc.pid).create_time()
    except psutil.Error:
        created = None
    return WorkerProcess(proc.pid, created)


def _process(pid: int | None, created: float | None) -> psutil.Process | None:
    """The running process ``pid`` started at ``created``, or None (gone, zombie, other)."""
    if not pid:
        return None
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:  # ended; poll() reaped it
        del _CHILDREN[pid]
        return None
    try:
        proc = psutil.Process(pid)
        if created is not None and abs(proc.create_time() - created) > 1.0:
            return None  # the pid was reused by a later process
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
    except psutil.NoSuchProcess:
        return None
    except psutil.AccessDenied:  # another user's process holds the pid: it lives
        pass
    return proc


def alive(pid: int | None, created: float | None = None) -> bool:
    """Whether the worker ``pid`` (started at ``created``, if known) is still running."""
    return _process(pid, created) is not None


def terminate(pid: int | None, created: float | None, grace_s: float) -> bool:
    """Stop a worker: SIGTERM, then SIGKILL to it and its children after ``grace_s`` seconds.

    The worker may use the grace period to stop cleanly (a training job saves its best epoch).

    Returns:
        True if the worker had to be killed, False if it ended by itself (or was gone).
    """
    proc = _process(pid, created)
    if proc is None:
        return False
    try:
        family = [proc, *proc.children(recursive=True)]
        proc.terminate()
    except psutil.NoSuchProcess:
        return False
    _, still = psutil.wait_procs([proc], timeout=max(grace_s, 0.0))
    killed = bool(still)
    try:
        family += proc.children(recursive=True) if still else []
    except psutil.NoSuchProcess:
        pass
    left = [p for p in family if p.is_running()]
    for p in left:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(left, timeout=_KILL_WAIT_S)
    child = _CHILDREN.pop(proc.pid, None)
    if child is not None:
        child.poll()
    return killed
