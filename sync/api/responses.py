"""Classifying one HTTP answer of the list endpoint or the customer search. Pure: status,
headers and bytes in, a page or a typed error out, so every odd answer a gateway can give is
unit-testable without a socket."""

from __future__ import annotations

from dataclasses import dataclass

from sync.domain.errors import (
    ClockSkew,
    ConfigError,
    CredentialsRejected,
    CustomerError,
    TransientError,
)
from sync.domain.jsoncodec import decode_json

CODE_OK = 0
CODE_BAD_SIGN = 1002
CODE_BAD_TIME = 1003

_RETRYABLE_4XX = frozenset({408, 425, 429})


@dataclass(frozen=True, slots=True)
class FilePage:
    """The parts of a successful answer the engine uses; ``items`` are still raw JSON values.

    ``strings_checked`` says the whole answer was proven storable text by the way it was decoded
    (``sync.domain.jsoncodec.decode_json``), so the record parser need not search each string again.
    """

    items: list[object]
    reported_page_size: int | None
    strings_checked: bool = False
    # data.totalCount, the server's count of the whole list (informational; the deletion
    # guard compares a full walk against it), or None when absent or unusable.
    total_count: int | None = None


def _count(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def classify_response(
    status: int,
    body: bytes,
    *,
    retry_after: float | None = None,
    server_time_ms: int | None = None,
) -> FilePage:
    """A page, or raise the error that says what to do about this answer."""
    data, strings_checked = _answer_data(
        status, body, retry_after, server_time_ms, endpoint="the list endpoint"
    )
    if data is None:
        return FilePage(items=[], reported_page_size=None)
    items = data.get("result")
    if items is None:
        items = []
    if not isinstance(items, list):
        raise TransientError("response field data.result is not a list")
    return FilePage(
        items=items,
        reported_page_size=_positive_int(data.get("pageSize")),
        strings_checked=strings_checked,
        total_count=_count(data.get("totalCount")),
    )


@dataclass(frozen=True, slots=True)
class SearchPage:
    """A successful answer of the customer search; ``items`` are still raw JSON values."""

    items: list[object]
    total_count: int
    reported_page_size: int | None
    strings_checked: bool = False  # as FilePage's


def classify_search_response(
    status: int,
    body: bytes,
    *,
    retry_after: float | None = None,
    server_time_ms: int | None = None,
) -> SearchPage:
    """A search page, or raise the error that says what to do about this answer. The
    customers are in ``data.data`` (``data.result`` and ``data.list`` are read too, in case);
    ``totalCount`` must be there, as a number or a digit string, since the walk relies on it."""
    data, strings_checked = _answer_data(
        status, body, retry_after, server_time_ms, endpoint="the customer search"
    )
    if data is None:
        raise TransientError("search answer has no data (data is null)")
    items: object = None
    for name in ("data", "result", "list"):
        items = data.get(name)
        if items is not None:
            break
    if items is None:
        items = []
    if not isinstance(items, list):
        raise TransientError("search answer field data.data is not a list")
    total = data.get("totalCount")
    if isinstance(total, str) and total.strip().isascii() and total.strip().isdigit():
        total = int(total.strip())
    if not isinstance(total, int) or isinstance(total, bool) or total < 0:
        raise TransientError("search answer has no usable data.totalCount")
    return SearchPage(
        items=items,
        total_count=total,
        reported_page_size=_positive_int(data.get("pageSize")),
        strings_checked=strings_checked,
    )


def classify_plain_response(
    status: int,
    body: bytes,
    *,
    retry_after: float | None = None,
    server_time_ms: int | None = None,
) -> bool:
    """An answer that carries nothing but its code (push registration): True for code 0,
    else the error the answer means is raised."""
    _answer_data(status, body, retry_after, server_time_ms, endpoint="the push registration")
    return True


def _answer_data(
    status: int,
    body: bytes,
    retry_after: float | None,
    server_time_ms: int | None,
    *,
    endpoint: str,
) -> tuple[dict[str, object] | None, bool]:
    """The ``data`` object of a successful answer (None when it is null) and whether the
    document was proven storable text; raises the error any other answer means."""
    if status != 200:
        _raise_for_status(status, body, retry_after, endpoint)
    try:
        document, strings_checked = decode_json(body)
    except RecursionError:
        raise CustomerError("response JSON is nested too deeply to read") from None
    except ValueError:
        if _looks_like_html(body):
            raise TransientError("HTTP 200 with an HTML page instead of JSON") from None
        raise TransientError(
            f"response is not valid JSON ({len(body)} bytes; truncated?)"
        ) from None
    if not isinstance(document, dict):
        raise TransientError("response JSON is not an object")

    code = document.get("code")
    message = _short(document.get("message"))
    if code == CODE_BAD_SIGN:
        raise CredentialsRejected(
            "the API rejected the request signature (code 1002): check TANMA_APP_ID and "
            f"TANMA_APP_KEY{_api_says(message)}"
        )
    if code == CODE_BAD_TIME:
        raise ClockSkew(
            f"the API says the request time is off (code 1003){_api_says(message)}",
            server_time_ms=server_time_ms,
        )
    if code != CODE_OK:
        if not isinstance(code, int) or isinstance(code, bool):
            raise TransientError("response has no numeric code")
        raise TransientError(f"API error code {code}{_api_says(message)}")

    data = document.get("data")
    if data is None:
        return None, strings_checked
    if not isinstance(data, dict):
        raise TransientError("response field data is not an object")
    return data, strings_checked


def _raise_for_status(status: int, body: bytes, retry_after: float | None, endpoint: str) -> None:
    kind = " (HTML page)" if _looks_like_html(body) else ""
    if status >= 500 or status in _RETRYABLE_4XX:
        raise TransientError(f"HTTP {status}{kind}", retry_after=retry_after)
    if status in (401, 403):
        raise CredentialsRejected(
            f"the API refused access (HTTP {status}): check TANMA_APP_ID, TANMA_APP_KEY and "
            "that this host may call the API"
        )
    if status in (404, 405):
        raise ConfigError(f"the API answered HTTP {status} for {endpoint}: check TANMA_BASE_URL")
    raise CustomerError(f"HTTP {status}{kind}")


def _looks_like_html(body: bytes) -> bool:
    head = body[:512].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or b"<html" in head


def _short(message: object, limit: int = 200) -> str:
    if not isinstance(message, str):
        return ""
    return message if len(message) <= limit else message[:limit] + "…"


def _api_says(message: str) -> str:
    return f"; the API says: {message}" if message else ""


def _positive_int(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return None
