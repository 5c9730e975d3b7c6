"""The daemon's status listener: ``GET /healthz`` (liveness), ``GET /readyz`` (readiness) and
``GET /metrics`` (Prometheus text); sync/daemon/health.py says what each judges."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from sync.daemon.health import Health
from sync.daemon.metrics import DaemonMetrics

Probe = Callable[[], Awaitable[Health]]


class StatusListener:
    """One small aiohttp server: ``/healthz`` and ``/readyz`` (200 ok, 503 degraded, with the
    reasons) and ``/metrics``."""

    def __init__(
        self, liveness: Callable[[], Health], readiness: Probe, metrics: DaemonMetrics
    ) -> None:
        self._liveness = liveness
        self._readiness = readiness
        self._metrics = metrics
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def start(self, host: str, port: int) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics_page)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = site._server  # aiohttp exposes the bound sockets only here
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _healthz(self, _request: web.Request) -> web.Response:
        # Answered at all, the event loop is alive; the scheduler is judged by its heartbeat.
        return _health_page(self._liveness())

    async def _readyz(self, _request: web.Request) -> web.Response:
        return _health_page(await self._readiness())

    async def _metrics_page(self, _request: web.Request) -> web.Response:
        # The gauges that readiness sets (healthy, API reachable, credentials, staleness) are
        # judged afresh for every scrape, so alerts do not depend on someone polling /readyz.
        await self._readiness()
        # Rendering is quick, but keep it off the loop's critical path all the same.
        body = await asyncio.to_thread(generate_latest, self._metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def _health_page(health: Health) -> web.Response:
    body = {"status": health.status, "reasons": health.reasons}
    return web.Response(
        text=json.dumps(body, ensure_ascii=False) + "\n",
        status=200 if health.ok else 503,
        content_type="application/json",
    )
