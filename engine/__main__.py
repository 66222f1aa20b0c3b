"""``python -m engine COMMAND``: the command line (:mod:`engine.apps.cli`)."""

import sys

from engine.apps.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
