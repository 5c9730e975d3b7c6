"""What can become of one file's download, and when it is tried again (pure).

A failure has a *reason* (a short fixed word, counted in the coverage view) and a detail for
people. Transient reasons are retried within the run, with backoff; every failure is tried
again by later runs. The daemon spaces those later tries out: the delay doubles with each
attempt, from ``SYNC_ARCHIVE_RETRY_BASE`` up to ``SYNC_ARCHIVE_RETRY_MAX``.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    NO_URL = "no_url"  # the record carries no file URL
    REFUSED_HOST = "refused_host"  # scheme or host not allowed: no connection was made
    REFUSED_ADDRESS = "refused_address"  # the host resolved to a private or internal address
    REFUSED_REDIRECT = "refused_redirect"  # a redirect to somewhere not allowed, or too many
    NOT_FOUND = "not_found"  # 404 or 410
    HTTP_ERROR = "http_error"  # another non-2xx status
    TOO_LARGE = "too_large"  # above SYNC_ARCHIVE_MAX_BYTES, announced or streamed
    ERROR_PAGE = "error_page"  # an HTML page where a file was expected
    SIZE_MISMATCH = "size_mismatch"  # the length contradicts the record's size text
    TIMEOUT = "timeout"
    CONNECTION = "connection"  # DNS failure, refused, reset, truncated body
    STORE = "store"  # the object store refused the write


TRANSIENT = frozenset({Reason.TIMEOUT, Reason.CONNECTION, Reason.HTTP_ERROR, Reason.STORE})


class ArchiveFailure(Exception):
    """One file could not be archived; ``str()`` is the detail, safe to show and store."""

    def __init__(self, reason: Reason, detail: str, *, status: int | None = None) -> None:
        super().__init__(detail)
        self.reason = reason
        self.status = status

    @property
    def transient(self) -> bool:
        if self.reason is Reason.HTTP_ERROR:
            return self.status is None or self.status == 429 or self.status >= 500
        return self.reason in TRANSIENT


def next_try_delay(attempts: int, base_s: float, max_s: float) -> float:
    """Seconds until a file that has failed ``attempts`` times (>= 1) is due again."""
    if attempts < 1:
        return 0.0
    return min(max_s, base_s * 2.0 ** min(attempts - 1, 62))
