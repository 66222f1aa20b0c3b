"""Uploaded files → a folder on disk that :func:`engine.load_dataset` (and a training job) reads.

Uploads are saved under ``home_dir()/uploads/<hash of names and bytes>/``: the same upload always
lands in the same folder, and a background training job can read it after the browser session
ends. A zip that holds a label CSV (``id_prop.csv`` or any ``*.csv``) is unpacked so that the
labels can be joined to the structures; other zips are left whole for the engine's own (size
limited) archive reader.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path, PurePosixPath

#: Largest total uncompressed size unpacked from one uploaded zip (as the engine's reader).
MAX_UNPACKED_BYTES = 500 * 1024**2


class UploadError(ValueError):
    """An upload cannot be saved; the message names the file."""


def _clean_name(name: str) -> str:
    base = PurePosixPath(name.replace("\\", "/")).name
    base = "".join(c if c.isalnum() or c in "._-+=@" else "_" for c in base).lstrip(".")
    return base or "upload"


def upload_key(files: list[tuple[str, bytes]]) -> str:
    """A short hash of the names and contents of the uploaded files."""
    h = hashlib.sha256()
    for name, data in sorted(files):
        h.update(name.encode())
        h.update(b"\0")
        h.update(hashlib.sha256(data).digest())
    return h.hexdigest()[:16]


def _zip_has_csv(data: bytes) -> bool:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            return any(n.lower().endswith(".csv") and "__MACOSX" not in n for n in zf.namelist())
    except zipfile.BadZipFile:
        return False


def _unpack(data: bytes, name: str, dest: Path) -> None:
    """Unpack a zip safely: no absolute paths, no ``..``, a size cap, hidden files skipped."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise UploadError(f"{name}: not a valid zip archive ({exc})") from None
    total = 0
    with zf:
        for info in zf.infolist():
            if info.is_dir():
                continue
            parts = PurePosixPath(info.filename.replace("\\", "/")).parts
            if (
                not parts
                or info.filename.startswith(("/", "\\"))
                or any(p in ("..", "") or p.startswith(".") or p == "__MACOSX" for p in parts)
            ):
                continue
            total += info.file_size
            if total > MAX_UNPACKED_BYTES:
                raise UploadError(
                    f"{name} unpacks to more than {MAX_UNPACKED_BYTES // 1024**2} MB; split it "
                    "into smaller archives"
                )
            target = dest.joinpath(*parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src:
                target.write_bytes(src.read(MAX_UNPACKED_BYTES + 1))


def _dataset_root(folder: Path) -> Path:
    """The folder to hand to ``load_dataset``: where the label CSV is, if there is one."""
    if (folder / "id_prop.csv").is_file() or list(folder.glob("*.csv")):
        return folder
    csvs = sorted(p for p in folder.rglob("*.csv") if not p.name.startswith("."))
    preferred = [p for p in csvs if p.name == "id_prop.csv"] or csvs
    return preferred[0].parent if preferred else folder


def save_upload(files: list[tuple[str, bytes]], root: Path | None = None) -> Path:
    """Save uploaded ``(name, bytes)`` files and return the path to load them from.

    Args:
        files: the uploaded files.
        root: where upload folders live (default ``home_dir()/uploads``).

    Returns:
        A single JSON-lines file's own path (so that its label columns are kept), or the folder
        holding the files (with any zip that contains a CSV unpacked).

    Raises:
        UploadError: nothing was uploaded, or a zip cannot be unpacked.
    """
    if not files:
        raise UploadError("no file was uploaded")
    if root is None:
        from engine.config import home_dir

        root = home_dir() / "uploads"
    folder = root / upload_key(files)
    done = folder / ".complete"
    names = []
    if not done.exists():
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in files:
            clean = _clean_name(name)
            if clean.lower().endswith(".zip") and _zip_has_csv(data):
                _unpack(data, name, folder / clean[:-4])
            else:
                (folder / clean).write_bytes(data)
        done.write_text("ok")
    names = [_clean_name(n) for n, _ in files]
    if len(names) == 1 and names[0].lower().endswith((".jsonl", ".jsonl.gz", ".ndjson")):
        return folder / names[0]
    return _dataset_root(folder)
