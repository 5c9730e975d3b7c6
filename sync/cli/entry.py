"""The console script. Importing the CLI pulls in aiohttp and SQLAlchemy, which takes about a
second; a Ctrl-C in that second must end in the same one line as one during a command."""

from __future__ import annotations

import gc
import sys

from sync.domain.exits import ExitCode


def main() -> None:
    try:
        from sync.cli.app import main as run_cli
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(ExitCode.INTERRUPTED)
    # What the imports built (the libraries' modules, the tables' metadata) lives as long as
    # the process: frozen out of the cyclic collector, no full collection walks it again. A
    # decoded page allocates thousands of dicts and lists that die with it, so the youngest
    # generation is collected every 10,000 allocations rather than every 700. Measured in
    # BENCHMARKS.md ("Design choices").
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
    run_cli()
