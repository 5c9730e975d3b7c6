"""Running the real CLI as a subprocess against a simulator, shared by the acceptance and the
reliability suites: the environment it runs in, one-shot and background runs, and a SIGKILL
at a chosen instant."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sync.sim import SimConfig, SimDataset, SimThread
from tests.helpers import APP_ID, APP_KEY

PROJECT = Path(__file__).resolve().parents[1]


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

    def in_terminal(self, *args: str, columns: int = 120, **env: str) -> Result:
        """Run with stdout on a pseudo-terminal ``columns`` wide, as a person at a terminal
        sees it (``out``: what the terminal showed, colour codes stripped)."""
        controller, terminal = pty.openpty()
        try:
            process = subprocess.Popen(
                self.command(*args),
                cwd=self.cwd,
                env={**self.env, "COLUMNS": str(columns), "NO_COLOR": "1", **env},
                stdin=subprocess.DEVNULL,
                stdout=terminal,
                stderr=subprocess.PIPE,
            )
            os.close(terminal)
            shown = b""
            while True:
                try:
                    chunk = os.read(controller, 65536)
                except OSError:  # the terminal closed: the process is done writing
                    break
                if not chunk:
                    break
                shown += chunk
            code = process.wait(timeout=120)
            err = process.stderr.read().decode() if process.stderr else ""
        finally:
            os.close(controller)
        text = re.sub(r"\x1b\[[0-9;]*m", "", shown.decode("utf-8", "replace"))
        return Result(code, text.replace("\r\n", "\n"), err)

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


def cli_for(cwd: Path, database_url: str) -> Cli:
    """A CLI bound to ``database_url``, with the test credentials and a fast retry pace; point
    it at a simulator with ``cli.env["TANMA_BASE_URL"] = url``."""
    env = clean_env() | {
        "TANMA_APP_ID": APP_ID,
        "TANMA_APP_KEY": APP_KEY,
        "SYNC_DATABASE_URL": database_url,
        "SYNC_LOG_FORMAT": "json",
        "SYNC_RATE_LIMIT": "2000",
        "SYNC_BACKOFF_BASE": "0.01",
        "SYNC_BACKOFF_MAX": "0.05",
        # Daemon tests name their customers; the discovery tests switch discovery on.
        "SYNC_DISCOVERY_SCHEDULE": "off",
        "SYNC_DISCOVERY_FULL_SCHEDULE": "off",
    }
    return Cli(cwd=cwd, env=env)


@contextmanager
def sim_threads() -> Iterator[Any]:
    """Yields ``start(dataset, **config) -> SimThread`` (with the test credentials); every
    simulator started is stopped on exit."""
    running: list[SimThread] = []

    def start(dataset: SimDataset, **config: Any) -> SimThread:
        thread = SimThread(dataset, SimConfig(app_id=APP_ID, app_key=APP_KEY, **config))
        thread.__enter__()
        running.append(thread)
        return thread

    try:
        yield start
    finally:
        for thread in running:
            thread.__exit__(None, None, None)


@dataclass
class Kill:
    """What became of one process we meant to SIGKILL."""

    landed: bool  # it was still running when SIGKILL was sent
    in_pass: bool  # it had logged pass_started by then (killed mid-pass, not during start-up)
    after_s: float  # from the start of the process to the kill (or to its own exit)
    code: int
    out: str
    err: str


def run_and_kill(
    cli: Cli, args: tuple[str, ...], delay_s: float, *, from_event: str | None
) -> Kill:
    """Start ``tanma-sync args`` and SIGKILL it ``delay_s`` seconds after it starts, or after it
    logs ``from_event`` (such as ``pass_started``; needs SYNC_LOG_LEVEL info or lower, JSON
    logs), so that a slow start-up does not eat into the window.

    Stderr is read on a thread while we wait, so the child never blocks on a full pipe.
    """
    started = time.monotonic()
    process = cli.start(*args)
    lines: list[str] = []
    logged = threading.Event()

    def read_stderr() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line)
            if from_event and not logged.is_set() and _event_of(line) == from_event:
                logged.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    if from_event:
        while not logged.wait(0.02) and process.poll() is None:
            if time.monotonic() - started > 60:
                break
    deadline = (time.monotonic() if from_event else started) + delay_s
    while process.poll() is None and time.monotonic() < deadline:
        time.sleep(min(0.005, max(0.0, deadline - time.monotonic())))
    landed = process.poll() is None
    if landed:
        process.kill()
    after = time.monotonic() - started
    out = process.stdout.read() if process.stdout else ""
    process.wait(timeout=30)
    reader.join(timeout=30)
    # Judged from everything it wrote: a line written before the kill may still have been in
    # the pipe when the kill was sent.
    in_pass = landed and any(_event_of(line) == "pass_started" for line in lines)
    return Kill(landed, in_pass, after, process.returncode, out, "".join(lines))


def _event_of(line: str) -> str | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record.get("event") if isinstance(record, dict) else None
