"""The CLI as a user runs it: a subprocess against a simulator on a real loopback socket.

The machinery lives in tests/cli_support.py (the reliability suite uses it too); its names are
re-exported here for the acceptance tests that import them from this module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sync.sim import SimThread
from tests.cli_support import PROJECT, Cli, Result, clean_env, cli_for, sim_threads

__all__ = ["PROJECT", "Cli", "Result", "clean_env"]


@pytest.fixture
def sim_factory() -> Iterator[Callable[..., SimThread]]:
    with sim_threads() as start:
        yield start


@pytest.fixture
def cli(tmp_path: Path, database_url: str) -> Cli:
    """A CLI bound to a fresh database; point it at a simulator with ``cli.env[...] = url``."""
    return cli_for(tmp_path, database_url)
