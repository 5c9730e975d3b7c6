"""Tanmarket's message push, free of I/O: the sign check, the AES-128-CTR body, the message and
what it says about a customer (spec "Message push").

A push is ``POST`` with headers ``appId``, ``timestamp`` (ms), ``version`` and ``sign`` =
SHA-256 hex of ``appId + version + timestamp + appKey``; the body is not signed. The body is
Base64 of AES-128-CTR ciphertext: key = SHA-256(appKey)[:16], counter block = SHA-256(corpid)[:16],
no padding. The plaintext is JSON with ``noise`` (a signed 64-bit integer the answer echoes),
``msgId``, ``type`` and ``content``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

PUSH_VERSION = "1"
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# What the receiver does with a push whose type names no customer: keep it and count it.
CUSTOMER_TYPES_ADDING = frozenset({"new_qw_customer"})
# The doc's menu names a customer-deleted push without its type's spelling: these are taken
# unless SYNC_PUSH_GONE_TYPES says otherwise.
CUSTOMER_TYPES_GONE = frozenset({"delete_qw_customer", "del_qw_customer", "qw_customer_delete"})
# The registration's confirmation and the documented types that name a customer.
DOCUMENTED_TYPES = (
    "register",
    "new_qw_customer",
    "edit_qw_customer",
    "tag_info",
    "change_customer_tag",
    "customer_contact_edit",
)


class Rejection(StrEnum):
    """Why a push was refused; the value is the reason label in metrics and ``push status``."""

    MISSING_HEADER = "missing_header"
    BAD_SIGN = "bad_sign"
    WRONG_APP_ID = "wrong_app_id"
    STALE_TIMESTAMP = "stale_timestamp"
    TOO_LARGE = "too_large"
    BAD_BODY = "bad_body"

    @property
    def status(self) -> int:
        """The HTTP status the push is answered with: 401 for who sent it, 400 for what."""
        if self is Rejection.TOO_LARGE:
            return 413
        if self is Rejection.BAD_BODY:
            return 400
        return 401


class PushRejected(ValueError):
    def __init__(self, reason: Rejection, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class PushHeaders:
    app_id: str
    timestamp: str
    version: str
    sign: str


@dataclass(frozen=True, slots=True)
class PushMessage:
    """A decrypted push: ``text`` is the plaintext exactly as received (kept in the inbox)."""

    msg_id: str
    type: str
    noise: int
    content: object
    text: str


def push_sign(app_id: str, version: str, timestamp: str, app_key: str) -> str:
    return hashlib.sha256(f"{app_id}{version}{timestamp}{app_key}".encode()).hexdigest()


def _counter_cipher(app_key: str, corp_id: str) -> Cipher[modes.CTR]:
    key = hashlib.sha256(app_key.encode()).digest()[:16]
    counter = hashlib.sha256(corp_id.encode()).digest()[:16]
    return Cipher(algorithms.AES(key), modes.CTR(counter))


def encrypt_body(plaintext: str, app_key: str, corp_id: str) -> str:
    """The push body a sender builds (the simulator): Base64 of the CTR ciphertext."""
    encryptor = _counter_cipher(app_key, corp_id).encryptor()
    data = encryptor.update(plaintext.encode()) + encryptor.finalize()
    return base64.b64encode(data).decode("ascii")


def decrypt_body(body: bytes, app_key: str, corp_id: str) -> str:
    """The plaintext of a push body; PushRejected(BAD_BODY) when it is not Base64 of UTF-8."""
    try:
        data = base64.b64decode(body.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise PushRejected(Rejection.BAD_BODY, "body is not Base64") from None
    if not data:
        raise PushRejected(Rejection.BAD_BODY, "body is empty")
    decryptor = _counter_cipher(app_key, corp_id).decryptor()
    plain = decryptor.update(data) + decryptor.finalize()
    try:
        return plain.decode("utf-8")
    except UnicodeDecodeError:
        raise PushRejected(
            Rejection.BAD_BODY, "body does not decrypt to UTF-8 text (wrong key or corp id?)"
        ) from None


def corp_id_of(app_id: str, override: str = "") -> str:
    """The corp id the counter block comes from: the override when given, else the app id's
    part before its first ``_`` (the doc's rule)."""
    return override or app_id.split("_", 1)[0]


def verify_headers(
    headers: PushHeaders,
    *,
    app_id: str,
    app_key: str,
    now_ms: int,
    window_s: float,
) -> None:
    """Raises PushRejected unless the push is signed with our key, for our app, and recent.
    The sign is compared in constant time, before anything else is trusted."""
    expected = push_sign(headers.app_id, headers.version, headers.timestamp, app_key)
    if not hmac.compare_digest(expected.encode(), headers.sign.strip().lower().encode()):
        raise PushRejected(Rejection.BAD_SIGN, "sign does not match")
    if not hmac.compare_digest(headers.app_id.encode(), app_id.encode()):
        raise PushRejected(Rejection.WRONG_APP_ID, f"appId {headers.app_id[:64]!r} is not ours")
    text = headers.timestamp.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 16:
        raise PushRejected(Rejection.STALE_TIMESTAMP, "timestamp is not milliseconds")
    skew_s = abs(now_ms - int(text)) / 1000
    if skew_s > window_s:
        raise PushRejected(
            Rejection.STALE_TIMESTAMP,
            f"timestamp is {skew_s:.0f}s from now (window {window_s:g}s)",
        )


def parse_message(text: str) -> PushMessage:
    """The push's JSON; ``noise`` stays an exact integer (never a float). PushRejected(BAD_BODY)
    when it is not a message."""
    try:
        document = json.loads(text, parse_float=_no_float, parse_constant=_no_float)
    except (ValueError, RecursionError):
        raise PushRejected(Rejection.BAD_BODY, "decrypted body is not JSON") from None
    if not isinstance(document, dict):
        raise PushRejected(Rejection.BAD_BODY, "decrypted body is not a JSON object")
    noise = document.get("noise")
    if isinstance(noise, str) and _is_integer_text(noise):
        noise = int(noise)
    if not isinstance(noise, int) or isinstance(noise, bool) or not INT64_MIN <= noise <= INT64_MAX:
        raise PushRejected(Rejection.BAD_BODY, "noise is not a signed 64-bit integer")
    msg_id = document.get("msgId")
    if isinstance(msg_id, bool) or not isinstance(msg_id, int | str) or str(msg_id) == "":
        raise PushRejected(Rejection.BAD_BODY, "msgId is missing")
    msg_id_text = str(msg_id)
    if len(msg_id_text) > 128:
        raise PushRejected(Rejection.BAD_BODY, "msgId is longer than 128 characters")
    kind = document.get("type")
    if not isinstance(kind, str) or not kind or len(kind) > 64:
        raise PushRejected(Rejection.BAD_BODY, "type is missing")
    return PushMessage(msg_id_text, kind, noise, document.get("content"), text)


def _no_float(value: str) -> Any:
    # A fraction anywhere is fine, except that noise must not be one (checked after); keeping it
    # as text means nothing in the message is ever rounded.
    return value


def _is_integer_text(text: str) -> bool:
    body = text[1:] if text[:1] == "-" else text
    return body.isascii() and body.isdigit() and len(body) <= 19


def echo_noise(noise: int, reply_format: str) -> str:
    """The answer's body: ``digits`` is the bare decimal noise; ``json`` is ``{"noise": N}``
    with N written as an integer (the doc's exact success rule was not readable)."""
    if reply_format == "json":
        return f'{{"noise":{noise}}}'
    return str(noise)


@dataclass(frozen=True, slots=True)
class CustomerMention:
    """The customer a push names: by Tanmarket id, WeCom external id, or both."""

    customer_id: int | None
    external_user_id: str | None
    user_id: str | None


class Effect(StrEnum):
    """What processing a push does."""

    SYNC = "sync"  # the customer is due now
    ADD = "add"  # a customer the mirror may not know: add it, then sync it
    GONE = "gone"  # the customer was removed upstream: mark it gone
    NONE = "none"  # kept and counted only (register, unknown types, no customer named)


@dataclass(frozen=True, slots=True)
class PushPlan:
    effect: Effect
    customer: CustomerMention | None


def plan_push(
    kind: str, content: object, gone_types: frozenset[str] = CUSTOMER_TYPES_GONE
) -> PushPlan:
    """What a push of ``kind`` with ``content`` asks for; ``gone_types`` are the types that
    say a customer was deleted."""
    mention = customer_mention(content)
    if mention is None:
        return PushPlan(Effect.NONE, None)
    if kind in gone_types:
        return PushPlan(Effect.GONE, mention)
    if kind in CUSTOMER_TYPES_ADDING:
        return PushPlan(Effect.ADD, mention)
    return PushPlan(Effect.SYNC, mention)


def customer_mention(content: object) -> CustomerMention | None:
    """The customer ``content`` names (``customerId`` as a number or digit string, and/or
    ``externalUserId``), or None. A content given as JSON text is read as JSON."""
    if isinstance(content, str) and content.startswith("{"):
        try:
            content = json.loads(content, parse_float=_no_float, parse_constant=_no_float)
        except (ValueError, RecursionError):
            return None
    if not isinstance(content, dict):
        return None
    customer_id = _id_number(content.get("customerId"))
    external = _short_text(content.get("externalUserId"))
    if customer_id is None and external is None:
        return None
    user_id = _short_text(content.get("qwUserId")) or _short_text(content.get("qwSalesId"))
    return CustomerMention(customer_id, external, user_id)


def _id_number(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19:
        value = int(value)
    if isinstance(value, int) and 0 < value <= INT64_MAX:
        return value
    return None


def _short_text(value: object) -> str | None:
    if isinstance(value, str) and 0 < len(value.strip()) <= 128:
        return value.strip()
    return None


def push_sweep_at(now: float, scheduled_at: float | None, window_s: float) -> float | None:
    """When the sweep for customers a push just made due should start, or None when the one
    already scheduled (at ``scheduled_at``, still ahead) covers them. The first push of a burst
    waits ``window_s``, so every push for the same customers within it shares one sync."""
    if scheduled_at is not None and scheduled_at >= now:
        return None
    return now + window_s
