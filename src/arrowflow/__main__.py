"""``python -m arrowflow``: the same command line as the ``arrowflow`` entry point."""

from __future__ import annotations

from arrowflow.cli import main

if __name__ == "__main__":
    main()
