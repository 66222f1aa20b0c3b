"""Budgeted byte streams: every byte a read expands is charged to one :class:`Budget`.

:class:`Member` is one file found by :func:`engine.io.archive.walk`; its ``open`` gives a
buffered stream (gunzipped when the name ends in ``.gz``) whose reads are charged to the budget
of the whole read and to a per-stream cap, so a compression bomb stops at a limit, not at the
memory. :func:`iter_lines` reads such a stream line by line with a cap per line.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from engine.io.entries import LimitExceeded, ReadLimits

__all__ = ["CHUNK", "Budget", "Member", "iter_lines", "mb", "read_whole", "wrap"]

#: Bytes read at a time.
CHUNK = 1 << 16
_MB = 1024**2


def mb(n: int) -> str:
    return f"{n / _MB:.0f} MB" if n >= _MB else f"{n} bytes"


class Budget:
    """What one read may still expand: total bytes and entries (see :class:`ReadLimits`)."""

    def __init__(self, limits: ReadLimits) -> None:
        self.limits = limits
        self.bytes = 0
        self.entries = 0

    def charge(self, n: int) -> None:
        """Count ``n`` expanded bytes; raises :class:`LimitExceeded` (total) past ``max_bytes``."""
        self.bytes += n
        if self.bytes > self.limits.max_bytes:
            raise LimitExceeded(
                f"the input expands to more than {mb(self.limits.max_bytes)} in total (the "
                "--max-bytes limit; a compression bomb?); reading stopped here",
                total=True,
            )

    def entry(self) -> None:
        """Count one file or archive entry; raises :class:`LimitExceeded` past ``max_entries``."""
        self.entries += 1
        if self.entries > self.limits.max_entries:
            raise LimitExceeded(
                f"the input holds more than {self.limits.max_entries} files or archive entries; "
                "reading stopped here",
                total=True,
            )


class _Charged(io.RawIOBase):
    """A raw stream that charges every byte read to a budget and to a per-stream cap."""

    def __init__(self, raw: BinaryIO, budget: Budget, cap: int | None) -> None:
        self.raw, self.budget, self.cap, self.seen = raw, budget, cap, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # noqa: ANN001 - memoryview/bytearray
        data = self.raw.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.seen += n
        self.budget.charge(n)
        if self.cap is not None and self.seen > self.cap:
            raise LimitExceeded(
                f"the file expands to more than {mb(self.cap)} (the per-file "
                "limit; a compression bomb?); not read"
            )
        return n

    def close(self) -> None:
        try:
            self.raw.close()
        finally:
            super().close()


@dataclass(frozen=True)
class Member:
    """One regular file to parse.

    Attributes:
        label: shown to users, e.g. ``"upload.zip/a/b.cif"`` (never a server folder).
        name: its file name inside the container, ``.gz`` removed (decides the format and id).
        fmt: :func:`detect_format` of the name.
        opener: opens the decompressed content as a binary stream, charged to the budget; call
            with ``cap`` (bytes, or None for streamed JSON lines bounded by the total budget).
        in_container: found in a folder or archive (True) or given directly (False).
    """

    label: str
    name: str
    fmt: str
    opener: Callable[[int | None], BinaryIO]
    in_container: bool = True

    def open(self, cap: int | None) -> BinaryIO:
        """The content as a buffered binary stream (see ``opener``)."""
        return self.opener(cap)


def read_whole(member: Member, limits: ReadLimits) -> bytes:
    """All bytes of a member, refused past :meth:`ReadLimits.file_cap`."""
    cap = limits.file_cap()
    with member.open(cap) as fh:
        return fh.read()


def iter_lines(fh: BinaryIO, max_line: int) -> Iterator[tuple[int, bytes | None]]:
    """``(line number, bytes)`` of a binary stream; ``None`` for a line over ``max_line`` bytes
    (the rest of that line is read and dropped, bounded by the budget, and reading goes on)."""
    lineno = 0
    while True:
        line = fh.readline(max_line + 1)
        if not line:
            return
        lineno += 1
        if len(line) > max_line and not line.endswith(b"\n"):
            while True:
                rest = fh.readline(CHUNK)
                if not rest or rest.endswith(b"\n"):
                    break
            yield lineno, None
            continue
        yield lineno, line


def wrap(raw: BinaryIO, gz: bool, budget: Budget, cap: int | None) -> BinaryIO:
    stream = gzip.GzipFile(fileobj=raw, mode="rb") if gz else raw
    return io.BufferedReader(_Charged(stream, budget, cap), buffer_size=CHUNK)
