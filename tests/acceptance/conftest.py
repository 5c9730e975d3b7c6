"""The CLI as a user runs it: a subprocess against a simulator on a real loopback socket."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sync.sim import SimConfig, SimDataset, SimThread
from tests.helpers import APP_ID, APP_KEY

PROJECT = Path(__file__).resolve().parents[2]


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def both(self) -> str:
        return self.out + self.err


@dataclass
class Cli:
    cwd: Path
    env: dict[str, str]

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "sync", *args]

    def __call__(self, *args: str, timeout: float = 120, **env: str) -> Result:
        done = subprocess.run(
            self.command(*args),
            cwd=self.cwd,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return Result(done.returncode, done.stdout, done.stderr)

    def start(self, *args: str, **env: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command(*args),
            cwd=self.cwd,
            env={**self.env, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


def clean_env() -> dict[str, str]:
    """The caller's environment without any tanma-sync setting that could leak in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TANMA_", "SYNC_"))}
    env["PYTHONPATH"] = str(PROJECT)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
def sim_factory() -> Iterator[Callable[..., SimThread]]:
    running: list[SimThread] = []

    def start(dataset: SimDataset, **config: Any) -> SimThread:
        thread = SimThread(dataset, SimConfig(app_id=APP_ID, app_key=APP_KEY, **config))
        thread.__enter__()
        running.append(thread)
        return thread

    yield start
    for thread in running:
        thread.__exit__(None, None, None)


@pytest.fixture
def cli(tmp_path: Path, database_url: str) -> Cli:
    """A CLI bound to a fresh database; point it at a simulator with ``cli.env[...] = url``."""
    env = clean_env() | {
        "TANMA_APP_ID": APP_ID,
        "TANMA_APP_KEY": APP_KEY,
        "SYNC_DATABASE_URL": database_url,
        "SYNC_LOG_FORMAT": "json",
        "SYNC_RATE_LIMIT": "2000",
        "SYNC_BACKOFF_BASE": "0.01",
        "SYNC_BACKOFF_MAX": "0.05",
    }
    return Cli(cwd=tmp_path, env=env)
