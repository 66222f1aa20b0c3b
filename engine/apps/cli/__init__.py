"""The command line, ``python -m engine COMMAND``: :mod:`~engine.apps.cli.main` builds the parser
from one module per command (``add_parser`` and ``run``); shared helpers are in ``common``."""
