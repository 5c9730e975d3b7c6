"""The push receiver on a thread of its own, with its own event loop and database engine (the
daemon runs it so on PostgreSQL).

A push is answered only once its row is committed, and every step of that commit (the pool,
``BEGIN``, the insert, ``COMMIT``) waits for its event loop to come round. On the daemon's loop
that is a turn through every ready sync, so the answers slow down with the sync load the pushes
themselves cause. Here the accept path's loop has nothing else to do; the two threads share the
interpreter by its regular switching and the database by its row locks, as two processes would.
On SQLite the daemon keeps the receiver on its own loop: a second connection to the file waits
for the first one's write lock by polling, which measured slower (BENCHMARKS.md).

What crosses threads: the "committed" wake-up (handed to the daemon's loop with
``call_soon_threadsafe``, at most one queued), the refused-push tally (under a lock, in
PushReceiver) and the metrics (prometheus_client's are thread-safe).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable

import structlog

from sync.config.settings import Settings
from sync.daemon.metrics import DaemonMetrics
from sync.daemon.push_receiver import PushReceiver
from sync.mirror.database import create_engine
from sync.mirror.dialect import Dialect
from sync.mirror.push_inbox import PushInboxStore

log = structlog.get_logger("tanma_sync.push")


class PushReceiverThread:
    def __init__(
        self,
        settings: Settings,
        metrics: DaemonMetrics,
        *,
        worker_id: str,
        on_committed: Callable[[], None],
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._worker_id = worker_id
        self._on_committed = on_committed
        self._daemon_loop: asyncio.AbstractEventLoop | None = None
        self._wake_queued = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._receiver: PushReceiver | None = None
        self.port: int | None = None

    async def start(self, host: str, port: int) -> None:
        """Listen on ``host:port``; raises what listening raised (OSError for a taken port)."""
        self._daemon_loop = asyncio.get_running_loop()
        ready: concurrent.futures.Future[int | None] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._serve(host, port, ready)),
            name="tanma-sync push receiver",
        )
        self._thread.start()
        try:
            self.port = await asyncio.wrap_future(ready)
        except BaseException:
            await asyncio.to_thread(self._thread.join)
            self._thread = None
            raise

    async def stop(self) -> None:
        if self._thread is None:
            return
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        await asyncio.to_thread(self._thread.join)
        self._thread = None

    def take_rejections(self) -> dict[str, tuple[int, str]]:
        """Refused pushes by reason since the last call: (count, last detail)."""
        return {} if self._receiver is None else self._receiver.take_rejections()

    async def _serve(
        self, host: str, port: int, ready: concurrent.futures.Future[int | None]
    ) -> None:
        s = self._settings
        try:
            engine = create_engine(
                s.sync_database_url, sqlite_busy_timeout=s.sync_sqlite_busy_timeout
            )
            try:
                receiver = PushReceiver(
                    s,
                    PushInboxStore(engine, Dialect(engine)),
                    self._metrics,
                    worker_id=self._worker_id,
                    on_committed=self._committed,
                )
                self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
                await receiver.start(host, port)
                self._receiver = receiver
                ready.set_result(receiver.port)
                await self._stop.wait()
                await receiver.stop()
            finally:
                await engine.dispose()
        except BaseException as exc:
            if not ready.done():
                # Not listening: the daemon's start() raises it.
                ready.set_exception(exc)
                return
            # A thread's uncaught error would print a traceback; say it in one line instead.
            self._metrics.push_receiver_up.set(0)
            log.error("push_receiver_failed", error=f"{type(exc).__name__}: {exc}"[:300])

    def _committed(self) -> None:
        # One wake-up queued on the daemon's loop serves every commit made before it runs.
        if self._wake_queued or self._daemon_loop is None:
            return
        self._wake_queued = True
        self._daemon_loop.call_soon_threadsafe(self._deliver_wake)

    def _deliver_wake(self) -> None:
        self._wake_queued = False
        self._on_committed()
