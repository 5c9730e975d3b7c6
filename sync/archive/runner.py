"""An archive pass: take pending files newest first, download each into the store, record the
outcome. Its own concurrency (``SYNC_ARCHIVE_CONCURRENCY``) and its own pacer
(``SYNC_ARCHIVE_RATE_LIMIT`` download attempts per second), apart from the API's budget.

Transient failures (timeouts, resets, 5xx, 429, store errors) are tried again within the pass
with full-jitter exponential backoff (tenacity), up to ``SYNC_ARCHIVE_MAX_ATTEMPTS``; every
failure is recorded with its reason and tried again by later passes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from sync.api.pacing import RequestPacer
from sync.archive.fetch import Fetched, Fetcher
from sync.archive.location import ArchiveUrlError, parse_archive_url
from sync.archive.objects import ArchiveObjects, open_object_store
from sync.archive.outcomes import ArchiveFailure, Reason, next_try_delay
from sync.archive.policy import HostPatternError, HostPolicy
from sync.config.settings import Settings
from sync.domain.errors import ConfigError
from sync.mirror.archive import ArchiveItem, ArchiveTable
from sync.mirror.database import DATABASE_ERRORS, describe_db_error

log = structlog.get_logger("tanma_sync.archive")


@dataclass
class ArchiveTally:
    archived: int = 0  # files now archived
    stored: int = 0  # of those, new objects in the store (the rest were bytes it already had)
    bytes: int = 0  # bytes downloaded into archived files
    failed: Counter[str] = field(default_factory=Counter)  # by reason
    attempts: int = 0  # download attempts, retries included

    @property
    def failures(self) -> int:
        return sum(self.failed.values())


def archive_policy(settings: Settings) -> HostPolicy:
    try:
        return HostPolicy.parse(settings.sync_archive_hosts)
    except HostPatternError as exc:
        raise ConfigError(f"setting SYNC_ARCHIVE_HOSTS: {exc}") from None


def archive_objects(settings: Settings) -> ArchiveObjects:
    """The store SYNC_ARCHIVE_URL names; ConfigError when it is off or malformed."""
    if not settings.archive_enabled:
        raise ConfigError(
            "setting SYNC_ARCHIVE_URL is not set: write file:///absolute/dir or "
            "s3://bucket/prefix (see .env.example)"
        )
    try:
        location = parse_archive_url(settings.sync_archive_url)
    except ArchiveUrlError as exc:
        raise ConfigError(f"setting SYNC_ARCHIVE_URL: {exc}") from None
    store = open_object_store(
        location,
        endpoint=settings.sync_archive_s3_endpoint,
        region=settings.sync_archive_s3_region,
        access_key_id=settings.sync_archive_s3_access_key_id,
        secret_access_key=settings.sync_archive_s3_secret_access_key.get_secret_value(),
    )
    return ArchiveObjects(store, location)


def archive_fetcher(settings: Settings) -> Fetcher:
    return Fetcher(
        archive_policy(settings),
        max_bytes=settings.sync_archive_max_bytes,
        timeout_s=settings.sync_archive_timeout,
        max_redirects=settings.sync_archive_max_redirects,
        connections=settings.sync_archive_concurrency,
    )


class Archiver:
    def __init__(
        self,
        settings: Settings,
        table: ArchiveTable,
        objects: ArchiveObjects,
        fetcher: Fetcher,
        *,
        claimer: str,
        stopping: Callable[[], bool] = lambda: False,
        on_file: Callable[[ArchiveTally], None] | None = None,
    ) -> None:
        self.settings = settings
        self.table = table
        self.objects = objects
        self.fetcher = fetcher
        self.claimer = claimer
        self.stopping = stopping
        self.on_file = on_file
        self.pacer = RequestPacer(settings.sync_archive_rate_limit, burst=settings.sync_rate_burst)
        self._in_flight: set[int] = set()

    async def run(self, *, due_only: bool, limit: int | None = None) -> ArchiveTally:
        """One pass over the pending files (``due_only``: those whose next try has come),
        newest first; each file is tried once per pass (with in-place retries)."""
        s = self.settings
        tally = ArchiveTally()
        queue: asyncio.Queue[ArchiveItem | None] = asyncio.Queue(maxsize=s.sync_archive_concurrency)
        workers = [
            asyncio.create_task(self._worker(queue, tally))
            for _ in range(s.sync_archive_concurrency)
        ]
        renewer = asyncio.create_task(self._renew_claims())
        try:
            await self._feed(queue, due_only=due_only, limit=limit)
            for _ in workers:
                await queue.put(None)
            await asyncio.gather(*workers)
        except BaseException:
            # Cancelled (a daemon out of shutdown time) or a database failure: stop every
            # download now; each deletes its temporary, and the claims are handed back.
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            with contextlib.suppress(*DATABASE_ERRORS):
                await asyncio.shield(self.table.release(sorted(self._in_flight)))
            self._in_flight.clear()
            raise
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
        return tally

    async def _feed(
        self, queue: asyncio.Queue[ArchiveItem | None], *, due_only: bool, limit: int | None
    ) -> None:
        """Claim pending files batch by batch, newest first, and queue them for the workers."""
        s = self.settings
        below: int | None = None
        left = limit
        while not self.stopping() and (left is None or left > 0):
            size = (
                4 * s.sync_archive_concurrency
                if left is None
                else min(left, 4 * s.sync_archive_concurrency)
            )
            batch = await self.table.claim(
                self.claimer,
                size,
                ttl_s=s.sync_archive_claim_ttl,
                due_only=due_only,
                below_id=below,
            )
            if not batch:
                return
            below = batch[-1].file_id
            if left is not None:
                left -= len(batch)
            self._in_flight.update(item.file_id for item in batch)
            for index, item in enumerate(batch):
                if self.stopping():
                    rest = [i.file_id for i in batch[index:]]
                    self._in_flight.difference_update(rest)
                    await self.table.release(rest)
                    return
                await queue.put(item)

    async def _worker(self, queue: asyncio.Queue[ArchiveItem | None], tally: ArchiveTally) -> None:
        while (item := await queue.get()) is not None:
            try:
                await self._archive_one(item, tally)
            finally:
                self._in_flight.discard(item.file_id)
            if self.on_file is not None:
                self.on_file(tally)

    async def _archive_one(self, item: ArchiveItem, tally: ArchiveTally) -> None:
        s = self.settings
        try:
            if not item.url:
                raise ArchiveFailure(Reason.NO_URL, "the record has no file URL")
            refused = self.fetcher.refusal(item.url)
            if refused is not None:
                raise refused
            retrying = AsyncRetrying(
                stop=stop_after_attempt(s.sync_archive_max_attempts),
                wait=wait_random_exponential(
                    multiplier=s.sync_archive_backoff_base, max=s.sync_archive_backoff_max
                ),
                retry=retry_if_exception(
                    lambda exc: isinstance(exc, ArchiveFailure) and exc.transient
                ),
                reraise=True,
            )
            async for attempt in retrying:
                with attempt:
                    fetched, new = await self._download(item, tally)
        except ArchiveFailure as failure:
            tally.failed[failure.reason.value] += 1
            retry_in = next_try_delay(
                item.attempts + 1, s.sync_archive_retry_base, s.sync_archive_retry_max
            )
            await self.table.record_failure(
                item.file_id, failure.reason.value, str(failure), retry_in_s=retry_in
            )
            log.warning(
                "file_not_archived",
                file_id=item.file_id,
                reason=failure.reason.value,
                error=str(failure),
            )
            return
        await self.table.record_archived(item.file_id, fetched.sha256, fetched.length)
        tally.archived += 1
        tally.stored += int(new)
        tally.bytes += fetched.length

    async def _download(self, item: ArchiveItem, tally: ArchiveTally) -> tuple[Fetched, bool]:
        assert item.url is not None
        await self.pacer.acquire()
        tally.attempts += 1
        temp = self.objects.begin()
        try:
            fetched = await self.fetcher.fetch(
                item.url, size_text=item.size_text, file_type=item.file_type, write=temp.write
            )
            await temp.finish()
            new = await self.objects.publish(temp, fetched.sha256)
        except BaseException:
            await asyncio.shield(temp.discard())
            raise
        return fetched, new

    async def _renew_claims(self) -> None:
        ttl = self.settings.sync_archive_claim_ttl
        while True:
            await asyncio.sleep(ttl / 3)
            try:
                await self.table.renew(sorted(self._in_flight), ttl)
            except DATABASE_ERRORS as exc:
                log.warning("archive_claims_not_renewed", error=describe_db_error(exc))
