"""A mirror seeded for the console's tests: many customers in every state, written in bulk
(100,000 take a few seconds), with runs over the last week, files, and hostile text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert

from sync.mirror.models import (
    Customer,
    CustomerFile,
    CustomerSchedule,
    CustomerSyncState,
    RejectedRecordRow,
    SyncRun,
    SyncWorker,
)
from sync.mirror.store import MirrorStore

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'
_CHUNK = 5_000


def seeded_state(index: int) -> str:
    """Which state the seed gives the customer at ``index`` (0-based)."""
    cycle = index % 100
    if cycle < 60:
        return "ok"
    if cycle < 72:
        return "stale"
    if cycle < 80:
        return "failing"
    if cycle < 92:
        return "never_synced"
    if cycle < 96:
        return "incomplete"
    return "gone"


async def seed_mirror(store: MirrorStore, customers: int, *, max_staleness_s: float) -> datetime:
    """``customers`` customers (row ids 1..N), their states by ``seeded_state``; returns the
    seed's "now"."""
    now = datetime.now(UTC)
    async with store.engine.begin() as conn:
        for start in range(0, customers, _CHUNK):
            people: list[dict[str, Any]] = []
            states: list[dict[str, Any]] = []
            for i in range(start, min(start + _CHUNK, customers)):
                state = seeded_state(i)
                people.append(
                    {
                        "id": i + 1,
                        "customer_id": 10_000_000 + i,
                        "external_user_id": f"wm{i:07d}",
                        "nickname": HOSTILE if i == 7 else f"客户 {i}",
                        "owner_name": f"owner {i % 37}",
                        "created_at": now,
                        "updated_at": now,
                        "gone_at": now if state == "gone" else None,
                    }
                )
                if state == "never_synced":
                    continue
                age = (i % 60) / 60 * max_staleness_s * 0.9
                if state == "stale":
                    age = max_staleness_s * (1.2 + (i % 5))
                states.append(
                    {
                        "customer_ref": i + 1,
                        "high_water_id": 460_000_000_000_000 + i,
                        "last_attempt_at": now - timedelta(seconds=age),
                        "last_success_at": now - timedelta(seconds=age),
                        "consecutive_failures": 2 if state == "failing" else 0,
                        "last_error": f"HTTP 502 {HOSTILE}" if state == "failing" else None,
                        "pass_started_at": now if state == "incomplete" else None,
                        "pass_full": False,
                    }
                )
            await conn.execute(insert(Customer), people)
            if states:
                await conn.execute(insert(CustomerSyncState), states)
        runs = []
        for hour in range(24 * 7):
            started = now - timedelta(hours=hour, minutes=30)
            runs.append(
                {
                    "mode": "daemon" if hour % 24 else "backfill_full",
                    "status": "partial" if hour % 11 == 0 else "ok",
                    "started_at": started,
                    "finished_at": started + timedelta(minutes=20),
                    "customers_total": 100,
                    "customers_ok": 98,
                    "customers_failed": 2,
                    "records_inserted": 40 + hour % 17,
                    "records_updated": hour % 5,
                    "records_unchanged": 0,
                    "records_rejected": 0,
                    "records_deleted": 0,
                    "requests": 3_000 + 100 * (hour % 9),
                    "retries": 0,
                    "errors": 0,
                    "error_summary": HOSTILE if hour == 3 else None,
                    "worker_id": "host-a:101",
                }
            )
        await conn.execute(insert(SyncRun), runs)
        files = [
            {
                "id": 460_000_000_000_000 + n,
                "source_customer_id": 1,
                "customer_id": 10_000_000,
                "create_time": now - timedelta(minutes=n),
                "file_name": HOSTILE if n == 119 else f"合同 {n}.pdf",
                "file_url": "javascript:alert(1)",
                "file_type": "pdf",
                "file_size_text": "1.2MB",
                "raw": {"id": n},
                "first_seen_at": now,
                "last_seen_at": now,
            }
            for n in range(120)
        ]
        await conn.execute(insert(CustomerFile), files)
        await conn.execute(
            insert(RejectedRecordRow),
            [
                {
                    "customer_ref": 1,
                    "record_id": f"bad{n}",
                    "reason": "id is not an integer" if n % 2 else f"NUL in text {HOSTILE}",
                    "payload": '{"id": "x", "fileName": "' + HOSTILE + '"}',
                    "payload_sha256": f"{n:064x}",
                    "first_rejected_at": now,
                    "last_rejected_at": now,
                }
                for n in range(30)
            ],
        )
        await conn.execute(
            insert(SyncWorker),
            [
                {
                    "worker_id": "host-a:101",
                    "hostname": "host-a",
                    "pid": 101,
                    "started_at": now - timedelta(hours=3),
                    "heartbeat_at": now,
                }
            ],
        )
        await conn.execute(
            insert(CustomerSchedule),
            [
                {
                    "customer_ref": ref,
                    "lease_owner": "host-a:101",
                    "lease_expires_at": now + timedelta(minutes=2),
                    "next_due_at": now,
                }
                for ref in range(1, min(customers, 4) + 1)
            ],
        )
    return now
