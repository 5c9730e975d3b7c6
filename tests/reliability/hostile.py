"""Hypothesis strategies for hostile API input: any JSON value, wrong types, missing keys, huge
strings, deep nesting, NaN and Infinity, ids beyond 2^63, NUL and lone surrogates (plain and as
JSON escapes inside the fileContent text), duplicate ids within and across pages."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

MAX_BIGINT = 2**63 - 1

# Any code point, NUL and lone surrogates included; and, since those are a tiny share of
# Unicode, half the texts get one of the characters databases refuse (or trip over) spliced in.
any_char = st.characters(codec=None, categories=None, exclude_categories=())
plain_text = st.text(any_char, max_size=40)
spiked_text = st.builds(
    lambda head, odd, tail: head + odd + tail,
    plain_text,
    st.sampled_from(["\x00", "\ud800", "\udfff", "\ufeff", "\u2028"]),
    plain_text,
)
text = st.one_of(plain_text, spiked_text)
huge_text = st.builds(
    lambda piece, times: piece * times,
    st.sampled_from(["x", "长", "\x00", "\ud800", "🙂", "<html>"]),
    st.integers(10_000, 200_000),
)

edge_integers = st.sampled_from(
    [0, 1, -1, MAX_BIGINT, MAX_BIGINT + 1, 2**64, -(2**63), -(2**63) - 1, 10**30, 10**4000]
)
integers = st.one_of(st.integers(), edge_integers)
floats = st.floats(allow_nan=True, allow_infinity=True)
scalars = st.one_of(st.none(), st.booleans(), integers, floats, text)


def _nest(depth: int, as_list: bool) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = [value] if as_list else {"a": value}
    return value


# Deep enough to pass any storage limit; deeper than Python's JSON encoder can write is sent
# as raw bytes instead (see ``bodies``).
deep = st.builds(_nest, st.integers(0, 600), st.booleans())

json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(text, inner, max_size=5)),
    max_leaves=20,
)
any_value = st.one_of(json_values, huge_text, deep)

ids = st.one_of(
    st.integers(1, MAX_BIGINT),
    integers,
    floats,
    st.integers(1, MAX_BIGINT).map(str),
    st.sampled_from(["", " 12 ", "١٢", "12\x00", "\ud800", "1e5", "0x10"]),
    st.booleans(),
    st.none(),
    json_values,
)


def _content_text(value: Any, ascii_only: bool) -> str:
    try:
        return json.dumps(value, ensure_ascii=ascii_only)
    except ValueError:
        return "{"


file_content = st.one_of(
    st.builds(
        _content_text,
        st.dictionaries(st.sampled_from(["name", "url", "size", "type", "fileId"]), scalars),
        st.booleans(),
    ),
    st.builds(_content_text, json_values, st.booleans()),
    any_value,
)

FIELDS = {
    "corpid": any_value,
    "salesId": st.one_of(integers, text, floats),
    "customerId": st.one_of(integers, text, floats),
    "createTime": st.one_of(
        st.sampled_from(["2024-01-01 08:00:00", "0001-01-01 00:00:00", "9999-12-31 23:59:59"]),
        text,
        integers,
    ),
    "fileContent": file_content,
    "fileName": any_value,
    "operatorId": st.one_of(integers, text),
    "authorName": any_value,
    "followContent": any_value,
}


@st.composite
def records(draw: st.DrawFn, id_strategy: st.SearchStrategy[Any] = ids) -> Any:
    """A record-shaped object: each field present or missing, of the right type or not, plus
    unknown fields; sometimes not an object at all."""
    if draw(st.integers(0, 19)) == 0:
        return draw(any_value)
    record: dict[str, Any] = {}
    if draw(st.integers(0, 9)):
        record["id"] = draw(id_strategy)
    for name, strategy in FIELDS.items():
        if draw(st.booleans()):
            record[name] = draw(strategy)
    record.update(draw(st.dictionaries(text, json_values, max_size=2)))
    return record


# Text a database stores as it is: no NUL, no lone surrogate.
clean_text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=40)
clean_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False), clean_text
)
# fileContent as a JSON text with every non-ASCII character escaped: the text itself is clean,
# what it decodes to may hold anything (NUL, lone surrogates, wrong types).
escaped_content = st.builds(
    lambda content: json.dumps(content, ensure_ascii=True),
    st.dictionaries(
        st.sampled_from(["name", "url", "size", "type", "fileId"]), st.one_of(text, scalars)
    ),
)


@st.composite
def clean_records(draw: st.DrawFn, id_strategy: st.SearchStrategy[Any] = ids) -> Any:
    """Records whose own text is storable, so only their fileContent can be hostile: the case
    where a bad value hides one level down."""
    record: dict[str, Any] = {"id": draw(id_strategy), "fileContent": draw(escaped_content)}
    for name in FIELDS:
        if name != "fileContent" and draw(st.booleans()):
            record[name] = draw(clean_scalars)
    return record


def any_records(id_strategy: st.SearchStrategy[Any] = ids) -> st.SearchStrategy[Any]:
    return st.one_of(records(id_strategy), clean_records(id_strategy))


def document(items: list[Any], **data: Any) -> dict[str, Any]:
    return {"code": 0, "message": "success", "data": {**data, "result": items}}


def encode(value: Any) -> bytes:
    """JSON text as a server would send it; NaN and Infinity as Python writes them, lone
    surrogates escaped (a real encoder cannot send them raw)."""
    return json.dumps(value, ensure_ascii=True, allow_nan=True).encode()


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    """A response body: a page of hostile records, a hostile document, or hostile bytes."""
    kind = draw(st.integers(0, 5))
    if kind <= 2:
        items = draw(st.lists(any_records(), max_size=8))
        extra = draw(st.dictionaries(st.sampled_from(["pageSize", "totalCount"]), scalars))
        return encode(document(items, **extra))
    if kind == 3:
        envelope = draw(
            st.dictionaries(
                st.sampled_from(["code", "message", "data"]),
                st.one_of(json_values, st.dictionaries(st.just("result"), json_values)),
            )
        )
        return encode(envelope)
    if kind == 4:
        return encode(draw(any_value))
    return draw(
        st.one_of(
            st.binary(max_size=200),
            st.sampled_from(
                [
                    b"",
                    b"<html><body>502 Bad Gateway</body></html>",
                    b'{"code":0,"data":{"result":[{"id":1',
                    b"\xef\xbb\xbf{}",
                    b"[" * 100_000,
                    b'{"code":0,"data":{"result":[{"id":1,"x":'
                    + b"[" * 5000
                    + b"]" * 5000
                    + b"}]}}",
                    b'{"code":0,"data":{"result":[{"id":' + b"9" * 5000 + b"}]}}",
                    b'{"code":NaN}',
                ]
            ),
        )
    )
