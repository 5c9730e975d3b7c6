"""The circuit breaker of one pass: when the API keeps failing the same way across customers
(connection refused, DNS, TLS, timeouts, a 5xx storm), the pass stops spending on further
customers. Pure: failures and successes in, with the caller's clock; a verdict out.

It trips when requests of ``customers`` distinct customers in a row failed the same way, or when
no request has succeeded for ``seconds`` and at least two failed, all the same way, since the
last success. Any answer that proves the API is there (a page, a 429, a refused body) closes the
streak. A pass starts with a closed breaker; once tripped it stays open for the rest of the pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Failures that say the API itself is unreachable or broken, as opposed to one customer's data.
KIND_REFUSED = "connection refused"
KIND_DNS = "DNS lookup failed"
KIND_TLS = "TLS handshake failed"
KIND_TIMEOUT = "no answer"
KIND_CONNECTION = "connection failed"
KIND_SERVER = "server errors (HTTP 5xx)"


@dataclass(frozen=True, slots=True)
class BreakerLimits:
    customers: int  # SYNC_BREAKER_CUSTOMERS
    seconds: float  # SYNC_BREAKER_SECONDS


@dataclass(frozen=True, slots=True)
class Tripped:
    """Why the breaker opened: the host, the kind of failure and the last one's wording."""

    host: str
    kind: str
    detail: str
    failures: int
    customers: int
    seconds: float

    def __str__(self) -> str:
        what = self.detail if self.detail.startswith(self.kind) else f"{self.kind}: {self.detail}"
        return (
            f"API unreachable: {self.host}: {what}; {self.failures} "
            f"requests for {self.customers} customers failed this way in a row over "
            f"{self.seconds:.0f}s, so the pass stopped"
        )


@dataclass(slots=True)
class _Streak:
    kind: str
    detail: str
    failures: int = 0
    customers: set[int] = field(default_factory=set)


class CircuitBreaker:
    def __init__(self, limits: BreakerLimits, host: str, *, now: float) -> None:
        if limits.customers < 1 or limits.seconds <= 0:
            raise ValueError("breaker limits must be positive")
        self._limits = limits
        self._host = host
        self._quiet_since = now  # the last success, or the start of the pass
        self._streak: _Streak | None = None
        self.tripped: Tripped | None = None

    @property
    def failing(self) -> str | None:
        """While a streak of failures is under way (tripped or not): what fails, for health."""
        if self.tripped is not None:
            return str(self.tripped)
        streak = self._streak
        if streak is None:
            return None
        what = streak.detail if streak.detail.startswith(streak.kind) else streak.kind
        return f"API requests failing: {self._host}: {what} ({streak.failures} in a row)"

    def succeeded(self, *, now: float) -> None:
        """An answer from the API (any answer that is not itself a sign of an outage)."""
        if self.tripped is None:
            self._streak = None
            self._quiet_since = now

    def failed(self, kind: str, detail: str, customer: int, *, now: float) -> Tripped | None:
        """A request failed with an outage-like error of ``kind``; returns the verdict when this
        failure trips the breaker (only once), else None."""
        if self.tripped is not None:
            return None
        streak = self._streak
        if streak is None or streak.kind != kind:
            streak = self._streak = _Streak(kind, detail)
        streak.detail = detail
        streak.failures += 1
        streak.customers.add(customer)
        quiet = now - self._quiet_since
        if len(streak.customers) >= self._limits.customers or (
            streak.failures >= 2 and quiet >= self._limits.seconds
        ):
            self.tripped = Tripped(
                self._host, kind, detail, streak.failures, len(streak.customers), quiet
            )
            return self.tripped
        return None
