"""The simulator in a process of its own, so it never shares a GIL with the code under test.

``python -m bench.simproc --customers N ...`` serves on a free loopback port and prints its base
URL as the first line of stdout; it stops when its standard input closes (the parent died or
is done). ``SimProcess`` is the parent's side: start it, steer it through the ``/_sim/``
admin routes, stop it.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import urllib.request
from typing import Any

APP_ID = "bench-app"
APP_KEY = "bench-key-0123456789abcdef"


def _parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.simproc")
    parser.add_argument("--customers", type=int, required=True)
    parser.add_argument("--mean-files", type=float, required=True)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--rate-limit", type=float, default=None)
    parser.add_argument("--rate-burst", type=float, default=None)
    parser.add_argument("--encode-per-request", action="store_true")
    parser.add_argument("--file-bytes", type=int, nargs=2, metavar=("MIN", "MAX"))
    parser.add_argument("--raised-priority", action="store_true")
    return parser.parse_args(argv)


# How much the simulator's process is favoured by the scheduler when asked (a nice value).
_RAISED_NICE = -10


def _raise_priority() -> None:
    """Ask the scheduler to run this process first when it wakes. The simulator stamps a
    request's arrival when its loop reads it; on a shared machine a descheduled simulator reads
    a whole queue at once and stamps it as one burst that the client never sent (BENCHMARKS.md,
    budget section). Without the privilege, it says so and runs as it is."""
    try:
        os.setpriority(os.PRIO_PROCESS, 0, _RAISED_NICE)
    except PermissionError:
        print(
            "simulator: cannot raise its priority (needs CAP_SYS_NICE); its rate-limit counts "
            "may include bursts of its own making",
            file=sys.stderr,
        )


async def _serve(args: argparse.Namespace) -> None:
    if args.raised_priority:
        _raise_priority()
    from sync.sim import SimConfig, SimDataset, Simulator
    from sync.sim.files import FileShapes

    files = None
    if args.file_bytes:
        files = FileShapes(min_bytes=args.file_bytes[0], max_bytes=args.file_bytes[1])
    dataset = SimDataset(
        seed=args.seed, customers=args.customers, mean_files=args.mean_files, files=files
    )
    config = SimConfig(
        app_id=APP_ID,
        app_key=APP_KEY,
        latency_ms=args.latency_ms,
        rate_limit=args.rate_limit,
        rate_burst=args.rate_burst,
        prebuilt_pages=not args.encode_per_request,
    )
    simulator = Simulator(dataset, config)
    if args.raised_priority:
        # The data set is built and lives until the end: out of the collector's sight, a full
        # collection does not walk it while requests wait (tens of milliseconds per pass at
        # the budget section's size, long enough to stamp a queue of requests as one burst).
        gc.freeze()
    base_url = await simulator.start("127.0.0.1", 0)
    print(base_url, flush=True)
    loop = asyncio.get_running_loop()
    # Ends when the parent closes our stdin (or dies, which closes it too).
    await loop.run_in_executor(None, sys.stdin.buffer.read)
    await simulator.stop()


class SimProcess:
    """``with SimProcess(customers=..., mean_files=...) as sim: sim.base_url``"""

    def __init__(
        self,
        *,
        customers: int,
        mean_files: float,
        seed: int = 11,
        latency_ms: float = 0.0,
        rate_limit: float | None = None,
        rate_burst: float | None = None,
        prebuilt_pages: bool = True,
        file_bytes: tuple[int, int] | None = None,
        raised_priority: bool = False,
    ) -> None:
        self.customers = customers
        self.mean_files = mean_files
        argv = [
            sys.executable,
            "-m",
            "bench.simproc",
            f"--customers={customers}",
            f"--mean-files={mean_files}",
            f"--seed={seed}",
            f"--latency-ms={latency_ms}",
        ]
        if rate_limit is not None:
            argv.append(f"--rate-limit={rate_limit}")
        if rate_burst is not None:
            argv.append(f"--rate-burst={rate_burst}")
        if not prebuilt_pages:
            argv.append("--encode-per-request")
        if file_bytes is not None:
            argv += ["--file-bytes", str(file_bytes[0]), str(file_bytes[1])]
        if raised_priority:
            argv.append("--raised-priority")
        self._argv = argv
        self._proc: subprocess.Popen[bytes] | None = None
        self.base_url = ""

    def __enter__(self) -> SimProcess:
        self._proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            self._argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline().decode().strip()
        if not line.startswith("http://"):
            self.close()
            raise RuntimeError(f"the simulator process did not start (said {line!r})")
        self.base_url = line
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def _admin(self, path: str, payload: dict[str, Any] | None = None) -> bytes:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(  # noqa: S310 - loopback http URL we started
            self.base_url + path, data=data, method="GET" if data is None else "POST"
        )
        with urllib.request.urlopen(request, timeout=300) as response:  # noqa: S310
            return response.read()

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = json.loads(self._admin("/_sim/stats"))
        return stats

    def reset_stats(self) -> None:
        self._admin("/_sim/reset-stats", {})

    def configure(self, **changes: Any) -> None:
        self._admin("/_sim/config", changes)

    def customers_csv(self) -> bytes:
        return self._admin("/_sim/customers.csv")


if __name__ == "__main__":
    asyncio.run(_serve(_parse_args(sys.argv[1:])))
