"""The archive's database side on both databases: claims newest first, that two claimers
never share a file, claims that expire, the daemon's due times, outcomes and coverage."""

from __future__ import annotations

import asyncio

from sync.domain.pager import CustomerCursor
from sync.mirror.store import MirrorStore
from tests.integration.test_store import api_record, one_customer, parsed
from tests.waiting import until

IDS = list(range(1000, 1020))


async def with_files(store: MirrorStore) -> None:
    customer = await one_customer(store)
    await store.pages.save(
        customer,
        parsed(*(api_record(i) for i in IDS)),
        [],
        CustomerCursor(),
        run_id=None,
        completed=True,
    )


async def test_claims_go_newest_first_and_never_to_two_claimers(store: MirrorStore) -> None:
    await with_files(store)
    first, second = await asyncio.gather(
        store.archive.claim("a", 15, ttl_s=60, due_only=True),
        store.archive.claim("b", 15, ttl_s=60, due_only=True),
    )
    a, b = [i.file_id for i in first], [i.file_id for i in second]
    assert not set(a) & set(b)
    assert sorted(a + b) == IDS  # 30 asked, 20 there: every file went to exactly one
    assert a == sorted(a, reverse=True) and b == sorted(b, reverse=True)
    assert await store.archive.claim("c", 5, ttl_s=60, due_only=True) == []
    await store.archive.release(a)
    again = await store.archive.claim("c", 50, ttl_s=60, due_only=False, below_id=max(a))
    assert [i.file_id for i in again] == sorted((i for i in a if i < max(a)), reverse=True)


async def test_an_expired_claim_is_free(store: MirrorStore) -> None:
    await with_files(store)
    assert len(await store.archive.claim("dead", 20, ttl_s=0.5, due_only=True)) == 20
    assert await store.archive.claim("alive", 20, ttl_s=60, due_only=True) == []
    taken: list[int] = []

    async def expired_and_taken() -> bool:
        taken.extend(
            i.file_id for i in await store.archive.claim("alive", 20, ttl_s=60, due_only=True)
        )
        return len(taken) == 20

    await until(expired_and_taken, 30, "the dead claimer's claims to expire")


async def test_outcomes_due_times_and_coverage(store: MirrorStore) -> None:
    await with_files(store)
    items = await store.archive.claim("a", 3, ttl_s=60, due_only=True)
    done, failed, _ = (i.file_id for i in items)
    await store.archive.record_archived(done, "ab" * 32, 1234)
    await store.archive.record_failure(failed, "not_found", "HTTP 404", retry_in_s=3600)
    await store.archive.release([items[2].file_id])

    due = await store.archive.claim("b", 50, ttl_s=60, due_only=True)
    assert done not in {i.file_id for i in due} and failed not in {i.file_id for i in due}
    await store.archive.release([i.file_id for i in due])
    anyway = await store.archive.claim("b", 50, ttl_s=60, due_only=False)
    assert failed in {i.file_id for i in anyway}  # the CLI tries every pending file
    assert next(i for i in anyway if i.file_id == failed).attempts == 1

    rows = {(r.status, r.reason): r for r in await store.archive.coverage()}
    assert rows[("archived", None)].files == 1 and rows[("archived", None)].bytes == 1234
    assert rows[("failed", "not_found")].files == 1
    assert rows[("pending", None)].files == len(IDS) - 2
    assert await store.archive.stored_objects() == {"objects": 1, "bytes": 1234}
    assert await store.archive.pending_count(due_only=False) == len(IDS) - 1
