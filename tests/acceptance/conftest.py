"""The CLI as a user runs it: a subprocess against a simulator on a real loopback socket.

The machinery lives in tests/cli_support.py (the reliability suite uses it too); its names are
re-exported here for the acceptance tests that import them from this module. The `cli` and
`sim_factory` fixtures are in tests/conftest.py.
"""

from __future__ import annotations

from tests.cli_support import PROJECT, Cli, Result, clean_env

__all__ = ["PROJECT", "Cli", "Result", "clean_env"]
