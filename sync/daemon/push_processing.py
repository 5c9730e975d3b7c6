"""Processing the push inbox, after the answers: pending rows in batches, each batch's effects
in the transaction that marks it processed (sync/mirror/push_inbox.py); then a sweep for the
customers the batch made due, a short coalescing window later, so that a burst of pushes for one
customer costs one sync. A sync that ends settles the pushes it covered (``settle``).

Pending rows are read on every commit's wake-up and every ``_POLL_S`` besides: that resumes what
a killed daemon left (on PostgreSQL, what any daemon left). Rounds of processing start at most
every ``_ROUND_GAP_S`` (never more than the coalescing window): under a stream of pushes a round
then takes the many that came meanwhile in one transaction, instead of the few of each commit.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import datetime, timedelta

import structlog

from sync.daemon.metrics import DaemonMetrics, push_type_label
from sync.domain.push import push_sweep_at
from sync.engine.feeds import CustomerOutcome
from sync.mirror.database import DATABASE_ERRORS, describe_db_error
from sync.mirror.models import utc_now
from sync.mirror.push_inbox import PushInboxStore

log = structlog.get_logger("tanma_sync.push")

_POLL_S = 5.0
# A round's cost is mostly its fixed part (reading the pending rows, resolving customers, the
# commit), so at hundreds of pushes a second fewer, larger rounds are cheaper; the pushes'
# syncs wait for the coalescing window anyway.
_ROUND_GAP_S = 0.1
# How often processed rows past SYNC_PUSH_RETENTION are deleted (and once at the start).
_PRUNE_EVERY_S = 3600.0


class PushProcessor:
    def __init__(
        self,
        inbox: PushInboxStore,
        metrics: DaemonMetrics,
        *,
        batch: int,
        coalesce_s: float,
        delay_s: float,
        retention_s: float,
        gone_types: frozenset[str],
        request_sweep: Callable[[float], None],
        take_rejections: Callable[[], dict[str, tuple[int, str]]],
    ) -> None:
        self._inbox = inbox
        self._metrics = metrics
        self._batch = batch
        self._coalesce_s = coalesce_s
        self._delay_s = delay_s
        self._retention_s = retention_s
        self._gone_types = gone_types
        self._next_prune: float | None = None
        self._request_sweep = request_sweep
        self._take_rejections = take_rejections
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._sweep_at: float | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def committed(self) -> None:
        """A push reached the inbox."""
        self._wake.set()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), _POLL_S)
            self._wake.clear()
            if self._delay_s:
                await asyncio.sleep(self._delay_s)
            try:
                await self._flush_rejections()
                while await self._process_batch():
                    pass
                await self._prune_if_due()
            except DATABASE_ERRORS as exc:
                log.warning("push_processing_failed", error=describe_db_error(exc))
            await asyncio.sleep(min(_ROUND_GAP_S, self._coalesce_s))

    async def _flush_rejections(self) -> None:
        counts = self._take_rejections()
        if counts:
            await self._inbox.count_rejections(counts)

    async def _prune_if_due(self) -> None:
        now = asyncio.get_running_loop().time()
        if self._next_prune is not None and now < self._next_prune:
            return
        self._next_prune = now + _PRUNE_EVERY_S
        cutoff = utc_now() - timedelta(seconds=self._retention_s)
        pruned = await self._inbox.prune(cutoff)
        if pruned:
            log.info("push_inbox_pruned", rows=pruned, received_before=cutoff.isoformat())

    async def _process_batch(self) -> bool:
        """One batch; False when nothing was pending."""
        done = await self._inbox.process_pending(self._batch, self._gone_types)
        if not done:
            return False
        due = False
        for item in done:
            self._metrics.pushes.labels(push_type_label(item.type), item.outcome).inc()
            due = due or item.outcome in ("sync", "add")
        if due:
            self._sweep_soon()
        log.debug("pushes_processed", pushes=len(done))
        return len(done) == self._batch

    def _sweep_soon(self) -> None:
        now = asyncio.get_running_loop().time()
        at = push_sweep_at(now, self._sweep_at, self._coalesce_s)
        if at is None:
            return
        self._sweep_at = at
        self._request_sweep(at - now)

    async def customer_synced(
        self, customer_ref: int, started_at: datetime, outcome: CustomerOutcome
    ) -> None:
        """A sweep finished a customer (``started_at``: when its sync began)."""
        if not outcome.ok:
            return
        try:
            settled = await self._inbox.settle(customer_ref, started_at)
        except DATABASE_ERRORS as exc:
            # The pushes stay unsettled; the next sync of the customer settles them.
            log.warning("push_not_settled", error=describe_db_error(exc))
            return
        now = utc_now()
        for received_at in settled.received_at:
            self._metrics.push_to_mirror.observe(max(0.0, (now - received_at).total_seconds()))
        if not settled.received_at and outcome.counts.inserted:
            self._metrics.unannounced.inc(outcome.counts.inserted)
        if settled.due_again:
            self._sweep_soon()
