"""`tanma-sync customers discover`: one discovery, its summary, and the exit status it means."""

from __future__ import annotations

from sync.api.client import TanmaClient
from sync.config.settings import Settings
from sync.domain.exits import ExitCode
from sync.domain.tally import RunStatus
from sync.engine.discovery import DiscoveryEngine, DiscoveryReport
from sync.mirror.store import MirrorStore


async def discover_customers(
    settings: Settings, store: MirrorStore, *, full: bool
) -> DiscoveryReport:
    settings.require_credentials()
    async with TanmaClient(settings) as client:
        return await DiscoveryEngine(settings, store, client).discover(full=full)


def describe_discovery(report: DiscoveryReport) -> list[str]:
    """The summary: one line of counts, then a line per gap and per problem."""
    c = report.counts
    kind = "full discovery" if report.full else "discovery"
    resumed = " (resumed an unfinished walk)" if report.resumed else ""
    lines = [
        f"{kind} run #{report.run_id}{resumed}: {report.status.value}; {report.found} customers "
        f"found: {c.new} new, {c.updated} updated, {c.unchanged} unchanged, {c.gone} gone, "
        f"{c.rejected} rejected; {report.requests} requests ({report.retries} retries), "
        f"{report.windows} windows ({report.windows_split} split, {report.rewalks} walked "
        f"again), {len(report.gaps)} gaps, in {report.seconds:.2f}s"
    ]
    lines += [f"  gap: {gap.describe()}" for gap in report.gaps]
    lines += [f"  not stored: {conflict}" for conflict in report.conflicts[:20]]
    if report.failure:
        lines.append(f"  stopped: {report.failure}")
    return lines


def discovery_exit_code(report: DiscoveryReport) -> ExitCode:
    if report.status is RunStatus.OK:
        return ExitCode.OK
    if report.status is RunStatus.PARTIAL:
        return ExitCode.PARTIAL
    if report.status is RunStatus.INTERRUPTED:
        return ExitCode.INTERRUPTED
    return ExitCode.FATAL
