"""One item of the customer search, as a customer row or a rejection with its reason. Pure.

What the spec marks *assumed* is read tolerantly: the Tanmarket customer id is ``customerId``,
else ``id``; the owner's Tanmarket id is ``salesId``, else the first ``mainFollows`` entry's
``salesId``; ids may be JSON numbers or digit strings. An item is kept when it names the customer
by a usable customer id or a non-empty external id (the file list takes either); every other field
is best effort, and the whole item is kept as raw JSON.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sync.domain.chinatime import parse_china_time
from sync.domain.records import (
    _bigint,
    _json_kind,
    _text,
    _too_deep,
    _unstorable,
    is_ascii_digits,
    to_json_text,
)

MAX_EXTERNAL_ID = 128  # customers.external_user_id is VARCHAR(128)
# Epoch times beyond this many digits are milliseconds (13 digits until the year 2286).
_MS_DIGITS = 12


@dataclass(frozen=True, slots=True)
class DiscoveredCustomer:
    customer_id: int | None
    external_user_id: str | None
    user_id: str | None
    sales_id: int | None
    nickname: str | None
    remark: str | None
    owner_name: str | None
    tanma_create_time: datetime | None
    last_follow_time: datetime | None
    is_friend: bool | None
    delete_status: int | None
    raw: dict[str, Any]

    @property
    def identity(self) -> str:
        """What tells this customer apart within a walk."""
        if self.customer_id is not None:
            return f"id:{self.customer_id}"
        return f"ext:{self.external_user_id}"


@dataclass(frozen=True, slots=True)
class RejectedCustomer:
    reason: str
    payload: str  # the item's JSON text, verbatim

    @property
    def identity(self) -> str:
        return "raw:" + payload_digest(self.payload)


def payload_digest(payload: str) -> str:
    return hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()


def parse_customer_item(
    item: object, *, strings_checked: bool = False
) -> DiscoveredCustomer | RejectedCustomer:
    """Parse one customer of a search answer. ``strings_checked``: the item comes from a
    document ``decode_json`` proved storable, so only its depth is left to check (as for
    ``parse_record``)."""
    if not isinstance(item, dict):
        return RejectedCustomer(
            f"customer item is a JSON {_json_kind(item)}, not an object", to_json_text(item)
        )
    unstorable = _too_deep(item) if strings_checked else _unstorable(item)
    if unstorable:
        return RejectedCustomer(unstorable.replace("record", "customer item"), to_json_text(item))
    customer_id, id_problem = _customer_id(item)
    external, external_problem = _external_id(item.get("externalUserId"))
    if customer_id is None and external is None:
        return RejectedCustomer(
            f"customer item has no usable customer id ({id_problem}) and no usable external "
            f"id ({external_problem})",
            to_json_text(item),
        )
    follows = item.get("mainFollows")
    first_follow = follows[0] if isinstance(follows, list) and follows else {}
    if not isinstance(first_follow, dict):
        first_follow = {}
    sales_id = _positive_id(item.get("salesId"))
    if sales_id is None:
        sales_id = _positive_id(first_follow.get("salesId"))
    return DiscoveredCustomer(
        customer_id=customer_id,
        external_user_id=external,
        user_id=_short_text(item.get("qwSalesId")),
        sales_id=sales_id,
        nickname=_text(item.get("wechatNickname")),
        remark=_text(item.get("qwRemark")),
        owner_name=_text(item.get("salesName")) or _text(first_follow.get("salesName")),
        tanma_create_time=parse_api_time(item.get("createTime")),
        last_follow_time=parse_api_time(item.get("qwLastFollowTime")),
        is_friend=_flag(item.get("isFriend")),
        delete_status=_bigint(item.get("deleteStatus")),
        raw=item,
    )


def parse_api_time(value: object) -> datetime | None:
    """China-time text (``YYYY-MM-DD HH:MM:SS``), or epoch seconds or milliseconds (a number
    or digit string; the spec does not say which form these fields take)."""
    if isinstance(value, str) and is_ascii_digits(value.strip()):
        value = int(value.strip())
    if type(value) is int and value > 0:
        seconds = value / 1000 if len(str(value)) > _MS_DIGITS else value
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    return parse_china_time(value)


def _customer_id(item: dict[str, Any]) -> tuple[int | None, str]:
    for name in ("customerId", "id"):
        if name in item:
            value = _positive_id(item[name])
            if value is not None:
                return value, ""
            return None, f"{name} {to_json_text(item[name])[:40]} is not a positive integer"
    return None, "no customerId"


def _positive_id(value: object) -> int | None:
    if isinstance(value, str):
        value = value.strip()
        if not is_ascii_digits(value) or len(value) > 19:
            return None
    parsed = _bigint(value)
    return parsed if parsed is not None and parsed > 0 else None


def _external_id(value: object) -> tuple[str | None, str]:
    if value is None:
        return None, "externalUserId is null or missing"
    if not isinstance(value, str):
        return None, f"externalUserId is a JSON {_json_kind(value)}"
    text = value.strip()
    if not text:
        return None, "externalUserId is empty"
    if len(text) > MAX_EXTERNAL_ID:
        return None, f"externalUserId is longer than {MAX_EXTERNAL_ID} characters"
    return text, ""


def _short_text(value: object) -> str | None:
    text = _text(value)
    return text if text and len(text) <= MAX_EXTERNAL_ID else None


def _flag(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if type(value) is int and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("0", "1", "true", "false"):
        return value.strip().lower() in ("1", "true")
    return None
