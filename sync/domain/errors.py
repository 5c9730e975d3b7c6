"""The outcomes the engine tells apart.

A *fatal* error stops the whole run (exit 1): bad settings, rejected credentials. A *customer*
error ends one customer's pass and is recorded on its state row; the run goes on and ends partial.
A *transient* error is retried with backoff until the attempt budget is spent.
"""

from __future__ import annotations


class SyncError(Exception):
    """Base of every error this package raises on purpose; its text is safe to show a user."""


class FatalError(SyncError):
    """Nothing useful can happen until a person fixes something: stop the run, exit 1."""


class ConfigError(FatalError):
    """A setting is missing or malformed."""


class UsageError(SyncError):
    """The command line names something that is not there (an unknown customer): exit 2."""


class CredentialsRejected(FatalError):
    """The API answered code 1002: the app id/key pair is wrong (or the request was altered)."""


class TransientError(SyncError):
    """Worth retrying after a pause: 429, 5xx, code 1000, a gateway page, a timeout, a reset."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        # Set when the failure is a sign of an API outage rather than of one customer's data:
        # the circuit breaker's kind (sync/domain/breaker.py), which counts these across
        # customers.
        self.outage_kind: str | None = None


class ClockSkew(TransientError):
    """The API answered code 1003; ``server_time_ms`` is its clock when the response carried one."""

    def __init__(self, message: str, *, server_time_ms: int | None) -> None:
        super().__init__(message)
        self.server_time_ms = server_time_ms


class CustomerError(SyncError):
    """This customer's pass cannot go on now (retries spent, a broken cursor, a refused body)."""


class LeaseLost(SyncError):
    """Another worker may now own this customer (our lease expired): stop touching it."""


class ApiUnreachable(SyncError):
    """The pass's circuit breaker is open: the API keeps failing the same way across customers,
    so no further request is sent in this pass. The text names the host and the reason."""
