"""The circuit breaker's state machine (pure) and the daemon's backoff after an outage."""

from __future__ import annotations

import pytest

from sync.daemon.schedule import outage_backoff
from sync.domain.breaker import (
    KIND_REFUSED,
    KIND_SERVER,
    KIND_TIMEOUT,
    BreakerLimits,
    CircuitBreaker,
)

LIMITS = BreakerLimits(customers=4, seconds=30.0)
REFUSED = "connection refused (Connect call failed)"


def breaker() -> CircuitBreaker:
    return CircuitBreaker(LIMITS, "api.example:443", now=0.0)


def test_it_trips_after_that_many_customers_failing_the_same_way() -> None:
    b = breaker()
    for customer in (1, 2, 3):
        assert b.failed(KIND_REFUSED, REFUSED, customer, now=1.0) is None
        assert b.failed(KIND_REFUSED, REFUSED, customer, now=1.5) is None  # its retry
    tripped = b.failed(KIND_REFUSED, REFUSED, 4, now=2.0)
    assert tripped is not None and b.tripped is tripped
    assert (tripped.failures, tripped.customers) == (7, 4)
    assert str(tripped) == (
        "API unreachable: api.example:443: connection refused (Connect call failed); 7 requests "
        "for 4 customers failed this way in a row over 2s, so the pass stopped"
    )


def test_it_trips_once_nothing_has_succeeded_for_the_time_bound() -> None:
    b = breaker()
    b.succeeded(now=10.0)
    assert b.failed(KIND_TIMEOUT, "no answer within 30s", 1, now=39.0) is None
    # One failure alone never trips on time: one slow customer is not an outage.
    assert b.failed(KIND_TIMEOUT, "no answer within 30s", 1, now=40.5) is not None
    assert "api.example:443: no answer within 30s; 2 requests for 1 customers" in str(b.tripped)


def test_a_single_failure_past_the_time_bound_does_not_trip() -> None:
    b = breaker()
    assert b.failed(KIND_SERVER, "HTTP 503", 1, now=100.0) is None
    assert b.tripped is None


def test_any_success_closes_the_streak() -> None:
    b = breaker()
    for customer in (1, 2, 3):
        b.failed(KIND_REFUSED, REFUSED, customer, now=1.0)
    b.succeeded(now=2.0)
    for customer in (4, 5, 6):
        assert b.failed(KIND_REFUSED, REFUSED, customer, now=3.0) is None
    assert b.failing == (
        "API requests failing: api.example:443: connection refused (Connect call failed) "
        "(3 in a row)"
    )
    b.succeeded(now=4.0)
    assert b.failing is None


def test_a_different_kind_of_failure_starts_a_new_streak() -> None:
    b = breaker()
    for customer in (1, 2, 3):
        b.failed(KIND_REFUSED, REFUSED, customer, now=1.0)
    assert b.failed(KIND_SERVER, "HTTP 502", 4, now=1.0) is None
    assert b.failed(KIND_SERVER, "HTTP 502", 5, now=1.0) is None
    assert b.tripped is None


def test_once_tripped_it_stays_open_and_reports_once() -> None:
    b = breaker()
    for customer in (1, 2, 3, 4):
        b.failed(KIND_REFUSED, REFUSED, customer, now=1.0)
    first = b.tripped
    assert b.failed(KIND_REFUSED, REFUSED, 5, now=2.0) is None
    b.succeeded(now=3.0)
    assert b.tripped is first and b.failing == str(first)


@pytest.mark.parametrize("limits", [BreakerLimits(0, 30.0), BreakerLimits(5, 0.0)])
def test_limits_must_be_positive(limits: BreakerLimits) -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(limits, "h", now=0.0)


def test_the_daemon_backs_off_doubling_up_to_the_cap() -> None:
    assert [outage_backoff(n, 900.0) for n in range(1, 7)] == [60, 120, 240, 480, 900, 900]
    assert outage_backoff(10_000, 900.0) == 900.0
    with pytest.raises(ValueError):
        outage_backoff(0, 900.0)
