"""The lean comparison: the loop a user writes first. ``requests`` in one thread, one page at a
time, and one upsert transaction per page with the plain synchronous driver (``sqlite3``, or
``psycopg2`` with ``execute_values``). Same signing, same rows and columns as the raw pipeline
(``bench/raw.py``); no concurrency, no validation, no cursor rows, no retries."""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg2
import psycopg2.extras
import requests

from bench.databases import asyncpg_dsn, sqlite_path
from bench.raw import COLUMNS, ENDPOINT, Customer, WalkCount, _row, _upsert_sql
from bench.simproc import APP_ID, APP_KEY

Upsert = Callable[[int, list[dict[str, Any]]], None]


def _sqlite_upsert(db: sqlite3.Connection) -> Upsert:
    sql = _upsert_sql(", ".join("?" * len(COLUMNS)))

    def upsert(ref: int, items: list[dict[str, Any]]) -> None:
        now = datetime.now(UTC).replace(tzinfo=None).isoformat(" ")
        rows = [_row(item, ref, now, text_times=True) for item in items]
        db.execute("BEGIN")
        db.executemany(sql, rows)
        db.execute("COMMIT")

    return upsert


def _postgres_upsert(conn: Any) -> Upsert:
    sql = _upsert_sql("%s").replace("VALUES (%s)", "VALUES %s")

    def upsert(ref: int, items: list[dict[str, Any]]) -> None:
        now = datetime.now(UTC)
        rows = [_row(item, ref, now, text_times=False) for item in items]
        with conn, conn.cursor() as cursor:  # one transaction
            psycopg2.extras.execute_values(cursor, sql, rows, page_size=len(rows))

    return upsert


def _walk(
    base_url: str, customers: Sequence[Customer], page_size: int, upsert: Upsert
) -> WalkCount:
    count = WalkCount()
    started = time.perf_counter()
    with requests.Session() as session:
        for ref, customer_id in customers:
            last_id = None
            while True:
                payload: dict[str, Any] = {"customerId": customer_id, "pageSize": page_size}
                if last_id is not None:
                    payload["lastId"] = last_id
                body = orjson.dumps(payload)
                stamp = str(int(time.time() * 1000))
                digest = hashlib.sha256(
                    APP_ID.encode() + stamp.encode() + body + APP_KEY.encode()
                ).hexdigest()
                headers = {"Content-Type": "application/json", "appId": APP_ID,
                           "timestamp": stamp, "sign": digest}  # fmt: skip
                response = session.post(base_url + ENDPOINT, data=body, headers=headers)
                count.requests += 1
                document = response.json()
                if document.get("code") != 0:
                    raise RuntimeError(f"API error: {document!r}"[:300])
                items = document["data"]["result"]
                count.records += len(items)
                if items:
                    upsert(ref, items)
                if len(items) < page_size:
                    break
                last_id = items[-1]["id"]
    count.seconds = time.perf_counter() - started
    return count


def lean_pass(backend: str, url: str, base_url: str, page_size: int) -> WalkCount:
    """Every customer's pages into the mirror at ``url``, one page at a time."""
    if backend == "sqlite":
        db = sqlite3.connect(sqlite_path(url), isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            customers = list(db.execute("SELECT id, customer_id FROM customers ORDER BY id"))
            return _walk(base_url, customers, page_size, _sqlite_upsert(db))
        finally:
            db.close()
    conn = psycopg2.connect(asyncpg_dsn(url))
    try:
        with conn, conn.cursor() as cursor:
            cursor.execute("SELECT id, customer_id FROM customers ORDER BY id")
            customers = [(int(a), int(b)) for a, b in cursor.fetchall()]
        return _walk(base_url, customers, page_size, _postgres_upsert(conn))
    finally:
        conn.close()
