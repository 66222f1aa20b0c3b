"""Uploaded files → a folder on disk that :func:`engine.load_dataset` (and a training job) reads.

Uploads are saved per browser session under ``home_dir()/uploads/<session>/<hash of names and
bytes>/upload/``: the same upload in one session lands in the same folder, and a background
training job started from it can read it after the page is closed. Zips that hold a label CSV
are unpacked (through :func:`engine.io.archive.extract`, the same walker and budget as every
read) so the labels can be joined to the structures; other files are stored as uploaded and read
by the engine's reader.

Clean-up: a session's folder is removed by :func:`remove_session_uploads` (called when a session
ends) and every folder not used for :data:`UPLOAD_TTL_S` seconds is removed by
:func:`sweep_uploads` (run on every save). One session may hold at most
:data:`SESSION_BUDGET_BYTES` of uploads.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from pathlib import Path, PurePosixPath

#: Most bytes one session's uploads may occupy on disk (unpacked zips included).
SESSION_BUDGET_BYTES = 1024**3
#: Seconds after its last use when a session's upload folder is removed.
UPLOAD_TTL_S = 6 * 3600
_STAMP = ".last_used"
_PROBLEMS = ".problems.json"


class UploadError(ValueError):
    """An upload cannot be saved; the message names the file."""


def _clean_name(name: str) -> str:
    base = PurePosixPath(name.replace("\\", "/")).name
    base = "".join(c if c.isalnum() or c in "._-+=@" else "_" for c in base).lstrip(".")
    return base or "upload"


def _clean_session(session: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", session)[:64] or "shared"


def upload_key(files: list[tuple[str, bytes]]) -> str:
    """A short hash of the names and contents of the uploaded files."""
    h = hashlib.sha256()
    for name, data in sorted(files):
        h.update(name.encode())
        h.update(b"\0")
        h.update(hashlib.sha256(data).digest())
    return h.hexdigest()[:16]


def default_root() -> Path:
    """Where upload folders live: ``home_dir()/uploads``."""
    from engine import home_dir

    return home_dir() / "uploads"


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def sweep_uploads(root: Path | None = None, *, max_age_s: float = UPLOAD_TTL_S) -> list[Path]:
    """Remove session upload folders not used for ``max_age_s`` seconds; returns them."""
    root = default_root() if root is None else root
    if not root.is_dir():
        return []
    now = time.time()
    removed = []
    for session in root.iterdir():
        if not session.is_dir() or session.is_symlink():
            continue
        stamp = session / _STAMP
        last = (stamp if stamp.exists() else session).stat().st_mtime
        if now - last > max_age_s:
            shutil.rmtree(session, ignore_errors=True)
            removed.append(session)
    return removed


def remove_session_uploads(session: str, root: Path | None = None) -> None:
    """Remove every upload of one session (when the session ends)."""
    root = default_root() if root is None else root
    shutil.rmtree(root / _clean_session(session), ignore_errors=True)


def _zip_has_csv(data: bytes, name: str) -> bool:
    from engine import DEFAULT_LIMITS, Member, walk

    return any(
        isinstance(m, Member) and m.fmt == "file"
        for m in walk((name, data), DEFAULT_LIMITS, extra=(".csv",))
    )


def _dataset_root(folder: Path) -> Path:
    """The folder to hand to ``load_dataset``: where the label CSV is, if there is one."""
    if (folder / "id_prop.csv").is_file() or list(folder.glob("*.csv")):
        return folder
    csvs = sorted(p for p in folder.rglob("*.csv") if not p.name.startswith("."))
    preferred = [p for p in csvs if p.name == "id_prop.csv"] or csvs
    return preferred[0].parent if preferred else folder


def save_upload(
    files: list[tuple[str, bytes]],
    root: Path | None = None,
    *,
    session: str = "shared",
    limits=None,  # noqa: ANN001 - engine.io.ReadLimits
    budget_bytes: int = SESSION_BUDGET_BYTES,
) -> Path:
    """Save uploaded ``(name, bytes)`` files and return the path to load them from.

    Args:
        files: the uploaded files.
        root: where upload folders live (default :func:`default_root`).
        session: the browser session the upload belongs to (its own folder).
        limits: bounds for unpacking zips (``engine.io.ReadLimits``; default its defaults).
        budget_bytes: most bytes the session's uploads may occupy.

    Returns:
        A single JSON-lines file's own path (so that its label columns are kept), or the folder
        holding the files (zips with a CSV unpacked). Entries of those zips that were not
        unpacked are given by :func:`upload_problems`.

    Raises:
        UploadError: nothing was uploaded, or the session's size budget would be exceeded.
    """
    from engine import DEFAULT_LIMITS, extract

    if not files:
        raise UploadError("no file was uploaded")
    limits = limits or DEFAULT_LIMITS
    root = default_root() if root is None else root
    sweep_uploads(root)
    session_dir = root / _clean_session(session)
    folder = session_dir / upload_key(files) / "upload"
    done = folder.parent / ".complete"
    problems: list = []
    if not done.exists():
        incoming = sum(len(data) for _, data in files)
        used = _size(session_dir) if session_dir.is_dir() else 0
        if used + incoming > budget_bytes:
            raise UploadError(
                f"this session's uploads would take {(used + incoming) / 1024**2:.0f} MB, more "
                f"than the {budget_bytes / 1024**2:.0f} MB allowed per session; remove "
                "earlier uploads by reloading the page, or upload less"
            )
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in files:
            clean = _clean_name(name)
            if clean.lower().endswith(".zip") and _zip_has_csv(data, clean):
                problems += extract((clean, data), folder / clean[:-4], limits)
            else:
                (folder / clean).write_bytes(data)
        if _size(session_dir) > budget_bytes:
            shutil.rmtree(folder.parent, ignore_errors=True)
            raise UploadError(
                f"the upload unpacks to more than this session's "
                f"{budget_bytes / 1024**2:.0f} MB allowance; upload less"
            )
        (folder.parent / _PROBLEMS).write_text(
            json.dumps(
                [
                    {"source": p, "reason": p.reason}
                    if isinstance(p, str)
                    else {"source": p.source, "reason": p.reason}
                    for p in problems
                ]
            )
        )
        done.write_text("ok")
    session_dir.mkdir(parents=True, exist_ok=True)
    (session_dir / _STAMP).write_text(str(time.time()))
    names = [_clean_name(n) for n, _ in files]
    if len(names) == 1 and names[0].lower().endswith((".jsonl", ".jsonl.gz", ".ndjson")):
        return folder / names[0]
    return _dataset_root(folder)


def upload_problems(path: str | Path) -> list[dict]:
    """Entries of the upload at ``path`` (as :func:`save_upload` returned it) that were not
    unpacked: ``{"source", "reason"}`` each, named by uploaded file and entry."""
    for parent in Path(path).parents:
        if (parent / _PROBLEMS).is_file():
            try:
                return json.loads((parent / _PROBLEMS).read_text())
            except (OSError, ValueError):
                return []
    return []
