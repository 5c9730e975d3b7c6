"""A command-line pass as a member of the daemons' fleet on PostgreSQL: registered in
``sync_workers`` for as long as it runs, so the daemons count it when they split
SYNC_RATE_LIMIT, and renewing its leases and its own share on the daemons' heartbeat."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator, Callable

import structlog

from sync.api.client import TanmaClient
from sync.config.settings import Settings
from sync.daemon.schedule import lease_renew_every, rate_share
from sync.mirror.database import DATABASE_ERRORS, describe_db_error
from sync.mirror.fleet import FleetStore

log = structlog.get_logger("tanma_sync.fleet")


def pass_worker_id(mode: str) -> str:
    """A command-line pass's name in leases, runs and ``sync_workers``."""
    return f"{mode}@{socket.gethostname()}:{os.getpid()}"


async def until_counted(fleet: FleetStore, worker_id: str, lease_ttl: float) -> float:
    """Wait until every other live worker has had a heartbeat since ``worker_id`` registered,
    and so has counted it and lowered its own share; returns the seconds waited.

    A newcomer spends nothing before then, so the workers together stay under the app's rate
    limit. The wait is bounded by one lease lifetime: by then every other worker has either
    had a heartbeat or dropped out of the count. A database that cannot be asked is waited
    out to that bound.
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + lease_ttl
    poll = min(1.0, lease_renew_every(lease_ttl) / 5)
    failed = False
    while (left := deadline - loop.time()) > 0:
        try:
            if await fleet.uncounted_by(worker_id, lease_ttl) == 0:
                break
        except DATABASE_ERRORS as exc:
            if not failed:  # once: the wait is bounded, and a heartbeat logs the outage too
                log.warning("rate_share_unconfirmed", error=describe_db_error(exc))
            failed = True
        await asyncio.sleep(min(poll, left))
    return loop.time() - started


@contextlib.asynccontextmanager
async def fleet_membership(
    settings: Settings,
    fleet: FleetStore,
    client: TanmaClient,
    worker_id: str,
    *,
    renewed: Callable[[float], None],
) -> AsyncIterator[None]:
    """Register, take this worker's share of the rate limit (once every other live worker has
    counted it and lowered its own share), renew on every heartbeat while the body runs, and
    leave, handing back every lease, at the end."""
    ttl = settings.sync_lease_ttl
    every = lease_renew_every(ttl)
    loop = asyncio.get_running_loop()
    await fleet.register_worker(worker_id, socket.gethostname(), os.getpid())

    async def beat() -> int:
        at = loop.time()
        live = await fleet.heartbeat(worker_id, ttl)
        renewed(at)
        client.set_rate_limit(rate_share(settings.sync_rate_limit, live))
        return live

    async def keep_beating() -> None:
        while True:
            await asyncio.sleep(every)
            try:
                await beat()
            except DATABASE_ERRORS as exc:
                # The page transactions renew the leases too; a lease that runs out all the
                # same stops its customer (LeaseLost), never the pass.
                log.warning("heartbeat_failed", error=describe_db_error(exc))

    try:
        live = await beat()
        if live > 1:
            log.info("waiting_for_rate_share", live_workers=live)
            await until_counted(fleet, worker_id, ttl)
            await beat()
        beating = asyncio.create_task(keep_beating())
        try:
            yield
        finally:
            beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beating
    finally:
        try:
            await fleet.deregister_worker(worker_id)
        except DATABASE_ERRORS as exc:
            log.warning("leases_not_released", error=describe_db_error(exc))
