"""The daemon's Prometheus metrics. They live in a registry of their own (not the process-wide
default), so several daemons in one test process never mix their numbers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from sync.archive.outcomes import Reason
from sync.domain.push import CUSTOMER_TYPES_GONE, DOCUMENTED_TYPES, Rejection
from sync.domain.tally import RECORD_ACTIONS, RunStatus

# The *_created series double the page for no use here; Prometheus computes rates without them.
disable_created_metrics()

# Every label value is created at start-up so each series is scraped (as 0) from the first
# scrape on: a series that appears only after its first event breaks rate() and alerts on it.
CUSTOMER_RESULTS = ("synced", "failed", "handed_back")
ARCHIVE_RESULTS = ("archived", *(reason.value for reason in Reason))
DISCOVERY_KINDS = ("incremental", "full")
# Push types get a label of their own; any other (trusted, but unbounded) type counts as "other".
PUSH_TYPES = (*DOCUMENTED_TYPES, *sorted(CUSTOMER_TYPES_GONE))
PUSH_OUTCOMES = ("sync", "add", "gone", "none", "unknown_customer", "duplicate")


def push_type_label(kind: str) -> str:
    return kind if kind in PUSH_TYPES else "other"


PASS_STATUSES = tuple(
    status.value
    for status in (RunStatus.OK, RunStatus.PARTIAL, RunStatus.INTERRUPTED, RunStatus.FAILED)
)


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
        self.discoveries = Counter(
            "tanma_sync_discoveries",
            "Customer discoveries by kind (incremental, full) and status (skipped: another "
            "process held the discovery lease).",
            ["kind", "status"],
            registry=r,
        )
        for kind in DISCOVERY_KINDS:
            for status in (*PASS_STATUSES, "skipped"):
                self.discoveries.labels(kind, status)
        self.discovered = Counter(
            "tanma_sync_discovered_customers",
            "Customers discovery found, by what happened to them: new, updated, gone, rejected.",
            ["action"],
            registry=r,
        )
        for action in ("new", "updated", "gone", "rejected"):
            self.discovered.labels(action)
        self.pass_duration = Histogram(
            "tanma_sync_pass_duration_seconds",
            "Wall time of a pass.",
            buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, float("inf")),
            registry=r,
        )
        self.archive_files = Counter(
            "tanma_sync_archive_files",
            "Files the archive loop handled: archived, or the reason it failed.",
            ["result"],
            registry=r,
        )
        for result in ARCHIVE_RESULTS:
            self.archive_files.labels(result)
        self.archive_bytes = Counter(
            "tanma_sync_archive_bytes",
            "Bytes downloaded into archived files.",
            registry=r,
        )
        self.pushes = Counter(
            "tanma_sync_pushes",
            "Pushes received, by type and outcome (unverified: refused before decryption, by "
            "reason; duplicate: a msgId already in the inbox).",
            ["type", "outcome"],
            registry=r,
        )
        for kind in (*PUSH_TYPES, "other"):
            for outcome in PUSH_OUTCOMES:
                self.pushes.labels(kind, outcome)
        for reason in Rejection:
            self.pushes.labels("unverified", reason.value)
        self.push_to_mirror = Histogram(
            "tanma_sync_push_to_mirror_seconds",
            "Seconds from a push's receipt to the end of the sync of its customer that "
            "followed it.",
            buckets=(0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600, float("inf")),
            registry=r,
        )
        self.push_receiver_up = Gauge(
            "tanma_sync_push_receiver_up",
            "1 while this daemon's push receiver listens (SYNC_PUSH_LISTEN), else 0.",
            registry=r,
        )
        self.unannounced = Counter(
            "tanma_sync_unannounced_records",
            "New records a polling sync found that no push had announced (what polling still "
            "catches).",
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
        self.healthy = Gauge("tanma_sync_healthy", "1 when /readyz says ok, else 0.", registry=r)
        self.api_up = Gauge(
            "tanma_sync_api_up",
            "1 while the API answers; 0 while an outage postpones the sweeps or the pass's "
            "circuit breaker is open.",
            registry=r,
        )
        self.credentials_ok = Gauge(
            "tanma_sync_credentials_ok",
            "0 while the API rejects TANMA_APP_ID / TANMA_APP_KEY, else 1.",
            registry=r,
        )
        self.max_staleness = Gauge(
            "tanma_sync_max_staleness_seconds",
            "SYNC_MAX_STALENESS: the bound the stalest customer's age is judged against.",
            registry=r,
        )
        self.failing_customers = Gauge(
            "tanma_sync_failing_customers",
            "Customers (not gone upstream) whose last check failed.",
            registry=r,
        )
        self.archive_backlog = Gauge(
            "tanma_sync_archive_backlog_files",
            "Live files without archived content, due or waiting for a retry (0 with the "
            "archive off).",
            registry=r,
        )
        Info("tanma_sync_build", "The running tanma-sync.", registry=r).info(
            {"version": _version()}
        )
        r.register(_ClientCollector(read_client))


def _version() -> str:
    try:
        return version("tanma-sync")
    except PackageNotFoundError:
        return "unknown"


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
