"""The console script. Importing the CLI pulls in aiohttp and SQLAlchemy, which takes about a
second; a Ctrl-C in that second must end in the same one line as one during a command."""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from sync.cli import main as run_cli
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    run_cli()
