"""``python -m engine dashboard``: start the Streamlit dashboard (the ``[dashboard]`` extra)."""

from __future__ import annotations


def add_parser(sub) -> None:
    """Add ``dashboard`` to the subparsers ``sub``."""
    p = sub.add_parser(
        "dashboard",
        help="start the Streamlit dashboard (needs the [dashboard] extra)",
        description="Start the dashboard on http://localhost:8501; "
        "further arguments go to Streamlit, e.g. --server.port 8600.",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    """Launch Streamlit with ``args.streamlit_args``; its exit code."""
    from importlib.util import find_spec

    missing = [m for m in ("streamlit", "plotly", "py3Dmol") if find_spec(m) is None]
    if missing:
        raise RuntimeError(
            f"the dashboard needs {', '.join(missing)}: pip install 'crystal-screen[dashboard]'"
        )
    from dashboard.launch import main as launch

    return launch(args.streamlit_args)
