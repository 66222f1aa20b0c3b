"""One walker over files, folders, zip archives, gzip files and uploaded bytes, with one budget.

:func:`walk` turns a source into :class:`Member` files to parse, plus :class:`ReadError` and
:class:`Skipped` entries. Everything it expands is charged to one :class:`Budget` (total bytes,
entries, nesting depth, per-file size), so a bomb stops at the limit instead of at the memory.
Only regular files are read: devices, FIFOs and sockets are refused (checked on the opened file
descriptor, so a FIFO cannot block), as are symbolic links that leave the input folder. Hidden
entries (``.name``, ``__MACOSX``) are listed as skipped and entries whose path leaves an archive
(``..``, absolute) as errors; nothing is dropped silently.
"""

from __future__ import annotations

import io
import os
import stat
import struct
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from engine.io.entries import LimitExceeded, ReadError, ReadLimits, Skipped, StructureReadError
from engine.io.formats import SUPPORTED_FORMATS
from engine.io.streams import CHUNK, Budget, Member, iter_lines, mb, read_whole, wrap

__all__ = [
    "Budget",
    "Member",
    "detect_format",
    "display_name",
    "extract",
    "iter_lines",
    "read_whole",
    "walk",
]

#: Deepest folder nesting walked below an input folder.
_MAX_FOLDER_DEPTH = 64


def detect_format(name: str) -> str | None:
    """The format a file name implies, ignoring a trailing ``.gz``.

    Returns:
        one of ``"cif"``, ``"poscar"``, ``"extxyz"``, ``"json"``, ``"jsonl"``, ``"zip"``, or
        ``None`` for an unknown name.
    """
    low = PurePosixPath(name.replace("\\", "/")).name.lower()
    if low.endswith(".zip"):
        return "zip"
    low = low[:-3] if low.endswith(".gz") else low
    if low.endswith((".cif", ".mcif")):
        return "cif"
    if low.endswith((".vasp", ".poscar")) or low.startswith(("poscar", "contcar")):
        return "poscar"
    if low.endswith((".xyz", ".extxyz")):
        return "extxyz"
    if low.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    if low.endswith(".json"):
        return "json"
    return None


def display_name(path: str | os.PathLike) -> str:
    """The name shown for a path given by a user: its last part (never a server's folders)."""
    text = os.fspath(path).rstrip("/\\")
    return PurePosixPath(text.replace("\\", "/")).name or text


def _hidden(part: str) -> bool:
    return part.startswith(".") or part in ("__MACOSX", "__pycache__")


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "not a regular file"


def _open_regular(path: Path) -> BinaryIO:
    """Open a path for reading only if it is a regular file (checked on the descriptor, opened
    non-blocking so that a FIFO cannot hang the read)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise StructureReadError(f"{_kind(mode)}, not a regular file; not read")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _strip_gz(name: str) -> str:
    return name[:-3] if name.lower().endswith(".gz") else name


class _Walker:
    def __init__(self, limits: ReadLimits, extra: tuple[str, ...] = ()) -> None:
        self.limits = limits
        self.budget = Budget(limits)
        self.extra = tuple(e.lower() for e in extra)

    def fmt(self, name: str) -> str | None:
        """The format of a name; ``"file"`` for one of the ``extra`` suffixes (e.g. ``.csv``)."""
        fmt = detect_format(name)
        if fmt is None and self.extra and name.lower().endswith(self.extra):
            return "file"
        return fmt

    # -- local files --------------------------------------------------------------------------
    def path(
        self, path: Path, label: str, root: Path | None
    ) -> Iterator[Member | ReadError | Skipped]:
        """``root`` is the input folder a link may not leave (None for a path given directly)."""
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            yield ReadError(label, "file not found")
            return
        except OSError as exc:
            yield ReadError(label, f"could not open the file: {exc.strerror or exc}")
            return
        if stat.S_ISLNK(st.st_mode):
            target = path.resolve()
            if root is not None and target != root and root not in target.parents:
                yield ReadError(label, "a symbolic link leading outside the input folder; not read")
                return
            try:
                st = os.stat(target)
            except OSError:
                yield ReadError(label, "a broken symbolic link; not read")
                return
            if stat.S_ISDIR(st.st_mode) and root is not None:
                yield Skipped(label, "a symbolic link to a folder, not followed")
                return
        if stat.S_ISDIR(st.st_mode):
            depth = label.count("/")
            if depth > _MAX_FOLDER_DEPTH:
                yield ReadError(
                    label, f"folders nested more than {_MAX_FOLDER_DEPTH} deep are not read"
                )
                return
            yield from self.folder(path, label, root or path.resolve())
            return
        if not stat.S_ISREG(st.st_mode):
            yield ReadError(label, f"{_kind(st.st_mode)}, not a regular file; not read")
            return
        yield from self.file(path, label, in_folder=root is not None)

    def folder(
        self, folder: Path, label: str, root: Path
    ) -> Iterator[Member | ReadError | Skipped]:
        try:
            children = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            yield ReadError(label, f"could not list the folder: {exc.strerror or exc}")
            return
        for child in children:
            child_label = f"{label.rstrip('/')}/{child.name}"
            if _hidden(child.name):
                yield Skipped(child_label, "hidden")
                continue
            yield from self.path(Path(child.path), child_label, root)

    def file(
        self, path: Path, label: str, *, in_folder: bool
    ) -> Iterator[Member | ReadError | Skipped]:
        self.budget.entry()
        fmt = self.fmt(path.name)
        if fmt is None:
            if in_folder:
                yield Skipped(label)
            else:
                yield ReadError(label, f"unknown file format; supported: {SUPPORTED_FORMATS}")
            return
        if fmt == "zip":
            try:
                fh = _open_regular(path)
            except StructureReadError as exc:
                yield ReadError(label, exc.reason)
                return
            except OSError as exc:
                yield ReadError(label, f"could not open the file: {exc.strerror or exc}")
                return
            with fh:
                size = os.fstat(fh.fileno()).st_size
                if size > self.limits.max_bytes:
                    yield ReadError(
                        label,
                        f"the archive is {mb(size)}, more than the "
                        f"{mb(self.limits.max_bytes)} limit; not read",
                    )
                    return
                yield from self.zip(fh, label, depth=1)
            return

        def opener(cap: int | None, path: Path = path, name: str = path.name) -> BinaryIO:
            return wrap(_open_regular(path), name.lower().endswith(".gz"), self.budget, cap)

        yield Member(label, _strip_gz(path.name), fmt, opener, in_folder)

    # -- bytes and archives ---------------------------------------------------------------------
    def data(self, data: bytes, name: str, label: str) -> Iterator[Member | ReadError | Skipped]:
        self.budget.entry()
        fmt = self.fmt(name)
        if fmt is None:
            yield ReadError(label, f"unknown file format; supported: {SUPPORTED_FORMATS}")
            return
        if len(data) > self.limits.max_bytes:
            yield ReadError(
                label,
                f"the file is {mb(len(data))}, more than the "
                f"{mb(self.limits.max_bytes)} limit; not read",
            )
            return
        if fmt == "zip":
            yield from self.zip(io.BytesIO(data), label, depth=1)
            return

        def opener(cap: int | None) -> BinaryIO:
            return wrap(io.BytesIO(data), name.lower().endswith(".gz"), self.budget, cap)

        yield Member(label, _strip_gz(display_name(name)), fmt, opener, False)

    def zip(self, fh: BinaryIO, label: str, depth: int) -> Iterator[Member | ReadError | Skipped]:
        try:
            n = _zip_entry_count(fh)
            if n > self.limits.max_entries:
                yield ReadError(
                    label,
                    f"the archive lists {n} entries, more than the limit of "
                    f"{self.limits.max_entries}; not read",
                )
                return
            zf = zipfile.ZipFile(fh)
        except (OSError, zipfile.BadZipFile, ValueError, EOFError) as exc:
            yield ReadError(label, f"could not open the archive: {exc}")
            return
        with zf:
            for info in sorted(zf.infolist(), key=lambda i: i.filename):
                if info.is_dir():
                    continue
                entry = f"{label}/{info.filename}"
                parts = PurePosixPath(info.filename.replace("\\", "/")).parts
                if (
                    info.filename.startswith(("/", "\\"))
                    or ".." in parts
                    or (parts and ":" in parts[0])
                ):
                    yield ReadError(
                        entry,
                        "the entry's path leaves the archive ('..' or an absolute path); not read",
                    )
                    continue
                if any(_hidden(p) for p in parts):
                    yield Skipped(entry, "hidden")
                    continue
                if stat.S_ISLNK(info.external_attr >> 16):
                    yield ReadError(entry, "a symbolic link, not a regular file; not read")
                    continue
                self.budget.entry()
                name = parts[-1]
                fmt = self.fmt(name)
                if fmt is None:
                    yield Skipped(entry)
                    continue
                if fmt == "zip":
                    if depth >= self.limits.max_depth:
                        yield ReadError(
                            entry,
                            f"archives nested more than {self.limits.max_depth} deep are not read",
                        )
                        continue
                    try:
                        with wrap(zf.open(info), False, self.budget, self.limits.file_cap()) as f:
                            inner = f.read()
                    except LimitExceeded as exc:
                        if exc.total:
                            raise
                        yield ReadError(entry, exc.reason)
                        continue
                    except (
                        OSError,
                        zipfile.BadZipFile,
                        RuntimeError,
                        ValueError,
                        zlib.error,
                        EOFError,
                    ) as exc:
                        yield ReadError(entry, f"could not unpack the entry: {exc}")
                        continue
                    yield from self.zip(io.BytesIO(inner), entry, depth + 1)
                    continue

                def opener(
                    cap: int | None,
                    info: zipfile.ZipInfo = info,
                    gz: bool = name.lower().endswith(".gz"),
                ) -> BinaryIO:
                    return wrap(zf.open(info), gz, self.budget, cap)

                yield Member(entry, _strip_gz(info.filename), fmt, opener)


def _zip_entry_count(fh: BinaryIO) -> int:
    """Entries an archive's end record declares, read before ``zipfile`` builds its list
    (0xFFFF when ZIP64; 0 when the record is missing, for ``zipfile`` to report)."""
    fh.seek(0, os.SEEK_END)
    size = fh.tell()
    tail_len = min(size, 22 + 0xFFFF)
    fh.seek(size - tail_len)
    tail = fh.read(tail_len)
    fh.seek(0)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + 22 > len(tail):
        return 0
    return struct.unpack("<H", tail[at + 10 : at + 12])[0]


Source = str | os.PathLike | bytes | tuple | Iterable


def walk(
    source: Source,
    limits: ReadLimits,
    *,
    name: str | None = None,
    budget: Budget | None = None,
    extra: tuple[str, ...] = (),
) -> Iterator[Member | ReadError | Skipped]:
    """The files of ``source``, depth first in name order, charged to one budget.

    Args:
        source: a path (file or folder); ``bytes`` with ``name``; a ``(name, bytes)`` upload; an
            object with ``.name`` and ``.read()``; or an iterable of these.
        limits: the bounds of this read.
        name: the file name of raw ``bytes``, or the label shown for a path.
        budget: share a budget with an enclosing read (default: a new one).
        extra: file-name suffixes (e.g. ``(".csv",)``) also yielded as members, format
            ``"file"``, instead of being skipped.

    Yields:
        :class:`Member` files to parse, :class:`ReadError` for entries that cannot be read, and
        :class:`Skipped` for files not read on purpose. Past the total byte or entry limit one
        error is yielded and the walk stops.

    Raises:
        TypeError: for ``bytes`` without ``name`` or an unsupported source type.
    """
    walker = _Walker(limits, extra)
    if budget is not None:
        walker.budget = budget
    yield from _walk(walker, source, name)


def _walk(
    walker: _Walker, source: Source, name: str | None
) -> Iterator[Member | ReadError | Skipped]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        if not name:
            raise TypeError("raw bytes need name= (the file name decides the format)")
        yield from walker.data(bytes(source), name, display_name(name))
    elif (
        isinstance(source, tuple)
        and len(source) == 2
        and isinstance(source[0], str)
        and isinstance(source[1], (bytes, bytearray, memoryview))
    ):
        yield from walker.data(bytes(source[1]), source[0], display_name(source[0]))
    elif isinstance(source, (str, os.PathLike)):
        yield from walker.path(Path(source), name or display_name(source), None)
    elif hasattr(source, "read") and hasattr(source, "name"):  # e.g. a Streamlit UploadedFile
        label = display_name(str(source.name))
        yield from walker.data(source.read(), str(source.name), label)
    elif isinstance(source, Iterable):
        for item in source:
            yield from _walk(walker, item, None)
    else:
        raise TypeError(
            f"cannot read structures from a {type(source).__name__}: give a path, "
            "(name, bytes), bytes with name=, or a list of these"
        )


def extract(
    source: Source, dest: Path, limits: ReadLimits, *, extra: tuple[str, ...] = (".csv",)
) -> list[ReadError | Skipped]:
    """Unpack the structure files (and ``extra`` files) of ``source`` under ``dest``.

    Each member lands at its path inside the source without the top-level name (``data.zip/a/
    x.cif`` → ``dest/a/x.cif``; ``.gz`` members decompressed), through :func:`walk` and its one
    budget, so the same limits, refusals and listings apply as to reading.

    Returns:
        what was not unpacked: errors (with reasons) and skipped entries.
    """
    problems: list[ReadError | Skipped] = []
    root = dest.resolve()
    try:
        for got in walk(source, limits, extra=extra):
            if not isinstance(got, Member):
                problems.append(got)
                continue
            rel = got.label.split("/", 1)[1] if "/" in got.label else got.name
            rel = rel[:-3] if rel.lower().endswith(".gz") else rel
            target = (root / rel).resolve()
            if root not in target.parents:
                problems.append(ReadError(got.label, "the entry's path leaves the archive"))
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with got.open(limits.file_cap()) as src, open(target, "wb") as out:
                    while chunk := src.read(CHUNK):
                        out.write(chunk)
            except LimitExceeded as exc:
                target.unlink(missing_ok=True)
                if exc.total:
                    raise
                problems.append(ReadError(got.label, exc.reason))
            except (OSError, zipfile.BadZipFile, RuntimeError, EOFError, zlib.error) as exc:
                target.unlink(missing_ok=True)
                problems.append(ReadError(got.label, f"could not unpack the entry: {exc}"))
    except LimitExceeded as exc:
        problems.append(
            ReadError(
                display_name(str(getattr(source, "name", "")) or "upload")
                if not isinstance(source, tuple)
                else display_name(source[0]),
                exc.reason,
            )
        )
    return problems
