"""What the daemon tells the outside: ``/healthz`` and ``/metrics`` (Prometheus text format).

``assess_health`` is pure: it turns what the daemon knows into ok/degraded with reasons. The
metrics live in a registry of their own (not the process-wide default), so several daemons in
one test process never mix their numbers.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from sync.durations import format_duration

# The *_created series double the page for no use here; Prometheus computes rates without them.
disable_created_metrics()

# Every label value is created at start-up so each series is scraped (as 0) from the first
# scrape on: a series that appears only after its first event breaks rate() and alerts on it.
RECORD_ACTIONS = ("inserted", "updated", "unchanged", "rejected", "deleted")
CUSTOMER_RESULTS = ("synced", "failed", "handed_back")
PASS_STATUSES = ("ok", "partial", "failed")


@dataclass
class HealthFacts:
    """What health is judged on. Times are seconds on one clock (the daemon's monotonic one)."""

    now: float
    started_at: float
    max_staleness_s: float
    database_error: str | None = None
    credentials_error: str | None = None
    last_ok_pass_at: float | None = None
    stalest_label: str | None = None
    stalest_age_s: float | None = None


@dataclass(frozen=True)
class Health:
    status: str  # "ok" or "degraded"
    reasons: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def assess_health(facts: HealthFacts) -> Health:
    reasons: list[str] = []
    if facts.database_error:
        reasons.append(f"database unreachable: {facts.database_error}")
    if facts.credentials_error:
        reasons.append(f"credentials rejected: {facts.credentials_error}")
    bound = facts.max_staleness_s
    since_ok = facts.now - (facts.last_ok_pass_at or facts.started_at)
    if since_ok > bound:
        what = "last successful pass" if facts.last_ok_pass_at else "no successful pass since start"
        reasons.append(
            f"{what} {format_duration(since_ok)} ago (SYNC_MAX_STALENESS {format_duration(bound)})"
        )
    if facts.stalest_age_s is not None and facts.stalest_age_s > bound:
        reasons.append(
            f"customer {facts.stalest_label} last checked {format_duration(facts.stalest_age_s)} "
            f"ago (SYNC_MAX_STALENESS {format_duration(bound)})"
        )
    return Health("degraded" if reasons else "ok", reasons)


class DaemonMetrics:
    """The daemon's counters and gauges, in their own registry."""

    def __init__(self, read_client: Callable[[], dict[str, Any]]) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.records = Counter(
            "tanma_sync_records",
            "Records written to the mirror by this daemon, by what happened to them.",
            ["action"],
            registry=r,
        )
        for action in RECORD_ACTIONS:
            self.records.labels(action)
        self.customers = Counter(
            "tanma_sync_customers",
            "Customer checks by result: synced, failed, or handed back unfinished (shutdown, "
            "lost lease).",
            ["result"],
            registry=r,
        )
        for result in CUSTOMER_RESULTS:
            self.customers.labels(result)
        self.passes = Counter(
            "tanma_sync_passes",
            "Passes (sweeps that found due customers) by status.",
            ["status"],
            registry=r,
        )
        for status in PASS_STATUSES:
            self.passes.labels(status)
        self.pass_duration = Histogram(
            "tanma_sync_pass_duration_seconds",
            "Wall time of a pass.",
            buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, float("inf")),
            registry=r,
        )
        self.stalest_age = Gauge(
            "tanma_sync_stalest_customer_age_seconds",
            "Time since the least recently checked customer's last successful check.",
            registry=r,
        )
        self.live_workers = Gauge(
            "tanma_sync_live_workers",
            "Daemons sharing this database, this one included.",
            registry=r,
        )
        self.rate_share = Gauge(
            "tanma_sync_rate_limit_share",
            "This daemon's share of SYNC_RATE_LIMIT, in requests per second.",
            registry=r,
        )
        self.last_ok_pass = Gauge(
            "tanma_sync_last_successful_pass_timestamp_seconds",
            "Unix time when the last pass (or empty sweep) finished without a fatal error.",
            registry=r,
        )
        self.healthy = Gauge("tanma_sync_healthy", "1 when /healthz says ok, else 0.", registry=r)
        r.register(_ClientCollector(read_client))


class _ClientCollector(Collector):
    """The HTTP client's own tallies, read at scrape time (the client keeps the counts)."""

    def __init__(self, read: Callable[[], dict[str, Any]]) -> None:
        self._read = read

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        tallies = self._read()
        requests = CounterMetricFamily(
            "tanma_sync_requests",
            "API requests (every attempt) by outcome: ok, http_<status>, timeout, connection, "
            "clock_skew, bad_answer, refused.",
            labels=["outcome"],
        )
        for outcome, count in sorted(tallies["outcomes"].items()):
            requests.add_metric([outcome], count)
        yield requests
        yield CounterMetricFamily(
            "tanma_sync_retries", "Request attempts that were retries.", value=tallies["retries"]
        )
        yield CounterMetricFamily(
            "tanma_sync_rate_limit_waits",
            "Requests that had to wait for the rate limiter.",
            value=tallies["rate_limit_waits"],
        )


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
