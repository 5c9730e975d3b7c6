"""Fault soak: every fault the simulator can inject, all at once, through a whole backfill.

Nothing may be lost, the retries must stay inside the bound the settings allow, the client must
see each fault as what it is, and the rate limit must hold at the server's door.
"""

from __future__ import annotations

import contextlib
import random

from sync.api.client import TanmaClient
from sync.config.settings import Settings
from sync.domain.customers import CustomerKey
from sync.domain.errors import TransientError
from sync.domain.pager import PassMode
from sync.engine.passes import SyncEngine
from sync.mirror.store import MirrorStore
from sync.sim import FAULT_KINDS, SimDataset
from tests.helpers import assert_mirror_equals, fetch_mirror, make_settings
from tests.reliability.conftest import SEED, Scale
from tests.reliability.figures import Figures
from tests.reliability.support import import_customers

# The client's pace and the server's limit: the default SYNC_RATE_LIMIT.
RATE = 10.0
# The server's token bucket holds this many requests. The client's pacer promises at most
# rate*T + SYNC_RATE_BURST request starts in any T seconds (sync/api/pacing.py: starts back to
# back absorb a late wake-up); one more token allows a request to reach the server up to one
# interval (100 ms at 10/s) later than it started, for scheduling on a loaded two-core machine.
# A client that ignores the limit overruns this at once (see the companion test below).
SERVER_BURST = Settings.model_fields["sync_rate_burst"].default + 1
CLIENT_TIMEOUT_S = 1.0
FAULTS = {
    "http500": 0.06,
    "html502": 0.06,
    "truncated": 0.06,
    "code1000": 0.06,
    "burst429": 0.04,
    "stall": 0.05,
    "reset": 0.06,
}
CAP = 3  # consecutive faults the server allows on one page before it serves it
PAGE_SIZE = 5
# The soak asserts that every kind was injected, so it must make enough requests for that not
# to be luck: files per customer vary a lot, and one CI run (seed 351611802) drew a data set
# so small that no code1000 came up. At 150 pages (some 220 draws) the rarest kind, at 4%,
# goes undrawn with a chance of 0.96**220, about 1 in 8,000; the others far less.
MIN_PAGES = 150

# How the client names each fault it saw (TanmaClient.outcomes).
CLIENT_SEES = {
    "http500": "http_500",
    "html502": "http_502",
    "burst429": "http_429",
    "stall": "timeout",
    "reset": "connection",
}


def _dataset_with_enough_pages(seed: int, scale: Scale) -> SimDataset:
    """The seeded data set, grown by whole customers until a walk takes MIN_PAGES pages."""
    customers = scale.fault_customers
    while True:
        dataset = SimDataset(seed=seed, customers=customers, mean_files=scale.fault_mean_files)
        counts = [dataset.base_file_count(i) for i in range(customers)]
        if sum(n // PAGE_SIZE + 1 for n in counts) >= MIN_PAGES:
            return dataset
        customers += 8


async def test_all_faults_at_once_lose_nothing_and_stay_in_bounds(
    store: MirrorStore,
    database_url: str,
    sim_factory,
    scale: Scale,
    rng: random.Random,
    figures: Figures,
    case_name: str,
) -> None:
    assert set(FAULTS) == set(FAULT_KINDS), "the soak must inject every kind the simulator has"
    dataset = _dataset_with_enough_pages(rng.randrange(10**6), scale)
    sim = sim_factory(
        dataset,
        rate_limit=RATE,
        rate_burst=SERVER_BURST,
        stall_s=3 * CLIENT_TIMEOUT_S,  # past the client's timeout
        max_faults_per_customer_page=CAP,
        fault_seed=rng.randrange(10**6),
        **{f"fault_{kind}": p for kind, p in FAULTS.items()},
    )
    await import_customers(store, dataset)
    settings = make_settings(
        sim.base_url,
        database_url,
        sync_page_size=PAGE_SIZE,
        sync_rate_limit=RATE,
        sync_max_attempts=5,
        tanma_request_timeout=CLIENT_TIMEOUT_S,
        sync_backoff_base=0.05,
        sync_backoff_max=1.0,
    )
    # A page gets through after at most CAP faults; the settings must leave room for that.
    assert settings.sync_max_attempts > CAP

    async with TanmaClient(settings) as client:
        engine = SyncEngine(settings, store, client)
        report = await engine.run_pass(PassMode.BACKFILL, await store.customers.keys())
    client_saw = dict(client.outcomes)
    stats = sim.call(sim.sim.stats.as_dict)
    faults = stats["faults"]
    pages = stats["outcomes"].get("ok", 0)  # one per page: every request ended in a page
    rows = await fetch_mirror(store.engine)
    expected = dataset.expected_mirror()
    lost = len(expected.keys() - {r.id for r in rows})
    figures.add(
        case_name,
        fault_requests=stats["requests_total"],
        fault_pages=pages,
        faults_injected=sum(faults.values()),
        retries=report.totals.retries,
        retry_bound=(settings.sync_max_attempts - 1) * pages,
        over_limit=stats["over_limit"],
        rows_lost=lost,
        rows_duplicated=len(rows) - len({r.id for r in rows}),
    )
    figures.add_kinds("faults_by_kind", case_name, faults)
    figures.note(case_name, rate_limit=RATE, server_burst=SERVER_BURST, seed=SEED)

    assert report.status == "ok", report.failures[:5]
    assert_mirror_equals(rows, expected)
    missing_kinds = [kind for kind in FAULT_KINDS if not faults.get(kind)]
    assert not missing_kinds, f"seed {SEED}: the run drew no {missing_kinds}; enlarge the soak"

    # The bound the settings promise: each page takes at most SYNC_MAX_ATTEMPTS attempts.
    assert report.totals.retries <= (settings.sync_max_attempts - 1) * pages
    # And the tighter one the server allows: at most CAP failed attempts per page.
    assert report.totals.retries <= CAP * pages
    # Every failed attempt was retried (none was the last straw), and both sides agree on
    # how many attempts there were.
    assert report.totals.errors == report.totals.retries
    assert report.totals.requests == stats["requests_total"] == pages + report.totals.retries

    # Each fault reached the client as what it is.
    assert stats["over_limit"] == 0, f"seed {SEED}: {stats['over_limit']} requests over the limit"
    for kind, name in CLIENT_SEES.items():
        assert client_saw.get(name, 0) == faults.get(kind, 0), (kind, client_saw, faults)
    # A truncated body and code 1000 both come as HTTP 200 with an unusable answer.
    bad_answers = faults.get("truncated", 0) + faults.get("code1000", 0)
    assert client_saw.get("bad_answer", 0) == bad_answers, client_saw


async def test_the_over_limit_counter_sees_a_client_that_ignores_the_limit(
    sim_factory, tmp_path, figures: Figures, case_name: str
) -> None:
    """The counter the soak asserts zero on is live: a client paced at three times the limit
    is caught at once."""
    dataset = SimDataset(seed=7, customers=3, mean_files=5)
    sim = sim_factory(dataset, rate_limit=RATE, rate_burst=SERVER_BURST)
    settings = make_settings(
        sim.base_url,
        f"sqlite:///{tmp_path / 'unused.db'}",
        sync_rate_limit=3 * RATE,
        sync_max_attempts=1,
    )
    customer = dataset.customer(0)
    key = CustomerKey(1, customer.customer_id, None, None, None)
    async with TanmaClient(settings) as client:
        for _ in range(int(RATE)):
            with contextlib.suppress(TransientError):  # the 429s this test provokes
                await client.list_files(key, None, 10)
    over = sim.call(lambda: sim.sim.stats.over_limit)
    figures.note(case_name, over_limit_when_ignored=over)
    assert over > 0
