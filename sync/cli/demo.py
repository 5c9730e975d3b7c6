"""`tanma-sync demo`: the whole job end to end against the bundled simulator, into SQLite."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from rich.console import Console
from rich.table import Table

from sync.api.client import TanmaClient
from sync.cli.discovery import describe_discovery, discover_customers
from sync.cli.logs import only_warnings
from sync.cli.passes import describe_report, sync_pass
from sync.config.settings import Settings
from sync.daemon.daemon import Daemon
from sync.domain.chinatime import format_china_time
from sync.domain.exits import ExitCode
from sync.domain.pager import PassMode
from sync.domain.tally import RunStatus
from sync.mirror.fleet import FleetStore
from sync.mirror.store import MirrorStore, open_store
from sync.sim import SimConfig, SimDataset, Simulator
from sync.sim.pushes import SentPush


async def run_demo(settings: Settings, customers: int, out: Console) -> int:
    dataset = SimDataset(seed=7, customers=customers, mean_files=25.0)
    simulator = Simulator(
        dataset,
        SimConfig(app_id=settings.tanma_app_id, app_key=settings.tanma_app_key.get_secret_value()),
    )
    base_url = await simulator.start("127.0.0.1", 0)
    settings = settings.model_copy(update={"tanma_base_url": base_url})
    out.print(f"[bold]1.[/] simulator on {base_url}: {customers} customers with generated files")
    try:
        async with open_store(settings) as store:
            out.print("[bold]2.[/] customers discover: every customer, from the customer search")
            found = await discover_customers(settings, store, full=False)
            for line in describe_discovery(found):
                out.print("   " + line, markup=False)

            out.print("[bold]3.[/] backfill: every customer's whole file list")
            first = await sync_pass(settings, store, PassMode.BACKFILL)
            out.print("   " + describe_report(first), markup=False)

            dataset.advance(new_rate=0.3, late_rate=0.1, delete_rate=0.0, update_rate=0.0)
            out.print(
                "[bold]4.[/] upstream moves on: new files arrive, some out of order (below ids "
                "already mirrored)"
            )
            second = await sync_pass(settings, store, PassMode.INCREMENTAL)
            out.print("   " + describe_report(second), markup=False)

            pushed = await _push_driven_sync(settings, store, simulator, out)

            await _show_mirror(store, dataset, settings, out)
            failed = (
                not pushed
                or found.status is not RunStatus.OK
                or first.status is not RunStatus.OK
                or second.status is not RunStatus.OK
            )
            return ExitCode.PARTIAL if failed else ExitCode.OK
    finally:
        await simulator.stop()


async def _push_driven_sync(
    settings: Settings, store: MirrorStore, simulator: Simulator, out: Console
) -> bool:
    """A daemon whose polling is an hour away, a new file upstream and a push naming its
    customer: the file is mirrored within seconds. True when it was."""
    daemon_settings = settings.model_copy(
        update={
            "sync_schedule": "1h",
            "sync_poll_max_interval": 7200.0,
            "sync_max_staleness": 10800.0,
            "sync_full_schedule": "off",
            "sync_http_listen": "off",
            "sync_push_listen": "127.0.0.1:0",
            "sync_push_coalesce": 0.2,
        }
    )
    with only_warnings():
        sent, arrived, took = await _push_to_a_daemon(daemon_settings, store, simulator)
    verdict = f"mirrored {took:.1f}s after the push" if arrived else "[red]not mirrored[/]"
    out.print(
        f"[bold]4b.[/] message push: a daemon polling hourly gets a `{sent.type}` push "
        f"(answered {sent.status}) for a new file: {verdict}"
    )
    return arrived


_DEMO_WAIT_S = 60.0


async def _push_to_a_daemon(
    daemon_settings: Settings, store: MirrorStore, simulator: Simulator
) -> tuple[SentPush, bool, float]:
    async with TanmaClient(daemon_settings) as client:
        daemon = Daemon(
            daemon_settings, store, FleetStore(store.engine), client, worker_id="demo-daemon"
        )
        task = asyncio.get_running_loop().create_task(daemon.run())
        try:
            await asyncio.wait_for(daemon.started.wait(), _DEMO_WAIT_S)
            assert daemon.push_receiver is not None
            # The start-up sweep first: the file must come by push, not by that sweep.
            await _wait_for(lambda: daemon.sweeper.last_summary is not None)
            address = (
                f"http://127.0.0.1:{daemon.push_receiver.port}{daemon_settings.sync_push_path}"
            )
            simulator.pushes.register(address, "")
            began = time.monotonic()
            record = await simulator.add_record_announced(0)
            sent = simulator.pushes.sent[-1]
            ids = store.reads.file_ids
            arrived = await _wait_for(lambda: _holds(ids, record["id"]))
            took = time.monotonic() - began
        finally:
            daemon.request_stop()
            await asyncio.wait_for(task, _DEMO_WAIT_S)
    return sent, arrived, took


async def _holds(file_ids: Callable[[], Awaitable[set[int]]], record_id: object) -> bool:
    return record_id in await file_ids()


async def _wait_for(condition: Callable[[], object]) -> bool:
    deadline = time.monotonic() + _DEMO_WAIT_S
    while time.monotonic() < deadline:
        held = condition()
        if isinstance(held, Awaitable):
            held = await held
        if held:
            return True
        await asyncio.sleep(0.05)
    return False


async def _show_mirror(
    store: MirrorStore, dataset: SimDataset, settings: Settings, out: Console
) -> None:
    expected = dataset.expected_mirror()
    ids = await store.reads.file_ids()
    table = Table("file type", "files", "total size", title="what the mirror holds")
    for file_type, count, size in await store.reads.files_by_type():
        table.add_row(file_type or "?", f"{count:,}", f"{(size or 0) / 1024**2:,.1f} MiB")
    out.print(table)
    recent = Table("created (UTC+8)", "customer", "file", "size", "author", title="newest files")
    for row in await store.reads.newest_files(5):
        recent.add_row(
            format_china_time(row["create_time"]),
            str(row["customer_id"]),
            row["file_name"] or "",
            row["file_size_text"] or "",
            row["author_name"] or "",
        )
    out.print(recent)
    missing, extra = len(expected.keys() - ids), len(ids - expected.keys())
    verdict = "[green]matches[/]" if not missing and not extra else "[red]differs from[/]"
    out.print(
        f"[bold]5.[/] the mirror {verdict} the simulator: {len(ids):,} records mirrored, "
        f"{len(expected):,} upstream, {missing} missing, {extra} extra"
    )
    out.print(
        f"   mirror: {settings.sync_database_url} — try `SYNC_DATABASE_URL="
        f"{settings.sync_database_url} tanma-sync status`",
        markup=False,
    )
