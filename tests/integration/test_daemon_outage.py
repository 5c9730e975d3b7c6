"""The daemon against an API that is down, then back, on both databases: the circuit breaker
stops the sweep, /readyz says why within the sweep while /healthz stays alive, customers not
reached are not marked failed, and the postponed sweep syncs everyone once the API answers."""

from __future__ import annotations

import json
import socket

from sqlalchemy import func, select

from sync.mirror.models import CustomerSchedule, CustomerSyncState
from sync.mirror.store import MirrorStore
from sync.sim import SimConfig, SimDataset, Simulator
from tests.helpers import APP_ID, APP_KEY
from tests.integration.test_daemon import (
    SETTLE_S,
    daemon_settings,
    everyone_synced,
    get,
    running_daemon,
)
from tests.integration.test_engine import import_all
from tests.waiting import until

CUSTOMERS = 30
BREAKER_CUSTOMERS = 4


def closed_port() -> int:
    """A loopback port nothing listens on (connections to it are refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def failed_customers(store: MirrorStore) -> int:
    async with store.engine.connect() as conn:
        return int(
            await conn.scalar(select(func.count()).where(CustomerSyncState.last_error.is_not(None)))
            or 0
        )


async def test_an_outage_backs_the_sweeps_off_and_readiness_says_why(
    store: MirrorStore, database_url: str
) -> None:
    dataset = SimDataset(seed=41, customers=CUSTOMERS, mean_files=3)
    await import_all(store, dataset)
    port = closed_port()
    settings = daemon_settings(
        f"http://127.0.0.1:{port}",
        database_url,
        sync_breaker_customers=BREAKER_CUSTOMERS,
        sync_outage_backoff_max="1s",
        sync_backoff_base=0.01,
        sync_backoff_max=0.05,
        sync_concurrency=2,
    )
    async with running_daemon(settings, store) as daemon:
        answers: list[tuple[int, str]] = []

        async def unready() -> bool:
            answers.append(await get(daemon, "/readyz"))
            return answers[-1][0] == 503 and "API unreachable" in answers[-1][1]

        await until(unready, SETTLE_S, "/readyz to report the API unreachable")
        reasons = json.loads(answers[-1][1])["reasons"]
        assert any(
            r.startswith(f"API unreachable: 127.0.0.1:{port}: connection refused") for r in reasons
        ), reasons
        alive, body = await get(daemon, "/healthz")
        assert alive == 200, body  # the process and its scheduler are fine: no restart
        await until(
            lambda: daemon.sweeper.state.outages >= 1, SETTLE_S, "the sweep to be backed off"
        )
        # Only the customers tried before the breaker opened are failed; the rest wait.
        assert 0 < await failed_customers(store) <= BREAKER_CUSTOMERS
        async with store.engine.connect() as conn:
            planned = await conn.scalar(
                select(func.count()).where(CustomerSchedule.next_due_at.is_not(None))
            )
        assert planned <= BREAKER_CUSTOMERS

        # The API comes back on the same address: a postponed sweep finds it and syncs all.
        simulator = Simulator(dataset, SimConfig(app_id=APP_ID, app_key=APP_KEY))
        await simulator.start("127.0.0.1", port)
        try:
            await until(
                lambda: everyone_synced(store, CUSTOMERS), SETTLE_S, "every customer synced"
            )

            async def ready() -> bool:
                return (await get(daemon, "/readyz"))[0] == 200

            await until(ready, SETTLE_S, "/readyz to turn ready again")
        finally:
            await simulator.stop()
        assert daemon.sweeper.state.outages == 0
        assert daemon.sweeper.state.api_error is None
