"""``tanma-sync daemon``: keeps every customer fresh, for months, alone or beside other daemons.

APScheduler fires three jobs: a *sweep* on ``SYNC_SCHEDULE`` (sync the customers that are due),
a *full reconcile* on ``SYNC_FULL_SCHEDULE`` (mark every customer for a ``--full`` pass, then
sweep) and a *heartbeat* (renew this worker's leases, count the live workers and take this
worker's share of the rate limit); what the jobs do is in ``sweeps.py``. Sweeps run one at a
time; this module owns the process's life: start-up, signals and shutdown.

Shutdown (SIGTERM or SIGINT): stop claiming; workers stop at their next page boundary; after
part of ``SYNC_SHUTDOWN_TIMEOUT`` whatever is still running is cancelled (a page transaction in
flight still commits or rolls back whole); leases are handed back and the process exits 0. A
second signal exits at once: the database rolls back whatever transaction was open.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import structlog
from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from sync.api.client import TanmaClient
from sync.archive.fetch import Fetcher
from sync.archive.objects import ArchiveObjects
from sync.archive.runner import Archiver, archive_fetcher, archive_objects
from sync.config.settings import Settings, is_off
from sync.console.app import console_app
from sync.console.auth import ConsoleCredentials, check_binding
from sync.daemon.archiving import ArchiveLoop
from sync.daemon.discoveries import DiscoveryJobs
from sync.daemon.listener import StatusListener
from sync.daemon.membership import until_counted
from sync.daemon.push_processing import PushProcessor
from sync.daemon.push_receiver import PushReceiver
from sync.daemon.push_thread import PushReceiverThread
from sync.daemon.schedule import (
    Cadence,
    DaemonSchedule,
    lease_renew_every,
    parse_cadence,
    parse_daemon_schedule,
)
from sync.daemon.sweeps import Sweeper
from sync.domain.errors import ConfigError
from sync.domain.exits import ExitCode
from sync.domain.tally import RunStatus
from sync.engine.passes import RunReport
from sync.mirror.database import DATABASE_ERRORS, describe_db_error
from sync.mirror.fleet import FleetStore
from sync.mirror.store import MirrorStore, open_store
from sync.mirror.writer_lock import sqlite_writer_lock

log = structlog.get_logger("tanma_sync.daemon")

# Part of SYNC_SHUTDOWN_TIMEOUT kept for handing back leases and closing connections.
_CLEANUP_SHARE = 0.25


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def daemon_schedule(settings: Settings) -> DaemonSchedule:
    """The daemon's schedules from the settings; ConfigError names the setting at fault."""
    full = None if is_off(settings.sync_full_schedule) else settings.sync_full_schedule
    try:
        return parse_daemon_schedule(
            settings.sync_schedule,
            full,
            settings.sync_schedule_timezone,
            poll_max_interval=settings.sync_poll_max_interval,
            max_staleness=settings.sync_max_staleness,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def discovery_cadences(settings: Settings) -> tuple[Cadence | None, Cadence | None]:
    """SYNC_DISCOVERY_SCHEDULE and SYNC_DISCOVERY_FULL_SCHEDULE (None when off); ConfigError
    names the setting at fault."""
    cadences: list[Cadence | None] = []
    for name, text in (
        ("SYNC_DISCOVERY_SCHEDULE", settings.sync_discovery_schedule),
        ("SYNC_DISCOVERY_FULL_SCHEDULE", settings.sync_discovery_full_schedule),
    ):
        if is_off(text):
            cadences.append(None)
            continue
        try:
            cadences.append(parse_cadence(text, settings.sync_schedule_timezone))
        except ValueError as exc:
            raise ConfigError(f"setting {name}: {exc}") from None
    return cadences[0], cadences[1]


def console_check(settings: Settings) -> None:
    """A console on a listener off loopback needs credentials; refused before any I/O."""
    address = settings.http_listen_address
    if settings.sync_console and address is not None:
        check_binding(address[0], ConsoleCredentials.from_settings(settings), "SYNC_HTTP_LISTEN")


def burst_exit_code(report: RunReport | None, failure: str | None) -> ExitCode:
    """What ``daemon --burst`` exits with, from its one sweep: the status its run recorded."""
    if failure is not None:
        return ExitCode.FATAL
    if report is None or report.status is RunStatus.OK:
        return ExitCode.OK
    if report.status is RunStatus.PARTIAL:
        return ExitCode.PARTIAL
    if report.status is RunStatus.INTERRUPTED:
        return ExitCode.INTERRUPTED
    return ExitCode.FATAL


class Daemon:
    def __init__(
        self,
        settings: Settings,
        store: MirrorStore,
        fleet: FleetStore,
        client: TanmaClient,
        *,
        schedule: DaemonSchedule | None = None,
        worker_id: str | None = None,
        burst: bool = False,
        archive: tuple[ArchiveObjects, Fetcher] | None = None,
    ) -> None:
        self.settings = settings
        self.schedule = schedule or daemon_schedule(settings)
        self.fleet = fleet
        self.store = store
        self.worker_id = worker_id or settings.sync_worker_id or default_worker_id()
        self.burst = burst
        self.stopping = False
        self.sweeper = Sweeper(
            settings,
            self.schedule,
            store,
            fleet,
            client,
            worker_id=self.worker_id,
            stopping=lambda: self.stopping,
        )
        self.discovery_schedule = discovery_cadences(settings)
        self.discoveries = DiscoveryJobs(
            settings,
            store,
            client,
            self.sweeper.metrics,
            worker_id=self.worker_id,
            stopping=lambda: self.stopping,
            on_credentials_rejected=self.sweeper.credentials_rejected,
        )
        self._discovery_task: asyncio.Task[None] | None = None
        self.archive_loop: ArchiveLoop | None = None
        if archive is not None:
            objects, fetcher = archive
            archiver = Archiver(
                settings,
                store.archive,
                objects,
                fetcher,
                claimer=self.worker_id,
                stopping=lambda: self.stopping,
            )
            self.archive_loop = ArchiveLoop(
                archiver, self.sweeper.metrics, idle_s=settings.sync_archive_idle
            )
        self.listener: StatusListener | None = None
        self.push_receiver: PushReceiver | PushReceiverThread | None = None
        self.push_processor: PushProcessor | None = None
        if settings.push_listen_address is not None and not burst:
            self._wire_push(store)
        self.started = asyncio.Event()  # set once listening and scheduled
        self.exit_code = ExitCode.OK
        self._stop = asyncio.Event()
        self._signals = 0
        self._sweep_task: asyncio.Task[None] | None = None
        self._pending: set[str] = set()  # "full" and/or "incremental"
        self._scheduler: AsyncIOScheduler | None = None

    def _wire_push(self, store: MirrorStore) -> None:
        s = self.settings
        receiver: PushReceiver | PushReceiverThread
        if store.dialect.postgres:
            # Its own loop and connections: answers do not wait behind the syncs' turns of
            # this loop (push_thread.py).
            receiver = PushReceiverThread(
                s,
                self.sweeper.metrics,
                worker_id=self.worker_id,
                on_committed=lambda: processor.committed(),
            )
        else:
            # SQLite has one writer: a second connection would wait for this one's file lock by
            # polling, which measured slower than sharing this loop's (BENCHMARKS.md).
            receiver = PushReceiver(
                s,
                store.push,
                self.sweeper.metrics,
                worker_id=self.worker_id,
                on_committed=lambda: processor.committed(),
            )
        processor = PushProcessor(
            store.push,
            self.sweeper.metrics,
            batch=s.sync_push_batch,
            coalesce_s=s.sync_push_coalesce,
            delay_s=s.sync_push_process_delay,
            retention_s=s.sync_push_retention,
            gone_types=s.push_gone_types,
            request_sweep=self._push_sweep,
            take_rejections=receiver.take_rejections,
        )
        self.push_receiver, self.push_processor = receiver, processor
        self.sweeper.after_finish = processor.customer_synced

    def _push_sweep(self, delay_s: float) -> None:
        """Pushes made customers due: sweep once the coalescing window has passed."""
        if self.stopping:
            return

        def kick() -> None:
            if not self.stopping:
                asyncio.get_running_loop().create_task(self._kick("incremental"))

        asyncio.get_running_loop().call_later(delay_s, kick)

    # -- lifecycle -------------------------------------------------------------------------

    async def run(self) -> int:
        """Until a signal (or, in burst mode, until nothing is due); returns the exit status."""
        loop = asyncio.get_running_loop()
        self.sweeper.state.started_at = self.sweeper.state.last_tick_at = self.sweeper.clock()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        try:
            await self._start()
            self.started.set()
            if self.burst:
                report = await self.sweeper.sweep(full=False)
                self.exit_code = burst_exit_code(report, self.sweeper.last_failure)
            else:
                await self._stop.wait()
        finally:
            await self._shutdown()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
                if self._signals:
                    # The caller still closes the client and the database after this; without
                    # a handler, a second signal then would kill the process by the signal
                    # (status -15) instead of the documented forced exit.
                    signal.signal(sig, _forced_exit)
        return self.exit_code

    def request_stop(self) -> None:
        self.stopping = True
        self._stop.set()

    def _on_signal(self, sig: signal.Signals) -> None:
        self._signals += 1
        if self._signals > 1:
            _forced_exit(sig)
        log.info("shutting_down", signal=sig.name, timeout_s=self.settings.sync_shutdown_timeout)
        self.request_stop()
        # A shutdown that hangs (a database that stopped answering) must still end in time.
        asyncio.get_running_loop().call_later(
            self.settings.sync_shutdown_timeout, self._shutdown_overran
        )

    def _shutdown_overran(self) -> None:
        log.error(
            "shutdown_timeout",
            detail="stopped without handing back every lease; they expire by themselves",
            timeout_s=self.settings.sync_shutdown_timeout,
        )
        os._exit(ExitCode.FATAL)

    async def _start(self) -> None:
        s = self.settings
        await self.fleet.register_worker(self.worker_id, socket.gethostname(), os.getpid())
        live = await self.sweeper.heartbeat()
        log.info(
            "daemon_started",
            worker_id=self.worker_id,
            live_workers=live,
            schedule=s.sync_schedule,
            full_schedule=s.sync_full_schedule,
            max_staleness_s=s.sync_max_staleness,
        )
        address = s.http_listen_address
        if address is not None:
            scheduled = not self.burst
            self.listener = StatusListener(
                lambda: self.sweeper.liveness(scheduled=scheduled),
                lambda: self.sweeper.readiness(scheduled=scheduled),
                self.sweeper.metrics,
                console=self._console(),
            )
            try:
                await self.listener.start(*address)
            except OSError as exc:
                raise ConfigError(
                    f"setting SYNC_HTTP_LISTEN: cannot listen on {s.sync_http_listen} "
                    f"({exc.strerror or exc})"
                ) from None
            log.info("listening", host=address[0], port=self.listener.port)
        await self._start_push()
        if live > 1:
            await self._wait_for_rate_share(live)
        if self.burst or self.stopping:
            return
        self._scheduler = self._schedule_jobs()
        if self.archive_loop is not None:
            self.archive_loop.start()

    def _console(self) -> web.Application | None:
        """The console's pages for the status listener, when SYNC_CONSOLE is on."""
        if not self.settings.sync_console:
            return None
        return console_app(
            self.store, self.settings, ConsoleCredentials.from_settings(self.settings)
        )

    async def _wait_for_rate_share(self, live: int) -> None:
        """Spend nothing until every other live worker has counted this one and lowered its
        share; then take this worker's share from a fresh count. A stop ends the wait."""
        log.info("waiting_for_rate_share", live_workers=live)
        counted = asyncio.ensure_future(
            until_counted(self.fleet, self.worker_id, self.settings.sync_lease_ttl)
        )
        stopped = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({counted, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (counted, stopped):
                task.cancel()
            await asyncio.gather(counted, stopped, return_exceptions=True)
        if counted.done() and not counted.cancelled() and not self.stopping:
            live = await self.sweeper.heartbeat()
            log.info("rate_share_taken", live_workers=live, waited_s=round(counted.result(), 2))

    async def _start_push(self) -> None:
        s = self.settings
        address = s.push_listen_address
        if address is None or self.push_receiver is None or self.push_processor is None:
            return
        try:
            await self.push_receiver.start(*address)
        except OSError as exc:
            raise ConfigError(
                f"setting SYNC_PUSH_LISTEN: cannot listen on {s.sync_push_listen} "
                f"({exc.strerror or exc})"
            ) from None
        self.sweeper.metrics.push_receiver_up.set(1)
        # What a killed daemon left in the inbox is processed from the start.
        self.push_processor.start()
        self.push_processor.committed()
        log.info(
            "push_receiver_listening",
            host=address[0],
            port=self.push_receiver.port,
            path=s.sync_push_path,
        )

    def _schedule_jobs(self) -> AsyncIOScheduler:
        sweep, full = self.schedule.sweep, self.schedule.full
        scheduler = AsyncIOScheduler(timezone=sweep.trigger.timezone)
        job_defaults = {"coalesce": True, "max_instances": 1, "misfire_grace_time": None}
        scheduler.add_job(
            self._kick,
            sweep.trigger,
            args=["incremental"],
            id="sweep",
            next_run_time=datetime.now(UTC),
            **job_defaults,
        )
        if full is not None:
            scheduler.add_job(self._kick, full.trigger, args=["full"], id="full", **job_defaults)
        incremental_discovery, full_discovery = self.discovery_schedule
        if incremental_discovery is not None:
            scheduler.add_job(
                self._kick_discovery,
                incremental_discovery.trigger,
                args=[False],
                id="discovery",
                next_run_time=datetime.now(UTC),
                **job_defaults,
            )
        if full_discovery is not None:
            scheduler.add_job(
                self._kick_discovery,
                full_discovery.trigger,
                args=[True],
                id="discovery_full",
                **job_defaults,
            )
        scheduler.add_job(
            self.sweeper.heartbeat,
            IntervalTrigger(seconds=lease_renew_every(self.settings.sync_lease_ttl)),
            id="heartbeat",
            **job_defaults,
        )
        scheduler.start()
        return scheduler

    async def _shutdown(self) -> None:
        self.stopping = True
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
        budget = self.settings.sync_shutdown_timeout
        running = {t for t in (self._sweep_task, self._discovery_task) if t and not t.done()}
        if running:
            # Workers (and a discovery) stop at their next page boundary; past the grace period
            # they are cancelled, and the page transaction in flight still completes.
            _, pending = await asyncio.wait(running, timeout=budget * (1 - 2 * _CLEANUP_SHARE))
            if pending:
                log.warning("cancelling_workers", detail="the pass did not reach a page boundary")
                for task in pending:
                    task.cancel()
                await asyncio.wait(pending, timeout=budget * _CLEANUP_SHARE)
        if self.archive_loop is not None:
            await self.archive_loop.stop(budget * _CLEANUP_SHARE)
        try:
            await asyncio.wait_for(
                self.fleet.deregister_worker(self.worker_id), budget * _CLEANUP_SHARE
            )
        except TimeoutError:
            log.warning("leases_not_released", error="timed out")
        except DATABASE_ERRORS as exc:
            log.warning("leases_not_released", error=describe_db_error(exc))
        if self.push_receiver is not None:
            await self.push_receiver.stop()
        if self.push_processor is not None:
            await self.push_processor.stop()
        if self.listener is not None:
            await self.listener.stop()
        log.info("daemon_stopped", worker_id=self.worker_id)

    # -- jobs ------------------------------------------------------------------------------

    async def _kick(self, kind: str) -> None:
        """A job fired: start a sweep, or remember to run one when the current one ends."""
        self._pending.add(kind)
        if self._sweep_task is None or self._sweep_task.done():
            self._sweep_task = asyncio.get_running_loop().create_task(self._sweep_loop())

    async def _kick_discovery(self, full: bool) -> None:
        """A discovery job fired: run it beside the sweeps (one discovery at a time)."""
        if self._discovery_task is not None and not self._discovery_task.done():
            log.info("discovery_skipped", reason="the previous discovery is still running")
            return
        self._discovery_task = asyncio.get_running_loop().create_task(self._discover(full))

    async def _discover(self, full: bool) -> None:
        report = await self.discoveries.run(full=full)
        if report is not None and report.counts.new and not self.stopping:
            # New customers are due for their first file sync at once, not at the next sweep.
            await self._kick("incremental")

    async def _sweep_loop(self) -> None:
        while self._pending and not self.stopping:
            postponed = self.sweeper.postponed_for()
            if postponed is not None:
                # The API was down at the last sweep: what is pending waits for the retry
                # job that sweep scheduled, however often SYNC_SCHEDULE fires meanwhile.
                log.info("sweep_postponed", retry_in_s=round(postponed, 1))
                return
            full = "full" in self._pending
            self._pending.clear()
            await self.sweeper.sweep(full=full)
            postponed = self.sweeper.postponed_for()
            if postponed is not None and self._scheduler is not None:
                self._pending.add("incremental")
                self._scheduler.add_job(
                    self._kick,
                    DateTrigger(datetime.now(UTC) + timedelta(seconds=postponed + 0.5)),
                    args=["incremental"],
                    id="outage_retry",
                    replace_existing=True,
                    misfire_grace_time=None,
                )
            if self.archive_loop is not None:
                self.archive_loop.files_arrived()


def _forced_exit(sig: int, _frame: object = None) -> None:
    """A second signal: exit at once. Whatever transaction is open is rolled back by the
    database, and the leases expire."""
    log.warning("forced_exit", signal=signal.Signals(sig).name)
    os._exit(ExitCode.INTERRUPTED)


async def serve(
    settings: Settings,
    *,
    migrate: bool,
    burst: bool = False,
    announce: Callable[[str], None] | None = None,
) -> int:
    """Open everything the daemon needs, run it, close it all; returns the exit status.
    ``announce`` is given the burst's sweep summary line at its end."""
    settings.require_credentials()
    schedule = daemon_schedule(settings)  # a bad schedule is one line, before any I/O
    discovery_cadences(settings)
    console_check(settings)
    objects = archive_objects(settings) if settings.archive_enabled and not burst else None
    # One writer per SQLite file: a second daemon, or a daemon beside a CLI pass, stops here.
    lock = sqlite_writer_lock(
        settings.sync_database_url,
        "daemon",
        advice="stop it first, or use PostgreSQL, where daemons and passes share the work",
    )
    async with lock, contextlib.AsyncExitStack() as stack:
        store = await stack.enter_async_context(open_store(settings, migrate=migrate))
        client = await stack.enter_async_context(TanmaClient(settings))
        archive = None
        if objects is not None:
            await objects.check()
            await objects.sweep_temporaries()
            fetcher = await stack.enter_async_context(archive_fetcher(settings))
            archive = (objects, fetcher)
        fleet = FleetStore(store.engine)
        daemon = Daemon(
            settings, store, fleet, client, schedule=schedule, burst=burst, archive=archive
        )
        code = await daemon.run()
        summary = daemon.sweeper.last_summary
        if burst and announce is not None and summary is not None:
            announce(summary.line())
        return code
