"""The push format, the vendor's worked example first."""

from __future__ import annotations

import pytest

from sync.domain.push import (
    CustomerMention,
    Effect,
    PushHeaders,
    PushRejected,
    Rejection,
    corp_id_of,
    decrypt_body,
    echo_noise,
    encrypt_body,
    parse_message,
    plan_push,
    push_sign,
    push_sweep_at,
    verify_headers,
)

VENDOR_SIGN = "317672b4685d9b8bafe1794390e31209aed5cef912683292fed94a69085919d3"
VENDOR_BODY = (
    b"5TMVT8H4yTSSoING+afhRlGcCZAIxTs8Z7o3vGpid6tF2aF7C73uZ44qMopuNPCFmwOLOJ8xViCTHUfe/xYZSb71/"
    b"VRSEDeIqqwN4eg="
)
VENDOR_TEXT = '{"type":"register","noise":4970601478527096155,"msgId":999,"content":"hello"}'


def test_vendor_worked_example_sign() -> None:
    assert push_sign("zc_test", "1", "1596681164807", "zc_test") == VENDOR_SIGN


def test_vendor_worked_example_decrypts() -> None:
    text = decrypt_body(VENDOR_BODY, "zc_test", "zc_test")
    assert text == VENDOR_TEXT
    message = parse_message(text)
    assert message.noise == 4970601478527096155
    assert message.msg_id == "999"
    assert message.type == "register"
    assert echo_noise(message.noise, "digits") == "4970601478527096155"


def test_vendor_headers_verify_within_the_window() -> None:
    headers = PushHeaders("zc_test", "1596681164807", "1", VENDOR_SIGN)
    verify_headers(
        headers, app_id="zc_test", app_key="zc_test", now_ms=1596681164807 + 1000, window_s=300
    )


def test_encrypt_is_the_inverse() -> None:
    body = encrypt_body(VENDOR_TEXT, "zc_test", "zc_test")
    assert body.encode() == VENDOR_BODY


def test_corp_id_rule_and_override() -> None:
    assert corp_id_of("ww123_app") == "ww123"
    assert corp_id_of("ww123_app", "zc_test") == "zc_test"


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        (PushHeaders("app", "1000", "1", "0" * 64), Rejection.BAD_SIGN),
        (
            PushHeaders("other", "1000", "1", push_sign("other", "1", "1000", "key")),
            Rejection.WRONG_APP_ID,
        ),
        (
            PushHeaders("app", "1000", "1", push_sign("app", "1", "1000", "key")),
            Rejection.STALE_TIMESTAMP,
        ),
        (
            PushHeaders("app", "12x", "1", push_sign("app", "1", "12x", "key")),
            Rejection.STALE_TIMESTAMP,
        ),
    ],
)
def test_verification_refuses(headers: PushHeaders, reason: Rejection) -> None:
    with pytest.raises(PushRejected) as caught:
        verify_headers(headers, app_id="app", app_key="key", now_ms=10_000_000, window_s=300)
    assert caught.value.reason is reason
    assert caught.value.reason.status == 401


@pytest.mark.parametrize(
    "text",
    [
        "[]",
        "not json",
        '{"msgId":1,"type":"x"}',
        '{"msgId":1,"type":"x","noise":1.5}',
        '{"msgId":1,"type":"x","noise":9223372036854775808}',
        '{"type":"x","noise":1}',
        '{"msgId":1,"noise":1}',
    ],
)
def test_bad_messages(text: str) -> None:
    with pytest.raises(PushRejected) as caught:
        parse_message(text)
    assert caught.value.reason is Rejection.BAD_BODY
    assert caught.value.reason.status == 400


def test_noise_extremes_stay_exact() -> None:
    for noise in (-(2**63), 2**63 - 1, -1, 2**53 + 1):
        message = parse_message(f'{{"msgId":"a","type":"t","noise":{noise}}}')
        assert echo_noise(message.noise, "digits") == str(noise)
        assert echo_noise(message.noise, "json") == f'{{"noise":{noise}}}'


def test_garbage_bodies() -> None:
    for body in (b"!!!not base64", b""):
        with pytest.raises(PushRejected):
            decrypt_body(body, "key", "corp")


def test_plans() -> None:
    assert plan_push("tag_info", {"customerId": 12}).effect is Effect.SYNC
    assert plan_push("customer_contact_edit", {"customerId": "12"}).customer == CustomerMention(
        12, None, None
    )
    added = plan_push("new_qw_customer", {"externalUserId": "wm1", "qwUserId": "u1"})
    assert added.effect is Effect.ADD
    assert added.customer == CustomerMention(None, "wm1", "u1")
    assert plan_push("delete_qw_customer", {"externalUserId": "wm1"}).effect is Effect.GONE
    assert plan_push("register", "hello").effect is Effect.NONE
    assert plan_push("mystery", {"nothing": 1}).effect is Effect.NONE
    assert plan_push("tag_info", {"customerId": True}).effect is Effect.NONE
    assert plan_push("tag_info", '{"customerId": "7"}').customer == CustomerMention(7, None, None)
    chosen = frozenset({"qw_del"})
    assert plan_push("qw_del", {"customerId": 3}, chosen).effect is Effect.GONE
    assert plan_push("delete_qw_customer", {"customerId": 3}, chosen).effect is Effect.SYNC


def test_sweep_coalescing() -> None:
    assert push_sweep_at(10.0, None, 2.0) == 12.0
    assert push_sweep_at(11.0, 12.0, 2.0) is None  # joins the scheduled sweep
    assert push_sweep_at(13.0, 12.0, 2.0) == 15.0
