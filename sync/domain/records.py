"""Turning one API record into a mirror row, or into a rejection with its reason. Pure.

A record is kept whenever it has a usable id: every other field is best effort (a value of the
wrong type becomes NULL in its column) and the whole record survives as raw JSON, so nothing the
API sent is lost. Only a record without a usable id, or one no database could store, is rejected.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sync.domain.chinatime import parse_china_time
from sync.domain.jsoncodec import decode_json

MAX_BIGINT = 2**63 - 1
_MAX_DEPTH = 64
# Python prints at most 4300 digits of an int (about 14,000 bits); JSON text needs the digits.
_MAX_INT_BITS = 14_000

# What no database stores in text: NUL (PostgreSQL), lone surrogates (not Unicode; JSON's
# \ud800 escapes decode to them).
_BAD_CHAR = re.compile("[\x00\ud800-\udfff]")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b|bytes?)?\s*$", re.IGNORECASE)
_SIZE_POWER = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5}
_CONTAINERS = (dict, list)


class FileRecord(NamedTuple):
    """One row of ``customer_files`` as parsed from the API (mirror bookkeeping excluded).

    A named tuple, not a frozen dataclass: just as immutable, and built in a third of the time
    (a frozen dataclass sets each of its fields through ``object.__setattr__``), which counts
    at one record per file synced."""

    id: int
    corp_id: str | None
    sales_id: int | None
    customer_id: int | None
    create_time: datetime | None
    file_name: str | None
    file_url: str | None
    file_type: str | None
    file_size_text: str | None
    file_size_bytes: int | None
    file_store_id: str | None
    operator_id: int | None
    author_name: str | None
    follow_content: str | None
    raw: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RejectedRecord:
    """An item the mirror cannot key or store; ``payload`` is its JSON text, kept verbatim."""

    reason: str
    payload: str
    record_id: str | None


def parse_record(item: object, *, strings_checked: bool = False) -> FileRecord | RejectedRecord:
    """Parse one element of ``data.result``.

    ``strings_checked``: the item comes from a document ``decode_json`` proved storable, so
    only its depth is left to check (the same answer as the full check, at a fraction of it).
    """
    if not isinstance(item, dict):
        return _reject(item, f"record is a JSON {_json_kind(item)}, not an object")
    record_id, why = _record_id(item.get("id", _MISSING))
    if record_id is None:
        return _reject(item, why)
    unstorable = _too_deep(item) if strings_checked else _unstorable(item)
    if unstorable:
        return _reject(item, unstorable)

    content = _file_content(item.get("fileContent"))
    size_text = _text(content.get("size"))
    name = _text(item.get("fileName")) or _text(content.get("name"))
    url = _text(content.get("url"))
    return FileRecord(
        id=record_id,
        corp_id=_text(item.get("corpid")),
        sales_id=_bigint(item.get("salesId")),
        customer_id=_bigint(item.get("customerId")),
        create_time=parse_china_time(item.get("createTime")),
        file_name=name,
        file_url=url,
        file_type=_file_type(_text(content.get("type")), name, url),
        file_size_text=size_text,
        file_size_bytes=parse_size(size_text),
        file_store_id=_text(content.get("fileId")),
        operator_id=_bigint(item.get("operatorId")),
        author_name=_text(item.get("authorName")),
        follow_content=_text(item.get("followContent")),
        raw=item,
    )


def parse_size(text: str | None) -> int | None:
    """Bytes in a human size such as ``29.9KB``, ``812B``, ``1.2 MB`` (binary multiples)."""
    parts = size_parts(text)
    if parts is None:
        return None
    number, power = parts
    value = float(number) * 1024**power
    return round(value) if value <= MAX_BIGINT else None


def size_parts(text: str | None) -> tuple[str, int] | None:
    """A human size split into its number as written and its power of the unit (K = 1, M = 2,
    …); None when the text is not a size."""
    if not text:
        return None
    match = _SIZE.match(text)
    if not match:
        return None
    return match.group(1), _SIZE_POWER[match.group(2).lower()]


_MISSING = object()


def _record_id(value: object) -> tuple[int | None, str]:
    if value is _MISSING:
        return None, "record has no id"
    if value is None:
        return None, "record id is null"
    if isinstance(value, bool):
        return None, f"record id is a boolean ({value!r})"
    if isinstance(value, str):
        if not is_ascii_digits(value.strip()):
            return None, f"record id {value[:40]!r} is not an integer"
        value = int(value.strip())
    if isinstance(value, float):
        return None, f"record id {value!r} is not an integer"
    if not isinstance(value, int):
        return None, f"record id is a JSON {_json_kind(value)}, not an integer"
    if value <= 0:
        return None, f"record id {value} is not positive"
    if value > MAX_BIGINT:
        return None, f"record id of {value.bit_length()} bits does not fit a 64-bit integer"
    return value, ""


def _unstorable(value: object, depth: int = 0) -> str:
    """Why a database could not store this JSON value ('' when it can)."""
    if depth > _MAX_DEPTH:
        return f"record is nested deeper than {_MAX_DEPTH} levels"
    if isinstance(value, str):
        if _BAD_CHAR.search(value) is None:
            return ""
        if "\x00" in value:
            return "record holds a NUL character, which PostgreSQL cannot store"
        return "record holds an unpaired UTF-16 surrogate (invalid Unicode)"
    if isinstance(value, float) and not math.isfinite(value):
        return f"record holds a non-finite number ({value})"
    if isinstance(value, int) and value.bit_length() > _MAX_INT_BITS:
        return f"record holds an integer of {value.bit_length()} bits, too long to store"
    # Most members are plain ASCII text, small ints, booleans or null: one cheap test accepts
    # those; anything else, or anything at the depth limit, gets the full recursive check.
    inline = depth < _MAX_DEPTH
    if isinstance(value, dict):
        for key, item in value.items():
            if not (inline and _plainly_storable(key) and _plainly_storable(item)):
                why = _unstorable(key, depth + 1) or _unstorable(item, depth + 1)
                if why:
                    return why
    elif isinstance(value, list):
        for item in value:
            if not (inline and _plainly_storable(item)):
                why = _unstorable(item, depth + 1)
                if why:
                    return why
    return ""


def _too_deep(value: dict[str, Any] | list[Any], depth: int = 0) -> str:
    """``_unstorable`` for a value whose scalars are known storable: its depth rule alone."""
    members = value.values() if isinstance(value, dict) else value
    if depth > _MAX_DEPTH or (members and depth >= _MAX_DEPTH):
        return f"record is nested deeper than {_MAX_DEPTH} levels"
    for member in members:
        if type(member) in _CONTAINERS:  # decoded JSON: containers are exactly dict or list
            why = _too_deep(member, depth + 1)
            if why:
                return why
    return ""


def _plainly_storable(value: object) -> bool:
    if type(value) is str:
        return _BAD_CHAR.search(value) is None
    if type(value) is int:
        return value.bit_length() <= _MAX_INT_BITS
    return type(value) is bool or value is None


def _file_content(value: object) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        try:
            decoded, checked = decode_json(value)
        except (ValueError, RecursionError):
            return {}
        # What the text decodes to was not checked with the record: a NUL or a lone surrogate
        # written as a JSON escape only appears now. Content no database can store is ignored
        # like content that is not JSON; the raw record still keeps the text verbatim.
        if isinstance(decoded, dict) and not (
            _too_deep(decoded) if checked else _unstorable(decoded)
        ):
            return decoded
    return {}


def _file_type(declared: str | None, name: str | None, url: str | None) -> str | None:
    if declared:
        return declared.strip().lower().lstrip(".")[:32] or None
    for candidate in (name, url):
        if candidate and "." in candidate.rsplit("/", 1)[-1]:
            ext = candidate.rsplit(".", 1)[-1].strip().lower()
            if ext.isalnum() and len(ext) <= 10:
                return ext
    return None


def _text(value: object) -> str | None:
    if type(value) is str:  # nearly always: one test instead of five
        return value
    if value is None or isinstance(value, dict | list):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, str):
        return value
    try:
        return str(value)
    except ValueError:  # an int too long to print (Python's int/str conversion limit)
        return None


def _bigint(value: object) -> int | None:
    if type(value) is int:  # nearly always (a bool is not exactly int)
        return value if -MAX_BIGINT - 1 <= value <= MAX_BIGINT else None
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and is_ascii_digits(value.strip().removeprefix("-")):
        value = int(value.strip())
    if isinstance(value, int) and -MAX_BIGINT - 1 <= value <= MAX_BIGINT:
        return value
    return None


def _json_kind(value: object) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number"
    )


def _reject(item: object, reason: str) -> RejectedRecord:
    raw_id = item.get("id") if isinstance(item, dict) else None
    shown = None
    if raw_id is not None:
        try:
            # A text id may hold what the database cannot store: shown with a stand-in.
            shown = _BAD_CHAR.sub("\ufffd", str(raw_id))[:64]
        except ValueError:  # an int too long to print
            shown = f"<{raw_id.bit_length()}-bit integer>" if isinstance(raw_id, int) else None
    return RejectedRecord(reason=reason, payload=to_json_text(item), record_id=shown)


def to_json_text(value: object) -> str:
    """JSON text of any decoded value, lossless where JSON allows (NaN kept as NaN)."""
    try:
        return json.dumps(value, ensure_ascii=False, default=repr)
    except (ValueError, RecursionError):
        pass
    try:
        return json.dumps(repr(value)[:100_000])
    except (ValueError, RecursionError):
        return json.dumps(f"<unprintable {type(value).__name__}>")


def is_ascii_digits(text: str) -> bool:
    """'123' yes; '', '-1', '1.5' and Unicode digits such as '²' or '٣' no."""
    return text.isascii() and text.isdigit()
