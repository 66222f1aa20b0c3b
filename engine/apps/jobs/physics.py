"""Background physics jobs: the thermal route for many structures in a separate process.

Like the training jobs of :mod:`engine.apps.jobs.training` (a process started by
:mod:`engine.apps.jobs.launcher`, talking through files), but in their own folder
``home_dir()/physics-jobs/<job_id>/`` so that training-job listings never see them:

    structures.json   the structures (ids and pymatgen dicts) and settings (written once)
    status.json       state (running → done | failed), pid and its start time, done/total,
                      error
    results.jsonl     one :meth:`ThermalResult.to_json` per line, appended as they finish
    log.txt           the process's stdout and stderr
"""

from __future__ import annotations

import json
import secrets
import sys
import traceback
from datetime import datetime, timezone
from pathlib import Path

from engine.apps.jobs import launcher
from engine.core.config import home_dir
from engine.io import NamedStructure
from engine.physics.schema import ThermalResult, ThermalSettings

REQUEST_FILE, STATUS_FILE, RESULTS_FILE, LOG_FILE = (
    "structures.json",
    "status.json",
    "results.jsonl",
    "log.txt",
)


def physics_jobs_dir() -> Path:
    """Folder of the physics jobs: ``home_dir()/physics-jobs``."""
    return home_dir() / "physics-jobs"


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


def _status(directory: Path, **fields) -> dict:
    try:
        status = json.loads((directory / STATUS_FILE).read_text())
    except (OSError, ValueError):
        status = {}
    status.update(fields)
    _write_json(directory / STATUS_FILE, status)
    return status


def start_thermal_job(
    items: list[NamedStructure],
    settings: ThermalSettings | None = None,
    *,
    python: str | None = None,
) -> str:
    """Start :func:`engine.physics.thermal_properties` on ``items`` in a background process and
    return the job id at once."""
    settings = settings or ThermalSettings()
    job_id = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)
    directory = physics_jobs_dir() / job_id
    directory.mkdir(parents=True)
    _write_json(
        directory / REQUEST_FILE,
        {
            "settings": settings.model_dump(),
            "items": [
                {"id": it.id, "source": it.source, "structure": it.structure.as_dict()}
                for it in items
            ],
        },
    )
    _status(directory, id=job_id, status="running", done=0, total=len(items), error=None)
    worker = launcher.launch(
        "engine.apps.jobs.physics", directory, directory / LOG_FILE, python=python
    )
    _status(directory, pid=worker.pid, pid_created=worker.created)
    return job_id


def thermal_job(job_id: str) -> tuple[dict, list[ThermalResult]]:
    """The status (``status``, ``done``, ``total``, ``error``) and the results so far of a job.

    A job whose process is gone while it says ``running`` is reported as failed."""
    if not job_id or "/" in job_id or job_id.startswith("."):
        raise ValueError(f"invalid physics job id {job_id!r}")
    directory = physics_jobs_dir() / job_id
    try:
        status = json.loads((directory / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return {"id": job_id, "status": "failed", "error": f"no physics job {job_id!r}"}, []
    results = []
    if (directory / RESULTS_FILE).exists():
        for line in (directory / RESULTS_FILE).read_text().splitlines():
            try:
                results.append(ThermalResult.from_json(json.loads(line)))
            except (ValueError, TypeError, KeyError):
                break  # a line being written
    pid = status.get("pid")
    if (
        status.get("status") == "running"
        and pid
        and not launcher.alive(pid, status.get("pid_created"))
    ):
        status = json.loads((directory / STATUS_FILE).read_text())  # it may have just finished
        if status.get("status") == "running":
            status = _status(
                directory,
                status="failed",
                error="the job's process ended without reporting a result",
            )
    return status, results


def run_thermal_job(directory: Path) -> int:
    """Run a job in this process; the outcome is recorded in ``status.json``."""
    from pymatgen.core import Structure

    from engine.physics.thermal import thermal_properties

    try:
        request = json.loads((directory / REQUEST_FILE).read_text())
        settings = ThermalSettings(**request["settings"])
        items = [
            NamedStructure(r["id"], Structure.from_dict(r["structure"]), r["source"])
            for r in request["items"]
        ]
        with open(directory / RESULTS_FILE, "a") as out:
            for i, result in enumerate(thermal_properties(items, settings), 1):
                out.write(json.dumps(result.to_json()) + "\n")
                out.flush()
                _status(directory, done=i)
        _status(directory, status="done")
        return 0
    except BaseException as exc:  # noqa: BLE001 - every failure must end up in status.json
        traceback.print_exc()
        _status(directory, status="failed", error=f"{type(exc).__name__}: {exc}")
        return 1


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python -m engine.apps.jobs.physics <job_dir>", file=sys.stderr)
        sys.exit(2)
    sys.exit(run_thermal_job(Path(sys.argv[1])))
