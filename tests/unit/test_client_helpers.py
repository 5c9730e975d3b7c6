"""The pure helpers of the HTTP client: request body, Retry-After and HTTP dates."""

from __future__ import annotations

import calendar
import json
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync.api.client import parse_http_date, parse_retry_after, request_payload
from sync.api.signing import encode_body
from sync.domain.customers import CustomerKey


def key(
    customer_id: int | None = None,
    external_user_id: str | None = None,
    user_id: str | None = None,
    sales_id: int | None = None,
) -> CustomerKey:
    return CustomerKey(
        ref=1,
        customer_id=customer_id,
        external_user_id=external_user_id,
        user_id=user_id,
        sales_id=sales_id,
    )


# --- request_payload ----------------------------------------------------------------------------


def test_customer_id_only_first_page() -> None:
    assert request_payload(key(460155938357312), None, 30) == {
        "customerId": 460155938357312,
        "pageSize": 30,
    }


def test_external_user_id_only() -> None:
    assert request_payload(key(external_user_id="wmABC"), None, 100) == {
        "externalUserId": "wmABC",
        "pageSize": 100,
    }


def test_both_ids() -> None:
    payload = request_payload(key(5, "wmABC"), None, 10)
    assert payload == {"customerId": 5, "externalUserId": "wmABC", "pageSize": 10}


def test_user_and_sales_ids_only_when_known() -> None:
    assert request_payload(key(5, user_id="zhangsan"), None, 10) == {
        "customerId": 5,
        "userId": "zhangsan",
        "pageSize": 10,
    }
    assert request_payload(key(5, sales_id=446755638177856), None, 10) == {
        "customerId": 5,
        "salesId": 446755638177856,
        "pageSize": 10,
    }
    full = request_payload(key(5, "wm", "zs", 9), None, 10)
    assert full == {
        "customerId": 5,
        "externalUserId": "wm",
        "userId": "zs",
        "salesId": 9,
        "pageSize": 10,
    }


def test_last_id_only_when_given() -> None:
    assert "lastId" not in request_payload(key(5), None, 10)
    payload = request_payload(key(5), 462821966907328, 10)
    assert payload["lastId"] == 462821966907328
    assert type(payload["lastId"]) is int


def test_no_null_values_are_sent() -> None:
    for payload in (
        request_payload(key(5), None, 10),
        request_payload(key(external_user_id="wm"), 7, 10),
    ):
        assert None not in payload.values()


def test_payload_encodes_big_ids_exactly() -> None:
    big = 2**62 + 1
    body = encode_body(request_payload(key(big, sales_id=big), big, 100))
    decoded = json.loads(body)
    assert decoded == {"customerId": big, "salesId": big, "pageSize": 100, "lastId": big}
    assert b" " not in body


# --- parse_retry_after --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"), [("0", 0.0), ("5", 5.0), (" 5 ", 5.0), ("120", 120.0), ("007", 7.0)]
)
def test_retry_after_seconds(value: str, seconds: float) -> None:
    assert parse_retry_after(value) == seconds


@pytest.mark.parametrize(
    "value", [None, "", "   ", "junk", "-5", "5.5", "1e3", "soon", "²", "٣", "5s"]
)
def test_retry_after_junk_is_none(value: str | None) -> None:
    assert parse_retry_after(value) is None


def test_retry_after_http_date_in_the_future() -> None:
    when = datetime.now(UTC) + timedelta(seconds=120)
    seconds = parse_retry_after(format_datetime(when, usegmt=True))
    assert seconds is not None
    assert 110 <= seconds <= 121


def test_retry_after_http_date_in_the_past_is_zero() -> None:
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


def test_retry_after_date_without_zone_is_read_as_gmt() -> None:
    # HTTP dates are GMT; a zone-less one (long past here) means "no wait".
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00") == 0.0


# --- parse_http_date ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "utc"),
    [
        ("Wed, 21 Oct 2015 07:28:00 GMT", (2015, 10, 21, 7, 28, 0)),
        ("Sun, 06 Nov 1994 08:49:37 GMT", (1994, 11, 6, 8, 49, 37)),
        ("Sunday, 06-Nov-94 08:49:37 GMT", (1994, 11, 6, 8, 49, 37)),  # RFC 850
        ("Wed, 21 Oct 2015 15:28:00 +0800", (2015, 10, 21, 7, 28, 0)),
        ("Tue, 24 Nov 2026 16:55:28 GMT", (2026, 11, 24, 16, 55, 28)),
    ],
)
def test_parse_http_date(value: str, utc: tuple[int, ...]) -> None:
    assert parse_http_date(value) == calendar.timegm((*utc, 0, 0, 0)) * 1000


def test_parse_http_date_fixed_value() -> None:
    assert parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT") == 1_445_412_480_000


def test_parse_http_date_round_trip_of_now() -> None:
    now = int(time.time())
    header = format_datetime(datetime.fromtimestamp(now, UTC), usegmt=True)
    assert parse_http_date(header) == now * 1000


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "junk",
        "Wed, 32 Oct 2015 07:28:00 GMT",
        "Wed, 21 Oct 99999 07:28:00 GMT",
        "2015-10-21T07:28:00Z",
    ],
)
def test_parse_http_date_bad_is_none(value: str | None) -> None:
    assert parse_http_date(value) is None


@settings(max_examples=300, deadline=None, database=None)
@given(st.text(max_size=40))
def test_property_header_parsers_never_raise(text: str) -> None:
    parse_http_date(text)
    result = parse_retry_after(text)
    assert result is None or result >= 0


# --- bugs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["301", "999999999999", "9999999999999", "9" * 400])
def test_retry_after_beyond_the_cap_is_five_minutes(value: str) -> None:
    assert parse_retry_after(value) == 300.0


def test_retry_after_http_date_far_ahead_is_five_minutes() -> None:
    assert parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT") == 300.0


def test_parse_http_date_asctime_form() -> None:
    assert parse_http_date("Sun Nov  6 08:49:37 1994") == 784_111_777_000
