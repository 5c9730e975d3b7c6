"""Runs the real ``tanma-sync`` command line as a child process, as a user would, and reads what
it reports: the pass's own timing and request count, the process's wall time and peak RSS."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.simproc import APP_ID, APP_KEY
from sync.config.settings import Settings

# describe_report: "... {requests} requests ({retries} retries) in {seconds}s = {rate} records/s"
_REPORT = re.compile(
    r"records: (\d+) new, (\d+) updated, (\d+) unchanged.*?(\d+) requests \((\d+) retries\) "
    r"in ([\d.]+)s"
)
# describe_discovery: "... {requests} requests ({retries} retries), {windows} windows ({split}
# split, ... in {seconds}s"
_DISCOVERY = re.compile(
    r"(\d+) requests \(\d+ retries\), \d+ windows \((\d+) split.*? in ([\d.]+)s"
)
CLI_COMMAND = [sys.executable, "-c", "from sync.cli.entry import main; main()"]


@dataclass(frozen=True)
class CliRun:
    command: str
    exit_code: int
    stdout: str
    stderr: str
    wall_s: float
    peak_rss_mb: float
    cpu_s: float  # the process's CPU time, user and system, start-up included

    def check(self) -> CliRun:
        if self.exit_code != 0:
            raise RuntimeError(
                f"`tanma-sync {self.command}` exited {self.exit_code}: "
                f"{(self.stderr or self.stdout).strip()[-2000:]}"
            )
        return self


@dataclass(frozen=True)
class PassResult:
    records: int
    requests: int
    retries: int
    pass_s: float
    wall_s: float
    peak_rss_mb: float
    cpu_s: float

    @property
    def records_per_s(self) -> float:
        return self.records / self.pass_s

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.pass_s


def tool_env(
    base_url: str,
    database_url: str,
    *,
    concurrency: int,
    rate_limit: float,
    page_size: int = 100,
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TANMA_", "SYNC_"))}
    env.update(
        TANMA_BASE_URL=base_url,
        TANMA_APP_ID=APP_ID,
        TANMA_APP_KEY=APP_KEY,
        SYNC_DATABASE_URL=database_url,
        SYNC_CONCURRENCY=str(concurrency),
        SYNC_RATE_LIMIT=str(rate_limit),
        SYNC_PAGE_SIZE=str(page_size),
        SYNC_LOG_LEVEL="warning",
        SYNC_LOG_FORMAT="json",
    )
    return env


def settings_of(env: dict[str, str]) -> Settings:
    """The settings the tool would read from ``env`` (for the stages run in this process)."""
    chosen: dict[str, Any] = {
        k.lower(): v for k, v in env.items() if k.startswith(("TANMA_", "SYNC_"))
    }
    return Settings(_env_file=None, **chosen)


def _peak_rss_mb(pid: int) -> float | None:
    """VmHWM of a running process: its peak RSS since it started its program."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return None


def run_cli(args: list[str], env: dict[str, str]) -> CliRun:
    """Run ``tanma-sync ARGS`` and watch its peak RSS.

    Peak RSS is read from /proc (VmHWM, every 20 ms until it exits), not from wait4: Linux
    counts the pages a child had before exec, which are the parent's, in its ru_maxrss."""
    # A scratch working directory: a developer's .env must not change what is measured.
    with tempfile.TemporaryDirectory(prefix="tanma_bench_cwd_") as cwd:
        out_path, err_path = Path(cwd) / "out", Path(cwd) / "err"
        with out_path.open("wb") as out, err_path.open("wb") as err:
            started = time.perf_counter()
            proc = subprocess.Popen(  # noqa: S603 - our own interpreter and entry point
                [*CLI_COMMAND, *args],
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=cwd,
            )
            peak = 0.0
            # Reaped with wait4 for the child's own CPU time (user + system); its ru_maxrss is
            # not used (see above).
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                peak = max(peak, _peak_rss_mb(proc.pid) or 0.0)
                time.sleep(0.02)
            wall = time.perf_counter() - started
            proc.returncode = os.waitstatus_to_exitcode(status)
        return CliRun(
            " ".join(args),
            proc.returncode,
            out_path.read_text(errors="replace"),
            err_path.read_text(errors="replace"),
            wall,
            peak,
            usage.ru_utime + usage.ru_stime,
        )


def import_customers(csv: bytes, env: dict[str, str]) -> CliRun:
    with tempfile.TemporaryDirectory(prefix="tanma_bench_csv_") as folder:
        path = Path(folder) / "customers.csv"
        path.write_bytes(csv)
        return run_cli(["customers", "import", str(path)], env).check()


# The import summary: "... unchanged, 0 lines skipped in 1.52s"
_IMPORT = re.compile(r"skipped in ([\d.]+)s")


def import_seconds(run: CliRun) -> float:
    """The time ``customers import`` reports for itself (reading, planning and writing)."""
    match = _IMPORT.search(run.stdout)
    if match is None:
        raise RuntimeError(f"no timing in the output of `tanma-sync {run.command}`: {run.stdout!r}")
    return float(match.group(1))


def sync_pass(command: str, env: dict[str, str]) -> PassResult:
    """``backfill`` or ``run``; the figures its own report printed."""
    run = run_cli([command], env).check()
    match = _REPORT.search(run.stdout)
    if match is None:
        raise RuntimeError(f"no report in the output of `tanma-sync {command}`: {run.stdout!r}")
    new, updated, unchanged, requests, retries, seconds = match.groups()
    return PassResult(
        records=int(new) + int(updated) + int(unchanged),
        requests=int(requests),
        retries=int(retries),
        pass_s=float(seconds),
        wall_s=run.wall_s,
        peak_rss_mb=run.peak_rss_mb,
        cpu_s=run.cpu_s,
    )


@dataclass(frozen=True)
class DiscoveryResult:
    requests: int
    windows_split: int
    seconds: float  # the summary's own timing: the walk's wall time
    peak_rss_mb: float
    cpu_s: float  # the child process's CPU time, user and system, start-up included


def discover(env: dict[str, str]) -> DiscoveryResult:
    """``customers discover``; the figures its summary printed."""
    run = run_cli(["customers", "discover"], env).check()
    match = _DISCOVERY.search(run.stdout)
    if match is None:
        raise RuntimeError(f"no summary in the output of `customers discover`: {run.stdout!r}")
    requests, split, seconds = match.groups()
    return DiscoveryResult(int(requests), int(split), float(seconds), run.peak_rss_mb, run.cpu_s)
