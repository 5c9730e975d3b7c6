"""The daemon's health, judged from what it knows. Pure: facts in, ok or degraded with reasons."""

from __future__ import annotations

from dataclasses import dataclass, field

from sync.domain.durations import format_duration


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
