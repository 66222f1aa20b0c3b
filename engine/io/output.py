"""Writing results safely: atomic files, CSV cells escaped against formula injection, strict JSON.

* :func:`atomic_write` / :func:`write_csv`: the content goes to a temporary file in the target's
  folder, then ``os.replace`` puts it in place, so a reader never sees half a file and of two
  concurrent writers one complete file wins.
* :func:`escape_cell`: a text cell starting with ``= + - @``, a tab or a carriage return gets a
  leading ``'`` so spreadsheets show it as text instead of running it as a formula (numbers,
  including negative ones, are never touched). :func:`unescape_cell` undoes it on reload.
* :func:`strict_json`: JSON without ``NaN``/``Infinity`` (non-finite numbers become ``null``).
* :func:`csv_text`: the escaped CSV as text (dashboard downloads).
* :func:`check_output_path`: refuse an unusable output path before any work starts.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = [
    "FORMULA_PREFIXES",
    "atomic_write",
    "check_output_path",
    "csv_text",
    "escape_cell",
    "escape_frame",
    "finite_or_none",
    "strict_json",
    "unescape_cell",
    "write_csv",
]

#: First characters that make a spreadsheet treat a cell as a formula.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def escape_cell(value: Any) -> Any:
    """A text value made safe for spreadsheets (``"=1+1"`` → ``"'=1+1"``); others unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def unescape_cell(value: Any) -> Any:
    """Undo :func:`escape_cell`."""
    if (
        isinstance(value, str)
        and len(value) > 1
        and value[0] == "'"
        and value[1] in FORMULA_PREFIXES
    ):
        return value[1:]
    return value


def escape_frame(frame):  # noqa: ANN001, ANN201 - pandas DataFrame in, DataFrame out
    """A copy of a DataFrame with every text cell of object/string columns escaped."""
    out = frame.copy()
    for col in out.columns:
        if out[col].dtype == object or str(out[col].dtype) == "string":
            out[col] = out[col].map(escape_cell)
    out.columns = [escape_cell(str(c)) for c in out.columns]
    return out


def csv_text(frame, **kw: Any) -> str:  # noqa: ANN001 - pandas DataFrame
    """The CSV text of ``frame`` (no index) with text cells escaped, e.g. for a download."""
    kw.setdefault("index", False)
    return escape_frame(frame).to_csv(**kw)


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> None:
    """Write ``path`` through ``write(temporary path)`` and move it into place atomically."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_csv(frame, path: str | os.PathLike, **kw: Any) -> None:  # noqa: ANN001
    """``frame.to_csv(path, index=False)`` with text cells escaped, written atomically."""
    safe = escape_frame(frame)
    kw.setdefault("index", False)
    atomic_write(path, lambda tmp: safe.to_csv(tmp, **kw))


def finite_or_none(value: Any) -> Any:
    """``value`` with non-finite floats (also inside lists and dicts) replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return finite_or_none(value.item())
    return value


def strict_json(value: Any, **kw: Any) -> str:
    """``json.dumps`` that never writes ``NaN``/``Infinity`` (they become ``null``)."""
    return json.dumps(finite_or_none(value), allow_nan=False, **kw)


def check_output_path(
    path: str | os.PathLike | None, *, what: str = "--output", folder: bool = False
) -> None:
    """Refuse an output path before any work: a missing parent folder (for a model ``folder``,
    the nearest existing ancestor must be a folder), a file where a folder is wanted (or the
    reverse), or a place that cannot be written.

    Raises:
        ValueError: naming the option and the path.
    """
    if path is None:
        return
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    if folder:  # a model folder's missing parents are created: check the nearest that exists
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"{what} {target}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise ValueError(f"{what} {target}: the folder {parent} is not writable")
    if folder and target.exists() and not target.is_dir():
        raise ValueError(f"{what} {target} is an existing file, not a model folder")
    if not folder and target.is_dir():
        raise ValueError(f"{what} {target} is a folder; give a file name")
