"""The io layer stays a layer: importing and using ``engine.io`` loads nothing above it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_engine_io_imports_no_higher_layer():
    code = (
        "import sys, engine.io\n"
        "engine.io.read_structures(('a.jsonl', b'{}'))\n"
        "bad = sorted(m for m in sys.modules if m == 'torch' or (m.startswith('engine.') and "
        "not m.startswith(('engine.io', 'engine.core'))))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_no_private_reader_names_cross_modules():
    """``_Reader``, ``_stem``, ``_hidden`` and the old zip walkers are gone for good: no module
    imports a private name of the io layer, and only ``engine.io`` walks archives."""
    imports = re.compile(r"from engine\.(?:structures|io)[\w.]* import (\([^)]*\)|[^\n]*)")
    for path in [*ROOT.joinpath("engine").rglob("*.py"), *ROOT.joinpath("dashboard").rglob("*.py")]:
        text = path.read_text()
        rel = path.relative_to(ROOT).as_posix()
        for match in imports.finditer(text):
            names = re.findall(r"\b\w+\b", match.group(1))
            assert not [n for n in names if n.startswith("_")], (rel, names)
        for name in ("_Reader", "_zip_units", "_jsonl_units", "def _unpack"):
            assert name not in text, f"{rel} still has {name}"
        if not rel.startswith("engine/io/") and rel != "dashboard/views/results.py":
            assert "zipfile.ZipFile(" not in text, f"{rel} opens zips itself"
