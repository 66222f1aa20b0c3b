"""``crystal-screen dashboard``: start the Streamlit app from wherever the package is installed.

The settings of ``.streamlit/config.toml`` (shipped in the package as ``streamlit_config.toml``)
are passed as command-line flags, since Streamlit only reads that file from the working folder.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "streamlit_config.toml"


def config_flags(path: Path = CONFIG) -> list[str]:
    """``--section.option=value`` flags for every setting of a Streamlit config file."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    settings = tomllib.loads(path.read_text(encoding="utf-8"))
    flags = []
    for section, options in settings.items():
        for option, value in options.items():
            text = str(value).lower() if isinstance(value, bool) else str(value)
            flags.append(f"--{section}.{option}={text}")
    return flags


def command(extra: list[str]) -> list[str]:
    """The ``streamlit run`` command line (``extra``: more Streamlit flags, e.g. a port)."""
    return [sys.executable, "-m", "streamlit", "run", str(HERE / "app.py"), *config_flags(), *extra]


def main(extra: list[str]) -> int:
    """Run the dashboard until it is stopped; returns Streamlit's exit code."""
    try:
        return subprocess.call(command(extra))
    except KeyboardInterrupt:
        return 130
