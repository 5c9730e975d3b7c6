"""The daemon's health, judged from what it knows. Pure: facts in, ok or degraded with reasons.

Two questions, two answers. *Liveness* (``/healthz``): is the process, with its scheduler loop,
still turning? Only a restart cures a no, so it says nothing about the API or the database.
*Readiness* (``/readyz``): is the daemon doing its job right now: the database answers, the last
sweep's requests got through (the circuit breaker is closed), the lease renewals are current,
and, the slow signal, nothing has gone longer than SYNC_MAX_STALENESS without a success.
"""

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
    api_error: str | None = None  # the breaker's verdict in this sweep or the last one
    lease_ttl_s: float | None = None  # set where leases are renewed (a scheduled daemon)
    last_renewed_at: float | None = None


@dataclass(frozen=True)
class Health:
    status: str  # "ok" or "degraded"
    reasons: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass(frozen=True)
class LivenessFacts:
    now: float
    last_tick_at: float  # when the scheduler last ran the heartbeat job (or the daemon started)
    tick_every_s: float | None  # the heartbeat's interval; None when nothing is scheduled


# Heartbeats that may be missed before the loop counts as stuck: one late job is load, three
# in a row is a loop that no longer runs its jobs.
_MISSED_TICKS = 3


def assess_liveness(facts: LivenessFacts) -> Health:
    if facts.tick_every_s is None:
        return Health("ok")
    late = facts.now - facts.last_tick_at
    bound = facts.tick_every_s * _MISSED_TICKS
    if late <= bound:
        return Health("ok")
    return Health(
        "degraded",
        [
            f"the scheduler has not run its heartbeat for {format_duration(late)} "
            f"(due every {format_duration(facts.tick_every_s)})"
        ],
    )


def assess_readiness(facts: HealthFacts) -> Health:
    reasons: list[str] = []
    if facts.database_error:
        reasons.append(f"database unreachable: {facts.database_error}")
    if facts.credentials_error:
        reasons.append(f"credentials rejected: {facts.credentials_error}")
    if facts.api_error:
        reasons.append(facts.api_error)
    ttl = facts.lease_ttl_s
    if ttl is not None:
        since_renewal = facts.now - (facts.last_renewed_at or facts.started_at)
        if since_renewal > ttl:
            reasons.append(
                f"lease renewals late: last renewed {format_duration(since_renewal)} ago "
                f"(SYNC_LEASE_TTL {format_duration(ttl)})"
            )
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
