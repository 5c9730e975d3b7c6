"""Request signing: sha256_hex(appId + timestamp + body + appKey) over the exact bytes sent."""

from __future__ import annotations

import hashlib
import json

import pytest

from sync.api.signing import encode_body, sign, signed_headers

APP_ID = "demo-app"
TIMESTAMP = "1700000000000"
BODY = b'{"customerId":1,"pageSize":30}'
KEY = "demo-key"
# Computed once with hashlib (see test_fixed_vector_by_hand); pinned so a change is caught.
VECTOR = "420db121cdac4551bdbfd9c01e2a633fc63511f27b058c347e77b560b67eb2a1"


def test_fixed_vector_by_hand() -> None:
    expected = hashlib.sha256(
        APP_ID.encode("utf-8") + TIMESTAMP.encode("utf-8") + BODY + KEY.encode("utf-8")
    ).hexdigest()
    assert sign(APP_ID, TIMESTAMP, BODY, KEY) == expected


def test_fixed_vector_literal() -> None:
    assert sign(APP_ID, TIMESTAMP, BODY, KEY) == VECTOR


def test_sign_is_lowercase_hex_sha256() -> None:
    value = sign(APP_ID, TIMESTAMP, BODY, KEY)
    assert len(value) == 64
    assert value == value.lower()
    int(value, 16)  # hex only


def test_empty_body_signs_the_empty_string() -> None:
    expected = hashlib.sha256(b"demo-app1700000000000demo-key").hexdigest()
    assert sign(APP_ID, TIMESTAMP, b"", KEY) == expected


def test_sign_order_is_appid_timestamp_body_key() -> None:
    # Swapping the parts gives another digest: the order is part of the algorithm.
    assert sign(KEY, TIMESTAMP, BODY, APP_ID) != VECTOR
    assert sign(TIMESTAMP, APP_ID, BODY, KEY) != VECTOR


def test_sign_uses_utf8_for_non_ascii_credentials() -> None:
    body = '{"name":"探马"}'.encode()
    expected = hashlib.sha256("应用".encode() + b"1" + body + "密钥".encode()).hexdigest()
    assert sign("应用", "1", body, "密钥") == expected


def test_sign_covers_the_exact_bytes() -> None:
    payload = json.loads(BODY)
    spaced = json.dumps(payload).encode()  # default separators add spaces
    assert spaced != BODY
    assert json.loads(spaced) == json.loads(BODY)
    assert sign(APP_ID, TIMESTAMP, spaced, KEY) != sign(APP_ID, TIMESTAMP, BODY, KEY)


def test_sign_depends_on_key_order_of_the_body() -> None:
    reordered = b'{"pageSize":30,"customerId":1}'
    assert sign(APP_ID, TIMESTAMP, reordered, KEY) != VECTOR


@pytest.mark.parametrize(
    ("app_id", "timestamp", "body", "key"),
    [
        ("demo-apP", TIMESTAMP, BODY, KEY),
        (APP_ID, "1700000000001", BODY, KEY),
        (APP_ID, TIMESTAMP, BODY + b" ", KEY),
        (APP_ID, TIMESTAMP, BODY, "demo-key2"),
    ],
)
def test_every_part_changes_the_sign(app_id: str, timestamp: str, body: bytes, key: str) -> None:
    assert sign(app_id, timestamp, body, key) != VECTOR


def test_encode_body_is_compact() -> None:
    assert encode_body({"customerId": 1, "pageSize": 30}) == BODY
    encoded = encode_body({"a": [1, 2, {"b": None}], "c": "x y"})
    assert encoded == b'{"a":[1,2,{"b":null}],"c":"x y"}'


def test_encode_body_keeps_insertion_order() -> None:
    assert encode_body({"pageSize": 30, "customerId": 1}) == b'{"pageSize":30,"customerId":1}'


def test_encode_body_keeps_non_ascii_as_utf8() -> None:
    encoded = encode_body({"externalUserId": "wm探马客户"})
    assert encoded == '{"externalUserId":"wm探马客户"}'.encode()
    assert b"\\u" not in encoded
    assert isinstance(encoded, bytes)


def test_encode_body_keeps_big_ints_exact() -> None:
    big = 2**62 + 1
    encoded = encode_body({"lastId": big})
    assert encoded == b'{"lastId":4611686018427387905}'
    assert json.loads(encoded)["lastId"] == big
    # A float would have lost the last digit.
    assert float(big) != big


def test_encode_body_then_sign_round_trip() -> None:
    body = encode_body({"customerId": 1, "pageSize": 30})
    assert sign(APP_ID, TIMESTAMP, body, KEY) == VECTOR


def test_signed_headers_without_app_key() -> None:
    headers = signed_headers(APP_ID, KEY, BODY, 1_700_000_000_000)
    assert headers == {
        "Content-Type": "application/json",
        "appId": APP_ID,
        "timestamp": TIMESTAMP,
        "sign": VECTOR,
    }
    assert "appKey" not in headers
    assert KEY not in headers.values()


def test_signed_headers_with_app_key_when_asked() -> None:
    headers = signed_headers(APP_ID, KEY, BODY, 1_700_000_000_000, send_app_key=True)
    assert headers["appKey"] == KEY
    assert headers["sign"] == VECTOR
    assert headers["timestamp"] == TIMESTAMP


def test_signed_headers_send_app_key_false_explicitly() -> None:
    headers = signed_headers(APP_ID, KEY, BODY, 1_700_000_000_000, send_app_key=False)
    assert "appKey" not in headers


def test_signed_headers_timestamp_is_decimal_ms_and_signed() -> None:
    now_ms = 1_234_567_890_123
    headers = signed_headers(APP_ID, KEY, b"", now_ms)
    assert headers["timestamp"] == "1234567890123"
    assert headers["sign"] == sign(APP_ID, "1234567890123", b"", KEY)
