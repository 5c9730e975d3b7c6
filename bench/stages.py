"""CPU per record of each stage of the tool's pipeline, run in this process with the tool's own
code: fetch (the API client: sign, pace, post, read, decode, classify), parse (the record parser)
and write (the store's page writes, cursor included). Each stage is timed with the process's CPU
clock (``time.process_time``: every thread of this process, so the database driver's worker
thread counts too), not wall time, so a slow or shared machine shows in the figures less than it
does in records/s. The simulator is another process: its CPU is not counted."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

from sync.api.client import TanmaClient
from sync.api.responses import FilePage
from sync.config.settings import Settings
from sync.domain.customers import CustomerKey
from sync.domain.pager import CustomerCursor
from sync.domain.records import FileRecord, RejectedRecord, parse_record
from sync.mirror.store import open_store


@dataclass(frozen=True)
class StageCpu:
    records: int
    fetch_us: float
    parse_us: float
    write_us: float


async def _fetch(
    client: TanmaClient, keys: Sequence[CustomerKey], concurrency: int, page_size: int
) -> list[tuple[CustomerKey, FilePage]]:
    pages: list[tuple[CustomerKey, FilePage]] = []
    pending = iter(keys)

    async def worker() -> None:
        for key in pending:
            last_id = None
            while True:
                page = await client.list_files(key, last_id, page_size)
                pages.append((key, page))
                if len(page.items) < page_size:
                    break
                last = page.items[-1]
                last_id = last["id"] if isinstance(last, dict) else None
                if last_id is None:
                    break

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return pages


def _parse(
    pages: Sequence[tuple[CustomerKey, FilePage]],
) -> list[tuple[CustomerKey, list[FileRecord], list[RejectedRecord]]]:
    parsed = []
    for key, page in pages:
        records: list[FileRecord] = []
        rejected: list[RejectedRecord] = []
        for item in page.items:
            outcome = parse_record(item, strings_checked=page.strings_checked)
            if isinstance(outcome, FileRecord):
                records.append(outcome)
            else:
                rejected.append(outcome)
        parsed.append((key, records, rejected))
    return parsed


async def stage_cpu(settings: Settings) -> StageCpu:
    """Every stage over every customer of the (already imported, migrated) mirror."""
    async with open_store(settings) as store, TanmaClient(settings) as client:
        keys = await store.customers.keys()
        started = time.process_time()
        pages = await _fetch(client, keys, settings.sync_concurrency, settings.sync_page_size)
        fetched = time.process_time()
        parsed = _parse(pages)
        parsed_at = time.process_time()
        records = sum(len(r) for _, r, _ in parsed)

        async def write(
            key: CustomerKey, rows: list[FileRecord], bad: list[RejectedRecord]
        ) -> None:
            last = rows[-1].id if rows else None
            await store.pages.save(
                key, rows, bad, CustomerCursor(pass_cursor_id=last), run_id=None, completed=False
            )

        pending = iter(parsed)

        async def writer() -> None:
            for key, rows, bad in pending:
                await write(key, rows, bad)

        await asyncio.gather(*(writer() for _ in range(settings.sync_concurrency)))
        written = time.process_time()
    per = 1e6 / max(records, 1)
    return StageCpu(
        records,
        (fetched - started) * per,
        (parsed_at - fetched) * per,
        (written - parsed_at) * per,
    )
