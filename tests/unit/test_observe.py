"""Health judgement (pure), the duration wording it uses, and the metric series' presence."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from sync.daemon.health import HealthFacts, LivenessFacts, assess_liveness, assess_readiness
from sync.daemon.metrics import CUSTOMER_RESULTS, PASS_STATUSES, DaemonMetrics
from sync.domain.durations import format_duration, parse_duration
from sync.domain.tally import RECORD_ACTIONS

BOUND = 6 * 3600.0


def facts(**changes: object) -> HealthFacts:
    base = HealthFacts(now=10_000.0, started_at=0.0, max_staleness_s=BOUND, last_ok_pass_at=9_000)
    for key, value in changes.items():
        setattr(base, key, value)
    return base


def test_all_well_is_ok() -> None:
    health = assess_readiness(facts(stalest_label="42", stalest_age_s=60.0))
    assert health.ok and health.status == "ok" and health.reasons == []


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"database_error": "connection refused"}, "database unreachable: connection refused"),
        ({"credentials_error": "code 1002"}, "credentials rejected: code 1002"),
        ({"now": 9_000 + BOUND + 1}, "last successful pass 6h1s ago"),
        ({"now": BOUND + 10, "last_ok_pass_at": None}, "no successful pass since start"),
        ({"stalest_label": "42", "stalest_age_s": BOUND + 3600}, "customer 42 last checked 7h"),
        ({"api_error": "API unreachable: h: connection refused"}, "API unreachable: h"),
        (
            {"lease_ttl_s": 120.0, "last_renewed_at": 10_000.0 - 121},
            "lease renewals late: last renewed 2m1s ago (SYNC_LEASE_TTL 2m)",
        ),
        ({"lease_ttl_s": 120.0, "started_at": 9_000.0}, "lease renewals late"),
    ],
)
def test_each_reason_turns_health_degraded(changes: dict[str, object], fragment: str) -> None:
    health = assess_readiness(facts(**changes))
    assert health.status == "degraded"
    assert any(fragment in reason for reason in health.reasons), health.reasons


def test_a_young_daemon_without_a_pass_yet_is_ok() -> None:
    assert assess_readiness(facts(now=60.0, last_ok_pass_at=None)).ok


def test_current_lease_renewals_keep_readiness() -> None:
    assert assess_readiness(facts(lease_ttl_s=120.0, last_renewed_at=10_000.0 - 119)).ok


def test_liveness_is_the_scheduler_running_its_heartbeat() -> None:
    assert assess_liveness(LivenessFacts(now=100.0, last_tick_at=0.0, tick_every_s=40.0)).ok
    stuck = assess_liveness(LivenessFacts(now=121.0, last_tick_at=0.0, tick_every_s=40.0))
    assert stuck.status == "degraded"
    assert stuck.reasons == ["the scheduler has not run its heartbeat for 2m1s (due every 40s)"]
    # Nothing scheduled (a burst): the answer itself shows the loop is alive.
    assert assess_liveness(LivenessFacts(now=1e6, last_tick_at=0.0, tick_every_s=None)).ok


def test_liveness_ignores_what_readiness_judges() -> None:
    # The API and the database are readiness: a restart cures neither.
    ready = assess_readiness(facts(database_error="gone", api_error="API unreachable"))
    alive = assess_liveness(LivenessFacts(now=10.0, last_tick_at=5.0, tick_every_s=40.0))
    assert not ready.ok and alive.ok


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (0.25, "0.2s"), (45, "45s"), (90, "1m30s"), (21600, "6h"), (93784, "1d2h")],
)
def test_durations_are_written_as_people_write_them(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("seconds", [1, 59, 61, 3599, 3600, 86399, 86400, 90061])
def test_whole_second_durations_read_back(seconds: int) -> None:
    text = format_duration(seconds)
    # Two units at most: what is dropped is below the second unit shown.
    unit = 3600 if seconds >= 86400 else 60 if seconds >= 3600 else 1
    assert abs(parse_duration(text) - seconds) < unit


def test_every_labelled_series_is_scraped_as_zero_before_its_first_event() -> None:
    metrics = DaemonMetrics(lambda: {"outcomes": {}, "retries": 0, "rate_limit_waits": 0})
    text = generate_latest(metrics.registry).decode()
    labelled = {
        (sample.name, value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        for value in sample.labels.values()
        if sample.name.endswith("_total") and sample.value == 0
    }
    expected = (
        {("tanma_sync_records_total", action) for action in RECORD_ACTIONS}
        | {("tanma_sync_customers_total", result) for result in CUSTOMER_RESULTS}
        | {("tanma_sync_passes_total", status) for status in PASS_STATUSES}
    )
    assert expected <= labelled
