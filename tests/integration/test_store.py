"""The store against the real databases: one transaction per page, honest counts, idempotence."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select, text

from sync.domain.customers_file import CustomerRow
from sync.domain.pager import CustomerCursor, VanishedCheck
from sync.domain.records import FileRecord, RejectedRecord, parse_record
from sync.mirror.models import CustomerFile, CustomerSyncState, RejectedRecordRow
from sync.mirror.pages import COPY_MIN_ROWS
from sync.mirror.store import MirrorStore


def api_record(record_id: int, **changes: object) -> dict:
    record = {
        "id": record_id,
        "corpid": "ww396db747d40d16f2",
        "salesId": 446755638177856,
        "customerId": 460155938357312,
        "createTime": "2022-02-28 14:14:48",
        "fileContent": json.dumps(
            {
                "name": "报价单",
                "url": "https://f.example.invalid/a.pdf",
                "size": "1.5MB",
                "type": "pdf",
                "fileId": "g/1",
            }
        ),
        "fileName": "报价单",
        "operatorId": 410992262547520,
        "authorName": "张伟",
        "followContent": None,
    }
    record.update(changes)
    return record


def parsed(*raws: dict) -> list[FileRecord]:
    out = [parse_record(r) for r in raws]
    assert all(isinstance(r, FileRecord) for r in out)
    return out


async def one_customer(store: MirrorStore):
    await store.customers.import_rows(
        [CustomerRow(460155938357312, "zhangwei", None, 446755638177856)]
    )
    (customer,) = await store.customers.keys()
    return customer


async def test_page_rows_and_cursor_commit_together(store: MirrorStore) -> None:
    customer = await one_customer(store)
    big = 2**62 + 12345  # beyond a double's exact range: must stay exact end to end
    cursor = CustomerCursor(
        pass_cursor_id=big, pass_top_id=big + 1, pass_started_at=datetime.now(UTC)
    )
    counts = await store.pages.save(
        customer,
        parsed(api_record(big + 1), api_record(big)),
        [],
        cursor,
        run_id=None,
        completed=False,
    )
    assert (counts.inserted, counts.updated, counts.unchanged) == (2, 0, 0)
    assert await store.pages.load_cursor(customer.ref) == cursor
    async with store.engine.connect() as conn:
        rows = (await conn.execute(select(CustomerFile).order_by(CustomerFile.id))).all()
    assert [r.id for r in rows] == [big, big + 1]
    assert rows[0].raw["id"] == big
    assert rows[0].create_time == datetime(2022, 2, 28, 6, 14, 48, tzinfo=UTC)
    assert rows[0].file_size_bytes == round(1.5 * 1024**2)
    assert rows[0].author_name == "张伟"


async def test_a_failing_page_leaves_neither_rows_nor_cursor(store: MirrorStore) -> None:
    customer = await one_customer(store)
    good = CustomerCursor(pass_cursor_id=100, pass_top_id=200, pass_started_at=datetime.now(UTC))
    await store.pages.save(
        customer, parsed(api_record(200), api_record(100)), [], good, run_id=None, completed=False
    )
    # A row the database refuses (the customer row does not exist) fails the whole transaction.
    broken = type(customer)(
        ref=customer.ref + 999, customer_id=1, external_user_id=None, user_id=None, sales_id=None
    )
    with pytest.raises(Exception):  # noqa: B017 - the driver's integrity error, whichever it is
        await store.pages.save(
            broken,
            parsed(api_record(50)),
            [],
            CustomerCursor(pass_cursor_id=50),
            run_id=None,
            completed=False,
        )
    assert await store.pages.load_cursor(customer.ref) == good
    async with store.engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(CustomerFile)) == 2


async def test_counts_updates_and_unchanged_and_repeats_in_a_page(store: MirrorStore) -> None:
    customer = await one_customer(store)
    cursor = CustomerCursor(high_water_id=300)
    await store.pages.save(
        customer, parsed(api_record(300), api_record(200)), [], cursor, run_id=None, completed=True
    )
    counts = await store.pages.save(
        customer,
        parsed(
            api_record(300, fileName="改名了"), api_record(200), api_record(200), api_record(100)
        ),
        [],
        cursor,
        run_id=None,
        completed=True,
    )
    assert (counts.inserted, counts.updated, counts.unchanged) == (1, 1, 1)
    async with store.engine.connect() as conn:
        assert (
            await conn.scalar(select(CustomerFile.file_name).where(CustomerFile.id == 300))
            == "改名了"
        )


async def test_vanished_records_are_marked_and_cleared_on_return(store: MirrorStore) -> None:
    customer = await one_customer(store)
    await store.pages.save(
        customer,
        parsed(api_record(3), api_record(2), api_record(1)),
        [],
        CustomerCursor(high_water_id=3),
        run_id=None,
        completed=True,
    )
    started = datetime.now(UTC)
    counts = await store.pages.save(
        customer,
        parsed(api_record(3), api_record(1)),
        [],
        CustomerCursor(high_water_id=3),
        run_id=None,
        completed=True,
        vanished=VanishedCheck(seen_since=started),
    )
    assert counts.deleted == 1
    async with store.engine.connect() as conn:
        deleted = (
            (
                await conn.execute(
                    select(CustomerFile.id).where(CustomerFile.deleted_at.is_not(None))
                )
            )
            .scalars()
            .all()
        )
    assert deleted == [2]
    counts = await store.pages.save(
        customer,
        parsed(api_record(2)),
        [],
        CustomerCursor(high_water_id=3),
        run_id=None,
        completed=True,
    )
    assert counts.updated == 1  # back from the dead counts as a change
    async with store.engine.connect() as conn:
        assert (
            await conn.scalar(select(func.count()).where(CustomerFile.deleted_at.is_not(None))) == 0
        )


async def test_rejected_items_are_kept_once_with_their_reason(store: MirrorStore) -> None:
    customer = await one_customer(store)
    bad = [
        parse_record({"id": "abc"}),
        parse_record({"fileName": "无id"}),
        parse_record({"id": "abc"}),
    ]
    assert all(isinstance(b, RejectedRecord) for b in bad)
    for _ in range(2):
        await store.pages.save(customer, [], bad, CustomerCursor(), run_id=None, completed=True)
    async with store.engine.connect() as conn:
        rows = (await conn.execute(select(RejectedRecordRow).order_by(RejectedRecordRow.id))).all()
    assert len(rows) == 2
    assert "not an integer" in rows[0].reason and json.loads(rows[0].payload) == {"id": "abc"}
    assert "no id" in rows[1].reason


async def test_failure_is_recorded_without_touching_the_cursor(store: MirrorStore) -> None:
    customer = await one_customer(store)
    cursor = CustomerCursor(
        high_water_id=10, pass_cursor_id=5, pass_top_id=20, pass_started_at=datetime.now(UTC)
    )
    await store.pages.save(
        customer, parsed(api_record(20)), [], cursor, run_id=None, completed=False
    )
    await store.pages.record_failure(customer.ref, "HTTP 502")
    await store.pages.record_failure(customer.ref, "HTTP 503")
    assert await store.pages.load_cursor(customer.ref) == cursor
    async with store.engine.connect() as conn:
        state = (await conn.execute(select(CustomerSyncState))).one()
    assert (state.last_error, state.consecutive_failures) == ("HTTP 503", 2)


async def test_import_is_idempotent_and_merges_identities(store: MirrorStore) -> None:
    rows = [CustomerRow(1, "u1", "wm-a", 11), CustomerRow(None, "u2", "wm-b", None)]
    first = await store.customers.import_rows(rows)
    again = await store.customers.import_rows(rows)
    assert (first.added, again.added, again.updated, again.unchanged) == (2, 0, 0, 2)
    # Learning the Tanmarket id of a customer first known by its WeCom id updates that row.
    learned = await store.customers.import_rows([CustomerRow(2, None, "wm-b", 22)])
    assert (learned.added, learned.updated) == (0, 1)
    customers = await store.customers.keys()
    assert [(c.customer_id, c.external_user_id, c.user_id, c.sales_id) for c in customers] == [
        (1, "wm-a", "u1", 11),
        (2, "wm-b", "u2", 22),
    ]
    assert [c.customer_id for c in await store.customers.keys(["wm-b"])] == [2]
    assert [c.customer_id for c in await store.customers.keys(["1"])] == [1]


async def test_every_statement_binds_its_data(store: MirrorStore) -> None:
    """A record full of SQL metacharacters lands verbatim (nothing is string-built)."""
    customer = await one_customer(store)
    nasty = "'); DROP TABLE customer_files; -- \" \\ %s :name ?"
    await store.pages.save(
        customer,
        parsed(api_record(7, fileName=nasty, authorName=nasty)),
        [],
        CustomerCursor(),
        run_id=None,
        completed=True,
    )
    async with store.engine.connect() as conn:
        assert await conn.scalar(text("SELECT file_name FROM customer_files WHERE id = 7")) == nasty


async def test_a_line_that_contradicts_known_identities_is_set_aside_not_fatal(
    store: MirrorStore,
) -> None:
    """Such a line is set aside with its number: it neither aborts the whole import (a unique
    violation) nor silently moves one customer's WeCom id onto another."""
    await store.customers.import_rows(
        [CustomerRow(1, None, "wm-a", None), CustomerRow(2, None, "wm-b", None)]
    )
    counts = await store.customers.import_rows(
        [
            CustomerRow(1, None, "wm-b", None, line=2),  # wm-b is customer 2's
            CustomerRow(3, None, "wm-a", None, line=3),  # wm-a is customer 1's
            CustomerRow(4, "u4", None, None, line=4),  # fine
        ]
    )
    assert (counts.added, counts.updated) == (1, 0)
    assert [c.line for c in counts.conflicts] == [2, 3]
    assert "wm-b" in counts.conflicts[0].reason and "2" in counts.conflicts[0].reason
    customers = await store.customers.keys()
    assert [(c.customer_id, c.external_user_id) for c in customers] == [
        (1, "wm-a"),
        (2, "wm-b"),
        (4, None),
    ]


async def test_a_large_batch_upserts_exactly_as_a_small_one_and_fails_whole(
    store: MirrorStore,
) -> None:
    # Large enough for PostgreSQL's COPY-and-merge path; SQLite runs the same page through its
    # one upsert statement, and both must leave the same rows and counts.
    customer = await one_customer(store)
    size = COPY_MIN_ROWS + 50
    first = [api_record(1000 + i) for i in range(size)]
    counts = await store.pages.save(
        customer,
        parsed(*first),
        [],
        CustomerCursor(high_water_id=1000),
        run_id=None,
        completed=True,
    )
    assert (counts.inserted, counts.updated, counts.unchanged) == (size, 0, 0)
    async with store.engine.begin() as conn:
        await conn.execute(
            CustomerFile.__table__.update()
            .where(CustomerFile.id == 1000)
            .values(deleted_at=datetime.now(UTC))
        )
    changed = [api_record(1000 + i, fileName=f"第{i}版") for i in range(50)]
    same = first[50:size]
    new = [api_record(5000 + i) for i in range(50)]
    cursor = CustomerCursor(high_water_id=5049)
    counts = await store.pages.save(
        customer, parsed(*changed, *same, *new), [], cursor, run_id=None, completed=True
    )
    assert (counts.inserted, counts.updated, counts.unchanged) == (50, 50, size - 50)
    async with store.engine.connect() as conn:
        rows = {r.id: r for r in (await conn.execute(select(CustomerFile))).all()}
    assert len(rows) == size + 50
    assert rows[1000].deleted_at is None and rows[1000].file_name == "第0版"
    assert rows[1049].raw["fileName"] == "第49版"
    assert rows[5049].source_customer_id == customer.ref
    assert rows[5049].create_time == datetime(2022, 2, 28, 6, 14, 48, tzinfo=UTC)
    assert rows[1100].first_seen_at < rows[1100].last_seen_at

    # A large page the database refuses (no such customer row) leaves nothing behind, and the
    # next large page is not handed anything of it.
    broken = type(customer)(
        ref=customer.ref + 999, customer_id=1, external_user_id=None, user_id=None, sales_id=None
    )
    with pytest.raises(Exception):  # noqa: B017 - the driver's integrity error, whichever it is
        await store.pages.save(
            broken,
            parsed(*(api_record(9000 + i) for i in range(size))),
            [],
            CustomerCursor(high_water_id=9999),
            run_id=None,
            completed=True,
        )
    more = [api_record(7000 + i) for i in range(size)]
    counts = await store.pages.save(
        customer,
        parsed(*more),
        [],
        CustomerCursor(high_water_id=7999),
        run_id=None,
        completed=True,
    )
    assert counts.inserted == size
    assert await store.pages.load_cursor(customer.ref) == CustomerCursor(high_water_id=7999)
    async with store.engine.connect() as conn:
        ids = set((await conn.execute(select(CustomerFile.id))).scalars())
    assert not any(9000 <= i < 9000 + size for i in ids)
    assert len(ids) == 2 * size + 50
