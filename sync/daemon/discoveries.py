"""The daemon's discovery jobs: an incremental discovery on ``SYNC_DISCOVERY_SCHEDULE`` and a
full one on ``SYNC_DISCOVERY_FULL_SCHEDULE``, one at a time, under the discovery lease (so on
a shared PostgreSQL only one daemon discovers at once) and through the daemon's own client (so
within its share of the rate limit). Failures cost one discovery, never the daemon."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

from sync.api.client import TanmaClient
from sync.config.settings import Settings
from sync.daemon.metrics import DaemonMetrics
from sync.domain.errors import CredentialsRejected, FatalError
from sync.engine.discovery import DiscoveryBusy, DiscoveryEngine, DiscoveryReport
from sync.mirror.database import DATABASE_ERRORS, describe_db_error
from sync.mirror.store import MirrorStore

log = structlog.get_logger("tanma_sync.daemon")


class DiscoveryJobs:
    def __init__(
        self,
        settings: Settings,
        store: MirrorStore,
        client: TanmaClient,
        metrics: DaemonMetrics,
        *,
        worker_id: str,
        stopping: Callable[[], bool],
        on_credentials_rejected: Callable[[str], None],
    ) -> None:
        self._engine = DiscoveryEngine(
            settings, store, client, worker_id=worker_id, stopping=stopping
        )
        self._metrics = metrics
        self._lock = asyncio.Lock()
        self._on_credentials_rejected = on_credentials_rejected
        self.last_report: DiscoveryReport | None = None

    async def run(self, *, full: bool) -> DiscoveryReport | None:
        """One discovery, unless one is running here already; None when none ran."""
        kind = "full" if full else "incremental"
        if self._lock.locked():
            log.info("discovery_skipped", kind=kind, reason="a discovery is running")
            return None
        async with self._lock:
            try:
                report = await self._engine.discover(full=full)
            except DiscoveryBusy as exc:
                self._metrics.discoveries.labels(kind, "skipped").inc()
                log.info("discovery_skipped", kind=kind, reason=str(exc))
                return None
            except CredentialsRejected as exc:
                self._on_credentials_rejected(str(exc))
                self._metrics.discoveries.labels(kind, "failed").inc()
                log.error("discovery_failed", kind=kind, reason=str(exc))
                return None
            except FatalError as exc:
                self._metrics.discoveries.labels(kind, "failed").inc()
                log.error("discovery_failed", kind=kind, reason=str(exc))
                return None
            except DATABASE_ERRORS as exc:
                self._metrics.discoveries.labels(kind, "failed").inc()
                log.error("discovery_failed", kind=kind, reason=describe_db_error(exc))
                return None
            except Exception:
                # A bug costs this discovery, not the daemon; the next one resumes the walk.
                self._metrics.discoveries.labels(kind, "failed").inc()
                log.exception("discovery_failed", kind=kind, reason="internal error")
                return None
        self.last_report = report
        self._metrics.discoveries.labels(kind, report.status.value).inc()
        counts = report.counts
        for action, amount in (
            ("new", counts.new),
            ("updated", counts.updated),
            ("gone", counts.gone),
            ("rejected", counts.rejected),
        ):
            if amount:
                self._metrics.discovered.labels(action).inc(amount)
        return report
