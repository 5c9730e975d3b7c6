"""The overview page's panels, in the order shown. Each panel is a name, a template under
templates/panels/ and a loader that reads what it shows; a feature adds its panel to
``OVERVIEW_PANELS`` and nothing else changes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from markupsafe import Markup

from sync.config.settings import Settings
from sync.console.charts import Column, Reference, Series, horizontal_bars, stacked_bars
from sync.domain.activity import DAY, HOUR, Bucket, RunSample, activity
from sync.domain.chinatime import CHINA_TZ
from sync.domain.staleness import staleness_buckets
from sync.mirror.store import MirrorStore


@dataclass(frozen=True, slots=True)
class PanelContext:
    store: MirrorStore
    settings: Settings
    now: datetime  # the database's clock, read once per page


@dataclass(frozen=True, slots=True)
class Panel:
    name: str
    title: str
    load: Callable[[PanelContext], Awaitable[dict[str, Any]]]

    @property
    def template(self) -> str:
        return f"panels/{self.name}.html"


STATE_CSS = {
    "ok": "ok",
    "stale": "warn",
    "incomplete": "info",
    "never_synced": "muted",
    "failing": "bad",
    "gone": "gone",
}
_PASS_SERIES = (
    Series("ok", "ok"),
    Series("partial", "warn"),
    Series("failed", "bad"),
    Series("other", "muted"),  # running, interrupted, abandoned
)


async def _states(ctx: PanelContext) -> dict[str, Any]:
    counts = await ctx.store.console.state_counts(ctx.now, ctx.settings.sync_max_staleness)
    items = [(name.replace("_", " "), float(n), STATE_CSS[name]) for name, n in counts.items()]
    return {
        "counts": counts,
        "total": sum(counts.values()),
        "chart": horizontal_bars("customers by state", items),
    }


async def _staleness(ctx: PanelContext) -> dict[str, Any]:
    bound = ctx.settings.sync_max_staleness
    buckets = staleness_buckets(bound)
    counts = await ctx.store.console.staleness_histogram(ctx.now, buckets)
    within = Series("within SYNC_MAX_STALENESS", "ok")
    over = Series("over it", "bad")
    columns = [
        Column(b.label, (0.0, float(n)) if b.over_bound else (float(n), 0.0))
        for b, n in zip(buckets, counts, strict=True)
    ]
    last_within = sum(1 for b in buckets if not b.over_bound) - 1
    chart = stacked_bars(
        "customers by time since their last successful check",
        columns,
        (within, over),
        divider_after=last_within,
    )
    return {
        "chart": chart,
        "bound": bound,
        "over": sum(n for b, n in zip(buckets, counts, strict=True) if b.over_bound),
    }


async def _activity(ctx: PanelContext) -> dict[str, Any]:
    rows = await ctx.store.console.runs_since(ctx.now - timedelta(days=7))
    samples = [
        RunSample(
            r["started_at"],
            r["finished_at"],
            r["status"],
            int(r["records_inserted"] or 0),
            int(r["records_updated"] or 0),
            int(r["requests"] or 0),
        )
        for r in rows
    ]
    hours = activity(samples, ctx.now, HOUR, 24)
    days = activity(samples, ctx.now, DAY, 7)
    limit = ctx.settings.sync_rate_limit
    return {
        "rate_limit": limit,
        "charts": {
            "passes_24h": _passes_chart("passes per hour, last 24 h", hours, "%H"),
            "passes_7d": _passes_chart("passes per day, last 7 days", days, "%m-%d"),
            "records_24h": _records_chart("records written per hour, last 24 h", hours, "%H"),
            "records_7d": _records_chart("records written per day, last 7 days", days, "%m-%d"),
            "rate_24h": _rate_chart("requests/s, hourly average, last 24 h", hours, "%H", limit),
            "rate_7d": _rate_chart("requests/s, daily average, last 7 days", days, "%m-%d", limit),
        },
        "totals": {
            "passes_24h": sum(sum(b.passes.values()) for b in hours),
            "passes_7d": sum(sum(b.passes.values()) for b in days),
            "records_24h": sum(b.records_new + b.records_updated for b in hours),
            "records_7d": sum(b.records_new + b.records_updated for b in days),
        },
    }


def _tick(bucket: Bucket, form: str) -> str:
    return bucket.start.astimezone(CHINA_TZ).strftime(form)


def _passes_chart(title: str, buckets: list[Bucket], form: str) -> Markup:
    named = {s.name for s in _PASS_SERIES[:-1]}
    columns = [
        Column(
            _tick(b, form),
            (
                float(b.passes.get("ok", 0)),
                float(b.passes.get("partial", 0)),
                float(b.passes.get("failed", 0)),
                float(sum(n for status, n in b.passes.items() if status not in named)),
            ),
        )
        for b in buckets
    ]
    return stacked_bars(title, columns, _PASS_SERIES, label_every=3 if len(buckets) > 12 else 1)


def _records_chart(title: str, buckets: list[Bucket], form: str) -> Markup:
    columns = [
        Column(_tick(b, form), (float(b.records_new), float(b.records_updated))) for b in buckets
    ]
    series = (Series("new", "ok"), Series("updated", "info"))
    return stacked_bars(title, columns, series, label_every=3 if len(buckets) > 12 else 1)


def _rate_chart(title: str, buckets: list[Bucket], form: str, limit: float) -> Markup:
    columns = [Column(_tick(b, form), (round(b.requests_per_second, 3),)) for b in buckets]
    return stacked_bars(
        title,
        columns,
        (Series("requests/s", "info"),),
        reference=Reference(limit, f"SYNC_RATE_LIMIT {limit:g}/s"),
        label_every=3 if len(buckets) > 12 else 1,
    )


async def _fleet(ctx: PanelContext) -> dict[str, Any]:
    workers = await ctx.store.console.live_workers(ctx.now, ctx.settings.sync_lease_ttl)
    return {
        "workers": workers,
        "leases": sum(int(w["leases"] or 0) for w in workers),
        "share": ctx.settings.sync_rate_limit / max(len(workers), 1),
    }


async def _discovery(ctx: PanelContext) -> dict[str, Any]:
    return await ctx.store.console.discovery_status(ctx.now)


async def _push(ctx: PanelContext) -> dict[str, Any]:
    status = await ctx.store.push.status()
    items = [(kind, float(n), "info") for kind, n in sorted(status.by_type.items())]
    return {
        "status": status,
        "listening": ctx.settings.push_listen_address is not None,
        "p50": status.lag_at(0.5),
        "p99": status.lag_at(0.99),
        "chart": horizontal_bars("pushes received by type", items) if items else None,
    }


async def _archive(ctx: PanelContext) -> dict[str, Any]:
    coverage = await ctx.store.archive.coverage()
    stored = await ctx.store.archive.stored_objects()
    by_status: dict[str, int] = {}
    for row in coverage:
        by_status[row.status] = by_status.get(row.status, 0) + row.files
    items = [
        (status, float(by_status.get(status, 0)), css)
        for status, css in (("archived", "ok"), ("pending", "muted"), ("failed", "bad"))
    ]
    return {
        "enabled": ctx.settings.archive_enabled,
        "coverage": coverage,
        "stored": stored,
        "chart": horizontal_bars("live files by archive state", items),
    }


OVERVIEW_PANELS: tuple[Panel, ...] = (
    Panel("states", "Customers by state", _states),
    Panel("staleness", "Staleness", _staleness),
    Panel("activity", "Passes, records and requests", _activity),
    Panel("fleet", "Live daemons and their leases", _fleet),
    Panel("discovery", "Discovery", _discovery),
    Panel("push", "Message push", _push),
    Panel("archive", "File archive", _archive),
)
