"""The baselines: what a hand-written script does with aiohttp, orjson and a plain driver.

``walk`` is the whole fetching side of such a script (sign, post, parse, follow ``lastId``);
``SqliteSink`` and ``PostgresSink`` are its writing side (one upsert transaction per page, the
same columns the mirror fills). No validation, no cursor bookkeeping, no retries: the point is
the floor of what moving these records costs, to hold the tool against.
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import orjson

from bench.databases import asyncpg_dsn, sqlite_path
from bench.simproc import APP_ID, APP_KEY
from sync.api.client import search_payload
from sync.domain.discovery import DiscoveryWalk

ENDPOINT = "/api/v3/customer/list-file-of-customer"
COLUMNS = (
    "id",
    "source_customer_id",
    "corp_id",
    "sales_id",
    "customer_id",
    "create_time",
    "file_name",
    "file_url",
    "file_type",
    "file_size_text",
    "file_size_bytes",
    "file_store_id",
    "operator_id",
    "author_name",
    "follow_content",
    "raw",
    "first_seen_at",
    "last_seen_at",
    "deleted_at",
)
_UPDATED = [c for c in COLUMNS if c not in ("id", "first_seen_at")]
_EIGHT_HOURS = timedelta(hours=8)

# (customers row id, upstream customer id)
Customer = tuple[int, int]
PageSink = Callable[[int, list[dict[str, Any]]], Awaitable[None]]


@dataclass
class WalkCount:
    requests: int = 0
    records: int = 0
    seconds: float = 0.0


async def _signed_post(
    session: aiohttp.ClientSession, url: str, payload: dict[str, Any]
) -> dict[str, Any]:
    """One signed POST, as a hand-written script does it: the decoded answer, or RuntimeError
    for an API error code."""
    body = orjson.dumps(payload)
    stamp = str(int(time.time() * 1000))
    digest = hashlib.sha256(APP_ID.encode() + stamp.encode() + body + APP_KEY.encode()).hexdigest()
    headers = {
        "Content-Type": "application/json",
        "appId": APP_ID,
        "timestamp": stamp,
        "sign": digest,
    }
    async with session.post(url, data=body, headers=headers) as response:
        content = await response.read()
    document: dict[str, Any] = orjson.loads(content)
    if document.get("code") != 0:
        raise RuntimeError(f"API error: {document!r}"[:300])
    return document


async def walk(
    base_url: str,
    customers: Sequence[Customer],
    *,
    concurrency: int,
    page_size: int,
    sink: PageSink | None,
) -> WalkCount:
    """Every page of every customer, ``concurrency`` customers at a time; ``sink`` gets each."""
    url = base_url + ENDPOINT
    count = WalkCount()
    pending = iter(customers)
    connector = aiohttp.TCPConnector(limit=concurrency * 2)

    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            for ref, customer_id in pending:
                last_id = None
                while True:
                    payload: dict[str, Any] = {"customerId": customer_id, "pageSize": page_size}
                    if last_id is not None:
                        payload["lastId"] = last_id
                    document = await _signed_post(session, url, payload)
                    count.requests += 1
                    items = document["data"]["result"]
                    count.records += len(items)
                    if sink is not None and items:
                        await sink(ref, items)
                    if len(items) < page_size:
                        break
                    last_id = items[-1]["id"]

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        count.seconds = time.perf_counter() - started
    return count


async def prefetch(
    base_url: str, customers: Sequence[Customer], *, concurrency: int, page_size: int
) -> list[tuple[int, bytes]]:
    """Every page's raw items as bytes (for the write-path-alone measurement)."""
    pages: list[tuple[int, bytes]] = []

    async def keep(ref: int, items: list[dict[str, Any]]) -> None:
        pages.append((ref, orjson.dumps(items)))

    await walk(base_url, customers, concurrency=concurrency, page_size=page_size, sink=keep)
    return pages


def _row(item: dict[str, Any], ref: int, now: Any, *, text_times: bool) -> tuple[Any, ...]:
    content = item.get("fileContent")
    if isinstance(content, str):
        try:
            content = orjson.loads(content)
        except orjson.JSONDecodeError:
            content = None
    if not isinstance(content, dict):
        content = {}
    created: Any = None
    stamp = item.get("createTime")
    if isinstance(stamp, str):
        created = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S") - _EIGHT_HOURS
        created = created.isoformat(" ") if text_times else created.replace(tzinfo=UTC)
    size = content.get("size")
    return (
        item["id"],
        ref,
        item.get("corpid"),
        item.get("salesId"),
        item.get("customerId"),
        created,
        item.get("fileName") or content.get("name"),
        content.get("url"),
        content.get("type"),
        size,
        None,
        content.get("fileId"),
        item.get("operatorId"),
        item.get("authorName"),
        item.get("followContent"),
        orjson.dumps(item).decode(),
        now,
        now,
        None,
    )


def _upsert_sql(placeholders: str) -> str:
    updates = ", ".join(f"{c} = excluded.{c}" for c in _UPDATED)
    return (
        f"INSERT INTO customer_files ({', '.join(COLUMNS)}) VALUES ({placeholders}) "  # noqa: S608 - fixed column names
        f"ON CONFLICT (id) DO UPDATE SET {updates}"
    )


class SqliteSink:
    """Plain ``sqlite3`` with the tool's journal and sync pragmas, one transaction per page.
    Foreign keys stay off, SQLite's default and what a hand-written script gets; the tool
    turns them on, which costs it about 3 µs a record here (BENCHMARKS.md)."""

    def __init__(self, path: str) -> None:
        self._db = sqlite3.connect(path, isolation_level=None)
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=30000"):
            self._db.execute(f"PRAGMA {pragma}")
        self._sql = _upsert_sql(", ".join("?" * len(COLUMNS)))

    def customers(self) -> list[Customer]:
        return list(self._db.execute("SELECT id, customer_id FROM customers ORDER BY id"))

    async def __call__(self, ref: int, items: list[dict[str, Any]]) -> None:
        now = datetime.now(UTC).replace(tzinfo=None).isoformat(" ")
        rows = [_row(item, ref, now, text_times=True) for item in items]
        self._db.execute("BEGIN IMMEDIATE")
        self._db.executemany(self._sql, rows)
        self._db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()


class PostgresSink:
    """``asyncpg`` with a pool as large as the concurrency, one transaction per page."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._sql = _upsert_sql(", ".join(f"${i}" for i in range(1, len(COLUMNS) + 1)))

    @classmethod
    async def open(cls, dsn: str, size: int) -> PostgresSink:
        pool = await asyncpg.create_pool(dsn, min_size=size, max_size=size)
        return cls(pool)

    async def customers(self) -> list[Customer]:
        rows = await self._pool.fetch("SELECT id, customer_id FROM customers ORDER BY id")
        return [(r["id"], r["customer_id"]) for r in rows]

    async def __call__(self, ref: int, items: list[dict[str, Any]]) -> None:
        now = datetime.now(UTC)
        rows = [_row(item, ref, now, text_times=False) for item in items]
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.executemany(self._sql, rows)

    async def close(self) -> None:
        await self._pool.close()


async def write_pages(
    pages: Sequence[tuple[int, bytes]], sink: PageSink, *, concurrency: int
) -> float:
    """Parse and upsert pre-fetched pages; returns the seconds it took."""
    pending = iter(pages)

    async def worker() -> None:
        for ref, raw in pending:
            await sink(ref, orjson.loads(raw))

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started


async def insert_customers(backend: str, url: str, csv: bytes) -> float:
    """Seconds a script takes to parse a customers CSV and INSERT every row in one
    transaction with a plain driver: no matching, no identity checks, no upsert."""
    started = time.perf_counter()
    lines = csv.decode().splitlines()[1:]
    now = datetime.now(UTC)
    rows = []
    for line in lines:
        customer_id, user_id, external_user_id, sales_id = line.split(",")
        rows.append((int(customer_id), user_id, external_user_id, int(sales_id)))
    sql = (
        "INSERT INTO customers (customer_id, user_id, external_user_id, sales_id, created_at, "
        "updated_at) VALUES ({})"
    )
    if backend == "sqlite":
        db = sqlite3.connect(sqlite_path(url), isolation_level=None)
        try:
            stamp = now.strftime("%Y-%m-%d %H:%M:%S.%f")
            db.execute("BEGIN")
            db.executemany(sql.format("?, ?, ?, ?, ?, ?"), [(*r, stamp, stamp) for r in rows])
            db.execute("COMMIT")
        finally:
            db.close()
    else:
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            async with conn.transaction():
                await conn.executemany(
                    sql.format("$1, $2, $3, $4, $5, $6"), [(*r, now, now) for r in rows]
                )
        finally:
            await conn.close()
    return time.perf_counter() - started


SEARCH_ENDPOINT = "/api/v3/customer/search"


async def search_walk(base_url: str, walk: DiscoveryWalk) -> WalkCount:
    """The customer search's windows as a discovery walks them (the same pure walk, so the same
    requests), one request at a time, with nothing done to the answers but reading each item's
    id: what serving the discovery's requests costs the simulator, and the floor of its wall
    time."""
    url = base_url + SEARCH_ENDPOINT
    count = WalkCount()
    async with aiohttp.ClientSession() as session:
        started = time.perf_counter()
        while (query := walk.next_query()) is not None:
            document = await _signed_post(session, url, search_payload(query))
            count.requests += 1
            data = document["data"]
            items = data["data"]
            count.records += len(items)
            walk.record(query, data["totalCount"], [str(item["customerId"]) for item in items])
        count.seconds = time.perf_counter() - started
    return count
