"""What the simulator saw: request counts by outcome and customer, concurrency, overlaps."""

from __future__ import annotations

from collections import Counter
from typing import Any, Literal

from sync.sim.faults import FAULT_KINDS

CustomerKey = int | str  # the customer id, or the raw identifier of an unknown customer
Admission = Literal["admitted", "credited", "refused"]


class SimStats:
    """Counters for the endpoint (admin routes are not counted).

    ``over_limit`` counts requests that arrived above the configured rate limit: with a limit of
    ``rate`` and a burst of ``capacity`` (a token bucket), a request is over the limit when more
    than ``rate * T + capacity`` arrived within some window of T seconds. Arrival times are
    when the simulator's loop read the request, give or take its own lateness
    (sync/sim/lateness.py); ``stall_credited`` counts the requests admitted only because of
    that allowance. An overlap is a
    request for a customer that arrived while another request for the same customer was still
    being served: a well-behaved engine never does that.
    """

    def __init__(self) -> None:
        self.in_flight = 0
        self._busy: Counter[CustomerKey] = Counter()
        self.reset()

    def reset(self) -> None:
        """Zero the counters; requests now in flight stay tracked so the gauges remain right."""
        self.requests_total = 0
        self.outcomes: Counter[str] = Counter()
        self.per_customer: Counter[CustomerKey] = Counter()
        self.over_limit = 0
        self.stall_credited = 0
        self.overlaps = 0
        self.overlap_customers: set[CustomerKey] = set()
        self.unknown_customers = 0
        self.records_served = 0
        self.search_requests = 0
        self.search_past_cap = 0  # search requests that asked past the cap (never, from us)
        self.customers_served = 0
        self.max_concurrency = self.in_flight
        # Served files: requests by the file's kind, and any request that came in by a host
        # name outside the allow-list (an archiver must never make one).
        self.file_requests: Counter[str] = Counter()
        self.outside_hits = 0

    def enter(self) -> None:
        self.requests_total += 1
        self.in_flight += 1
        self.max_concurrency = max(self.max_concurrency, self.in_flight)

    def leave(self) -> None:
        self.in_flight -= 1

    def outcome(self, name: str) -> None:
        self.outcomes[name] += 1

    def faults(self) -> dict[str, int]:
        """Faults injected so far, by kind. The simulator's own rate-limit answers are not
        faults: they are counted in ``over_limit``."""
        return {kind: self.outcomes[kind] for kind in FAULT_KINDS if self.outcomes[kind]}

    def customer_begin(self, key: CustomerKey) -> None:
        self.per_customer[key] += 1
        if self._busy[key] > 0:
            self.overlaps += 1
            self.overlap_customers.add(key)
        self._busy[key] += 1

    def customer_end(self, key: CustomerKey) -> None:
        self._busy[key] -= 1
        if self._busy[key] <= 0:
            del self._busy[key]

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready snapshot; customer keys become strings."""
        return {
            "requests_total": self.requests_total,
            "outcomes": dict(self.outcomes),
            "faults": self.faults(),
            "per_customer": {str(k): v for k, v in self.per_customer.items()},
            "over_limit": self.over_limit,
            "stall_credited": self.stall_credited,
            "overlaps": self.overlaps,
            "overlap_customers": sorted(str(k) for k in self.overlap_customers),
            "unknown_customers": self.unknown_customers,
            "records_served": self.records_served,
            "search_requests": self.search_requests,
            "search_past_cap": self.search_past_cap,
            "customers_served": self.customers_served,
            "max_concurrency": self.max_concurrency,
            "file_requests": dict(self.file_requests),
            "outside_hits": self.outside_hits,
            "in_flight": self.in_flight,
        }


class TokenBucket:
    """Admits ``rate`` requests per second on average, with bursts up to ``capacity``."""

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        if rate <= 0 or capacity < 1:
            raise ValueError("rate must be > 0 and capacity >= 1")
        self.rate = rate
        self.capacity = capacity
        self._tokens = capacity
        # The same bucket judging the same requests with no slack: what tells "credited".
        self._strict_tokens = capacity
        self._last = now

    def take(self, now: float, slack: float = 0.0) -> Admission:
        """Admit one request read at ``now`` that may have arrived up to ``slack`` seconds
        earlier. Arrivals spread over that time would have been admitted as the bucket
        refilled, so the refill of those seconds may lift it above ``capacity`` for them;
        without slack it never exceeds ``capacity``. ``credited``: admitted where the bucket
        without the slack would have been empty."""
        refill = (now - self._last) * self.rate
        self._last = now
        self._tokens = min(self.capacity + slack * self.rate, self._tokens + refill)
        self._strict_tokens = min(self.capacity, self._strict_tokens + refill)
        if self._tokens < 1:
            return "refused"
        self._tokens -= 1
        if self._strict_tokens < 1:
            return "credited"
        self._strict_tokens -= 1
        return "admitted"
