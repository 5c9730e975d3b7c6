"""The console script. Importing the CLI pulls in aiohttp and SQLAlchemy, which takes about a
second; a Ctrl-C in that second must end in the same one line as one during a command."""

from __future__ import annotations

import sys

from sync.domain.exits import ExitCode


def main() -> None:
    try:
        from sync.cli.app import main as run_cli
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(ExitCode.INTERRUPTED)
    run_cli()
