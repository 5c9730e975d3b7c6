"""The push receiver under load: a daemon in its own process, a load generator here sending
signed, encrypted pushes with a fixed number in flight; accepted pushes per second, then whether
every accepted ``msgId`` reached the inbox and every named customer was synced after it, and
the seconds from receipt to that sync (p50, p99)."""

from __future__ import annotations

import asyncio
import math
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from sqlalchemy import func, select

from bench import tool
from bench.databases import fresh_database
from bench.sections import UNLIMITED, Log, Row, Sizes
from bench.simproc import APP_ID, APP_KEY, SimProcess
from sync.config.settings import Settings
from sync.mirror.database import create_engine
from sync.mirror.models import CustomerSyncState, PushInbox
from sync.sim.pushes import PushSender

TARGET_PER_S = 500
# The rate budgets the load runs under: the default setting, which bounds the syncs the pushes
# cause as it would in production, and none, where the daemon spends every spare cycle on
# them (the hardest case for the accept path).
BUDGETS = {
    "default": float(Settings.model_fields["sync_rate_limit"].default),
    "unlimited": UNLIMITED,
}
# Bounds on waits for the daemon; generous, as they only catch a hang.
_SETTLE_S = 300.0


@dataclass(frozen=True)
class PushLoad:
    accepted: int
    refused: int
    seconds: float
    # CPU the generator itself spent: near ``seconds`` means it, not the daemon, set the pace.
    cpu_seconds: float
    customer_ids: list[int]
    msg_ids: set[str]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _generate(
    address: str, customer_ids: list[int], seconds: float, in_flight: int
) -> PushLoad:
    sender = PushSender(APP_ID, APP_KEY)
    accepted: set[str] = set()
    refused = 0
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=in_flight)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker(offset: int) -> None:
            nonlocal refused
            n = offset
            while time.perf_counter() < deadline:
                customer_id = customer_ids[n % len(customer_ids)]
                n += in_flight
                msg_id, noise, wire = sender.build("tag_info", {"customerId": customer_id})
                async with session.post(
                    address, data=wire.body.encode(), headers=wire.headers
                ) as response:
                    answer = await response.text()
                if response.status == 200 and answer == str(noise):
                    accepted.add(msg_id)
                else:
                    refused += 1

        started, cpu_started = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker(i) for i in range(in_flight)))
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return PushLoad(len(accepted), refused, elapsed, cpu, customer_ids, accepted)


async def _inbox_state(database_url: str) -> tuple[set[str], int, list[float], int]:
    """(msgIds in the inbox, rows not yet followed by a sync, lags in s, customers synced)."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(PushInbox.msg_id, PushInbox.received_at, PushInbox.synced_at)
                )
            ).all()
            synced = await conn.scalar(
                select(func.count()).where(CustomerSyncState.last_success_at.is_not(None))
            )
    finally:
        await engine.dispose()
    lags = [(r.synced_at - r.received_at).total_seconds() for r in rows if r.synced_at]
    unsynced = sum(1 for r in rows if r.synced_at is None)
    return {r.msg_id for r in rows}, unsynced, lags, int(synced or 0)


def _wait(condition: object, what: str) -> None:
    deadline = time.monotonic() + _SETTLE_S
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds of process ``pid`` so far (Linux's /proc; NaN elsewhere)."""
    try:
        # After the parenthesised command name: field 3 (state) onwards; utime and stime are
        # fields 14 and 15.
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))] if ordered else float("nan")


def push_load(sizes: Sizes, backend: str, budget: str, log: Log, *, quick: bool) -> list[Row]:
    customers = 50 if quick else 200
    seconds = 5.0 if quick else sizes.push_seconds
    in_flight = 16
    rate_limit = BUDGETS[budget]
    with SimProcess(customers=customers, mean_files=2) as sim, fresh_database(backend) as url:
        env = tool.tool_env(sim.base_url, url, concurrency=sizes.concurrency, rate_limit=rate_limit)
        tool.import_customers(sim.customers_csv(), env)
        customer_ids = [
            int(line.split(b",")[0])
            for line in sim.customers_csv().splitlines()[1:]
            if line.split(b",")[0].isdigit()
        ]
        port = _free_port()
        daemon_env = env | {
            "SYNC_SCHEDULE": "1h",
            "SYNC_POLL_MAX_INTERVAL": "2h",
            "SYNC_MAX_STALENESS": "3h",
            "SYNC_FULL_SCHEDULE": "off",
            "SYNC_DISCOVERY_SCHEDULE": "off",
            "SYNC_DISCOVERY_FULL_SCHEDULE": "off",
            "SYNC_HTTP_LISTEN": "off",
            "SYNC_PUSH_LISTEN": f"127.0.0.1:{port}",
            "SYNC_PUSH_COALESCE": "1s",
        }
        with tempfile.TemporaryDirectory(prefix="tanma_bench_push_") as folder:
            log_path = Path(folder) / "daemon.log"
            with log_path.open("wb") as out:
                # A scratch working directory, as for the bench's CLI runs: no .env is read.
                daemon = subprocess.Popen(  # noqa: S603 - our own interpreter and entry point
                    [*tool.CLI_COMMAND, "daemon"],
                    env=daemon_env,
                    cwd=folder,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            try:
                _wait(
                    lambda: asyncio.run(_inbox_state(url))[3] >= len(customer_ids),
                    "the start-up sweep",
                )
                address = f"http://127.0.0.1:{port}/tanmarket/push"
                cpu_before = _cpu_seconds(daemon.pid)
                load = asyncio.run(_generate(address, customer_ids, seconds, in_flight))
                cpu_loaded = _cpu_seconds(daemon.pid)
                _wait(lambda: asyncio.run(_inbox_state(url))[1] == 0, "every push settled")
                # Accepting, processing and the syncs the pushes caused, up to the last settle.
                daemon_cpu = _cpu_seconds(daemon.pid) - cpu_before
                msg_ids, _unsynced, lags, _ = asyncio.run(_inbox_state(url))
            finally:
                daemon.terminate()
                daemon.wait(60)
                if daemon.returncode != 0:
                    print(log_path.read_text()[-3000:], file=sys.stderr)
    lost = len(load.msg_ids - msg_ids)
    rate = load.accepted / load.seconds
    loaded_share = (cpu_loaded - cpu_before) / load.seconds
    ms_per_push = daemon_cpu * 1000 / max(load.accepted, 1)
    p50, p99 = _percentile(lags, 0.5), _percentile(lags, 0.99)
    budget_label = "no rate budget" if budget == "unlimited" else f"{rate_limit:g} requests/s"
    log(
        f"push load ({backend}, {budget_label}): {load.accepted:,} accepted in "
        f"{load.seconds:.1f}s = "
        f"{rate:,.0f}/s with {in_flight} in flight, {load.refused} refused, {lost} lost; "
        f"generator CPU {load.cpu_seconds / load.seconds:.0%}; daemon CPU "
        f"{loaded_share:.0%} while loaded, {ms_per_push:.2f} ms per push in all; "
        f"push to sync p50 {p50:.2f}s p99 {p99:.2f}s (median {statistics.median(lags):.2f}s)"
    )
    label = f"{backend}, {budget_label}, {in_flight} in flight, {seconds:.0f}s"
    tag = f"{backend}, {budget_label}"
    return [
        Row("9. push", f"pushes accepted per second ({label})", rate, "pushes/s",
            f"{load.accepted:,} over {len(customer_ids)} customers",
            f"≥ {TARGET_PER_S}", None if quick else rate >= TARGET_PER_S),
        Row("9. push", f"pushes lost ({tag})", lost + load.refused, "pushes",
            "accepted but not in the inbox, or refused", "0", lost + load.refused == 0),
        Row("9. push", f"daemon CPU per push, syncs included ({tag})", ms_per_push, "ms",
            f"{loaded_share:.0%} of a core while loaded"),
        Row("9. push", f"push to the customer's sync, p50 ({tag})", p50, "s"),
        Row("9. push", f"push to the customer's sync, p99 ({tag})", p99, "s"),
    ]  # fmt: skip
