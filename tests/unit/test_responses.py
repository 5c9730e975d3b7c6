"""classify_response: one HTTP answer → a FilePage or the typed error that says what to do."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync.api.responses import FilePage, classify_response
from sync.domain.errors import (
    ClockSkew,
    ConfigError,
    CredentialsRejected,
    CustomerError,
    FatalError,
    SyncError,
    TransientError,
)
from tests.samples import SAMPLE_BODY

HTML = b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"


def body(document: object) -> bytes:
    return json.dumps(document, ensure_ascii=False).encode()


def ok(data: object) -> bytes:
    return body({"code": 0, "message": "success", "data": data})


# --- success ------------------------------------------------------------------------------------


def test_sample_body_is_a_page_of_two() -> None:
    page = classify_response(200, SAMPLE_BODY)
    assert isinstance(page, FilePage)
    assert len(page.items) == 2
    assert page.reported_page_size == 2
    first, second = page.items
    assert isinstance(first, dict)
    assert isinstance(second, dict)
    assert first["id"] == 462821966907328
    assert second["id"] == 460911105235008
    assert type(first["id"]) is int  # exact, not a float


def test_items_stay_raw_json_values() -> None:
    items = [{"id": 1}, "junk", None, 5, [1]]
    page = classify_response(200, ok({"result": items, "pageSize": 5}))
    assert page.items == items


def test_big_ids_stay_exact() -> None:
    big = 2**62 + 1
    page = classify_response(200, ok({"result": [{"id": big}]}))
    assert page.items == [{"id": big}]


def test_data_null_is_an_empty_page() -> None:
    page = classify_response(200, body({"code": 0, "message": "success", "data": None}))
    assert page == FilePage(items=[], reported_page_size=None)


def test_data_missing_is_an_empty_page() -> None:
    assert classify_response(200, body({"code": 0})).items == []


def test_result_null_is_an_empty_page() -> None:
    page = classify_response(200, ok({"result": None, "pageSize": 30, "totalCount": 0}))
    assert page.items == []
    assert page.reported_page_size == 30


def test_result_missing_is_an_empty_page() -> None:
    assert classify_response(200, ok({"totalCount": 0})).items == []


@pytest.mark.parametrize("value", [0, -1, "30", 30.0, True, None, [30]])
def test_odd_page_size_is_not_reported(value: object) -> None:
    page = classify_response(200, ok({"result": [], "pageSize": value, "totalCount": value}))
    assert page.reported_page_size is None


def test_utf8_text_in_items() -> None:
    page = classify_response(200, ok({"result": [{"id": 1, "fileName": "合同.pdf"}]}))
    assert page.items[0] == {"id": 1, "fileName": "合同.pdf"}


# --- business codes -----------------------------------------------------------------------------


def test_code_1002_is_credentials_rejected() -> None:
    with pytest.raises(CredentialsRejected) as caught:
        classify_response(200, body({"code": 1002, "message": "sign check failed"}))
    text = str(caught.value)
    assert "TANMA_APP_KEY" in text
    assert "1002" in text
    assert "demo-key" not in text
    assert isinstance(caught.value, FatalError)
    assert not isinstance(caught.value, TransientError)


def test_code_1002_message_is_shortened() -> None:
    with pytest.raises(CredentialsRejected) as caught:
        classify_response(200, body({"code": 1002, "message": "x" * 5000}))
    assert len(str(caught.value)) < 400


def test_code_1003_is_clock_skew_with_server_time() -> None:
    with pytest.raises(ClockSkew) as caught:
        classify_response(
            200, body({"code": 1003, "message": "timestamp expired"}), server_time_ms=1_700_000
        )
    assert caught.value.server_time_ms == 1_700_000
    assert isinstance(caught.value, TransientError)
    assert "1003" in str(caught.value)


def test_code_1003_without_a_date_header() -> None:
    with pytest.raises(ClockSkew) as caught:
        classify_response(200, body({"code": 1003}))
    assert caught.value.server_time_ms is None


@pytest.mark.parametrize("code", [1000, 1001, 1004, 500, -1, 42, 99999])
def test_other_codes_are_transient(code: int) -> None:
    with pytest.raises(TransientError) as caught:
        classify_response(200, body({"code": code, "message": "系统繁忙"}))
    assert not isinstance(caught.value, ClockSkew)
    assert str(code) in str(caught.value)
    assert "系统繁忙" in str(caught.value)


@pytest.mark.parametrize("code", [None, "0", "1002", True, [0]])
def test_non_numeric_codes_are_transient(code: object) -> None:
    document = {"code": code, "data": {"result": [{"id": 1}]}}
    if code is None:
        del document["code"]
    with pytest.raises(TransientError) as caught:
        classify_response(200, body(document))
    assert not isinstance(caught.value, FatalError)


def test_success_code_with_an_error_message_is_still_a_page() -> None:
    page = classify_response(200, body({"code": 0, "message": "oops", "data": {"result": []}}))
    assert page.items == []


# --- HTTP statuses ------------------------------------------------------------------------------


def test_429_is_transient_with_retry_after() -> None:
    with pytest.raises(TransientError) as caught:
        classify_response(429, b"Too Many Requests", retry_after=7.0)
    assert caught.value.retry_after == 7.0
    assert "429" in str(caught.value)


def test_429_without_retry_after() -> None:
    with pytest.raises(TransientError) as caught:
        classify_response(429, b"")
    assert caught.value.retry_after is None


@pytest.mark.parametrize("status", [500, 502, 503, 504, 599])
def test_5xx_is_transient(status: int) -> None:
    with pytest.raises(TransientError) as caught:
        classify_response(status, HTML, retry_after=3.0)
    text = str(caught.value)
    assert str(status) in text
    assert "HTML" in text
    assert caught.value.retry_after == 3.0


def test_5xx_with_json_body_does_not_claim_html() -> None:
    with pytest.raises(TransientError) as caught:
        classify_response(503, body({"code": 0, "data": None}))
    assert "HTML" not in str(caught.value)


def test_5xx_even_with_a_success_body_is_not_a_page() -> None:
    with pytest.raises(TransientError):
        classify_response(500, SAMPLE_BODY)


@pytest.mark.parametrize("status", [408, 425])
def test_retryable_4xx(status: int) -> None:
    with pytest.raises(TransientError):
        classify_response(status, b"")


@pytest.mark.parametrize("status", [401, 403])
def test_401_403_are_credentials_rejected(status: int) -> None:
    with pytest.raises(CredentialsRejected) as caught:
        classify_response(status, HTML)
    assert str(status) in str(caught.value)
    assert "TANMA_APP_KEY" in str(caught.value)


def test_404_is_a_config_error_naming_the_base_url() -> None:
    with pytest.raises(ConfigError) as caught:
        classify_response(404, HTML)
    assert "TANMA_BASE_URL" in str(caught.value)
    assert "404" in str(caught.value)


def test_405_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        classify_response(405, b"")


@pytest.mark.parametrize("status", [400, 413, 422, 302, 301, 204])
def test_other_statuses_are_customer_errors(status: int) -> None:
    with pytest.raises(CustomerError) as caught:
        classify_response(status, b"bad request")
    assert str(status) in str(caught.value)


def test_400_with_html_mentions_it() -> None:
    with pytest.raises(CustomerError) as caught:
        classify_response(400, b"  <html><body>400</body></html>")
    assert "HTML" in str(caught.value)


# --- bodies that are not the expected JSON ------------------------------------------------------


@pytest.mark.parametrize(
    "page",
    [
        HTML,
        b"<html><body>maintenance</body></html>",
        b"\n\n   <HTML>",
        b"<head><title>x</title></head>",
        b"<body>",
    ],
)
def test_html_with_status_200_is_transient(page: bytes) -> None:
    with pytest.raises(TransientError) as caught:
        classify_response(200, page)
    assert "HTML" in str(caught.value)


@pytest.mark.parametrize("cut", [1, 10, len(SAMPLE_BODY) // 2, len(SAMPLE_BODY) - 1])
def test_truncated_json_is_transient(cut: int) -> None:
    with pytest.raises(TransientError) as caught:
        classify_response(200, SAMPLE_BODY[:cut])
    assert "JSON" in str(caught.value)


@pytest.mark.parametrize("raw", [b"", b"   ", b"\xff\xfe\x00garbage", b"null x", b"\x00"])
def test_garbage_is_transient(raw: bytes) -> None:
    with pytest.raises(TransientError):
        classify_response(200, raw)


@pytest.mark.parametrize("document", [[], [{"code": 0}], "success", 0, None, True])
def test_json_that_is_not_an_object_is_transient(document: object) -> None:
    with pytest.raises(TransientError) as caught:
        classify_response(200, body(document))
    assert "object" in str(caught.value)


@pytest.mark.parametrize("result", [{"id": 1}, "items", 5, True])
def test_result_not_a_list_is_transient(result: object) -> None:
    with pytest.raises(TransientError) as caught:
        classify_response(200, ok({"result": result}))
    assert "result" in str(caught.value)


@pytest.mark.parametrize("data", [[], "x", 1, [{"id": 1}]])
def test_data_not_an_object_is_transient(data: object) -> None:
    with pytest.raises(TransientError) as caught:
        classify_response(200, ok(data))
    assert "data" in str(caught.value)


@pytest.mark.parametrize("opener", [b"[", b'{"a":'])
def test_deeply_nested_json_is_a_customer_error(opener: bytes) -> None:
    with pytest.raises(CustomerError) as caught:
        classify_response(200, opener * 100_000)
    assert "nested" in str(caught.value)
    assert not isinstance(caught.value, TransientError)


def test_number_too_long_for_python_is_a_sync_error() -> None:
    raw = b'{"code":0,"data":{"result":[{"id":' + b"9" * 5000 + b"}]}}"
    with pytest.raises(SyncError):
        classify_response(200, raw)


# --- properties ---------------------------------------------------------------------------------


def _only_sync_errors(status: int, raw: bytes) -> None:
    try:
        page = classify_response(status, raw)
    except SyncError:
        return
    assert status == 200
    assert isinstance(page, FilePage)
    assert isinstance(page.items, list)


@settings(max_examples=400, deadline=None, database=None)
@given(st.binary(max_size=300))
def test_property_arbitrary_bytes_never_raise_other_errors(raw: bytes) -> None:
    _only_sync_errors(200, raw)


@settings(max_examples=200, deadline=None, database=None)
@given(st.integers(min_value=100, max_value=999), st.binary(max_size=64))
def test_property_any_status_gives_a_page_or_a_sync_error(status: int, raw: bytes) -> None:
    _only_sync_errors(status, raw)


_json = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**300), 2**300),
        st.floats(),
        st.text(max_size=8),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=15,
)


@settings(max_examples=300, deadline=None, database=None)
@given(
    st.one_of(
        _json,
        st.fixed_dictionaries(
            {"code": st.one_of(st.sampled_from([0, 1000, 1002, 1003]), _json)},
            optional={
                "message": _json,
                "data": st.one_of(
                    _json,
                    st.fixed_dictionaries(
                        {},
                        optional={
                            "result": st.one_of(_json, st.lists(_json, max_size=4)),
                            "pageSize": _json,
                            "totalCount": _json,
                        },
                    ),
                ),
            },
        ),
    ),
    st.sampled_from([b"", b"\n", b"\x00", b"}"]),
)
def test_property_json_shaped_bodies(document: object, tail: bytes) -> None:
    _only_sync_errors(200, json.dumps(document).encode() + tail)
