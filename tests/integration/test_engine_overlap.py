"""A worker takes its next customer while the last page of the one before is written, and
never has more than one customer finishing: on SQLite and PostgreSQL, with one worker."""

from __future__ import annotations

import asyncio
from typing import Any

from sync.cli.passes import sync_pass
from sync.domain.customers import CustomerKey
from sync.domain.pager import PassMode
from sync.domain.tally import PageCounts
from sync.mirror.store import MirrorStore
from sync.sim import SimDataset
from tests.helpers import StartSim, assert_mirror_equals, fetch_mirror, make_settings
from tests.reliability.support import import_customers
from tests.waiting import until


class HeldFirstWrite:
    """Around the store's page writes: the first customer's write waits for ``release``;
    what the engine asked of the store, in order, is in ``events``."""

    def __init__(self, store: MirrorStore) -> None:
        self.events: list[tuple[str, int]] = []
        self.release = asyncio.Event()
        self._held: int | None = None
        self._save = store.pages.save
        self._load = store.pages.load_cursor_and_history
        store.pages.save = self._held_save  # type: ignore[method-assign]
        store.pages.load_cursor_and_history = self._seen_load  # type: ignore[method-assign]

    async def _seen_load(self, customer_ref: int) -> Any:
        self.events.append(("start", customer_ref))
        return await self._load(customer_ref)

    async def _held_save(self, customer: CustomerKey, *args: Any, **kwargs: Any) -> PageCounts:
        if self._held is None:
            self._held = customer.ref
        self.events.append(("write", customer.ref))
        if customer.ref == self._held:
            await self.release.wait()
        counts = await self._save(customer, *args, **kwargs)
        self.events.append(("written", customer.ref))
        return counts

    def kinds(self, kind: str) -> list[int]:
        return [ref for seen, ref in self.events if seen == kind]


async def test_the_next_customer_starts_while_the_last_page_is_written(
    store: MirrorStore, start_sim: StartSim, database_url: str
) -> None:
    dataset = SimDataset(seed=61, customers=3, mean_files=8)
    _, url = await start_sim(dataset)
    await import_customers(store, dataset)
    # One page per customer: its first page is its last.
    settings = make_settings(url, database_url, sync_page_size=1000, sync_concurrency=1)
    gate = HeldFirstWrite(store)
    passing = asyncio.create_task(sync_pass(settings, store, PassMode.BACKFILL))
    try:
        await until(lambda: len(gate.kinds("written")) == 1, 10, "the second customer's write")
        first, second = gate.kinds("start")
        assert gate.events == [
            ("start", first),
            ("write", first),
            ("start", second),
            ("write", second),
            ("written", second),
        ]
        # The worker has a customer finishing (the first, held) and one finished walking:
        # the third waits for the first to end. An absence, so it is looked for after a pause
        # in which an unbounded worker would have started the third.
        await asyncio.sleep(0.3)
        assert len(gate.kinds("start")) == 2, gate.events
    finally:
        gate.release.set()
    report = await asyncio.wait_for(passing, 30)
    assert report.status == "ok", report.failures
    assert report.totals.customers_ok == 3
    third = gate.kinds("start")[2]
    assert gate.events[5:] == [("written", first), ("start", third), ("write", third),
                               ("written", third)]  # fmt: skip
    assert_mirror_equals(await fetch_mirror(store.engine), dataset.expected_mirror())
