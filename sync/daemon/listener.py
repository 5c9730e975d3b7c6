"""The daemon's status listener: ``GET /healthz`` and ``GET /metrics`` (Prometheus text)."""

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
    """One small aiohttp server: ``GET /healthz`` (200 ok, 503 degraded) and ``GET /metrics``."""

    def __init__(self, probe: Probe, metrics: DaemonMetrics) -> None:
        self._probe = probe
        self._metrics = metrics
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def start(self, host: str, port: int) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
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
        health = await self._probe()
        body = {"status": health.status, "reasons": health.reasons}
        return web.Response(
            text=json.dumps(body, ensure_ascii=False) + "\n",
            status=200 if health.ok else 503,
            content_type="application/json",
        )

    async def _metrics_page(self, _request: web.Request) -> web.Response:
        # Rendering is quick, but keep it off the loop's critical path all the same.
        body = await asyncio.to_thread(generate_latest, self._metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
