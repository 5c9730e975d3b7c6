"""One API record → a mirror row (FileRecord) or a rejection with its reason (RejectedRecord)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync.domain.chinatime import parse_china_time
from sync.domain.records import (
    FileRecord,
    RejectedRecord,
    parse_record,
    parse_size,
    to_json_text,
)
from tests.samples import sample_record

SAMPLE_URL = (
    "https://dev.tanmarket.cn/fdfsServer/group1/M00/42/CD/rBHTdWIOJcqAOtPnAAB3mQDufYE665.rar"
)
MAX_BIGINT = 2**63 - 1


def sample() -> dict[str, Any]:
    return sample_record()


def parsed(item: object) -> FileRecord:
    result = parse_record(item)
    assert isinstance(result, FileRecord), result
    return result


def rejected(item: object) -> RejectedRecord:
    result = parse_record(item)
    assert isinstance(result, RejectedRecord), result
    assert result.reason
    return result


def nested_lists(depth: int) -> object:
    value: object = []
    for _ in range(depth - 1):
        value = [value]
    return value


# --- the vendor's sample ----------------------------------------------------------------------


def test_sample_record_columns() -> None:
    record = parsed(sample())
    assert record.id == 462821966907328
    assert record.corp_id == "ww396db747d40d16f2"
    assert record.sales_id == 446755638177856
    assert record.customer_id == 460155938357312
    assert record.file_name == "0.0.2-SNAPSHOT"
    assert record.file_url == SAMPLE_URL
    assert record.file_type == "rar"
    assert record.file_size_text == "29.9KB"
    assert record.file_size_bytes == round(29.9 * 1024) == 30618
    assert record.file_store_id == "group1/M00/42/CD/rBHTdWIOJcqAOtPnAAB3mQDufYE665.rar"
    assert record.operator_id == 410992262547520
    assert record.author_name == "admin"
    assert record.follow_content is None


def test_sample_create_time_is_the_china_instant_in_utc() -> None:
    record = parsed(sample())
    assert record.create_time == datetime(2022, 2, 28, 6, 14, 48, tzinfo=UTC)
    assert record.create_time is not None
    assert record.create_time.utcoffset() == timedelta(0)
    china = timezone(timedelta(hours=8))
    assert record.create_time == datetime(2022, 2, 28, 14, 14, 48, tzinfo=china)


def test_sample_raw_is_the_whole_item() -> None:
    item = sample()
    record = parsed(item)
    assert record.raw == sample()
    assert record.raw["fileContent"] == item["fileContent"]


def test_sample_ids_are_ints_not_floats() -> None:
    record = parsed(sample())
    for value in (record.id, record.sales_id, record.customer_id, record.operator_id):
        assert type(value) is int


# --- parse_china_time ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2022-02-28 14:14:48", datetime(2022, 2, 28, 6, 14, 48, tzinfo=UTC)),
        ("2022-03-01 07:59:59", datetime(2022, 2, 28, 23, 59, 59, tzinfo=UTC)),
        ("2024-01-01 00:00:00", datetime(2023, 12, 31, 16, 0, 0, tzinfo=UTC)),
        (" 2022-02-28 14:14:48 ", datetime(2022, 2, 28, 6, 14, 48, tzinfo=UTC)),
    ],
)
def test_parse_china_time(text: str, expected: datetime) -> None:
    assert parse_china_time(text) == expected


@pytest.mark.parametrize(
    "value",
    [
        "yesterday",
        "",
        "2022-02-28",
        "2022-02-28T14:14:48",
        "2022-02-30 10:00:00",
        "2022-02-28 25:00:00",
        "2022-02-28 24:00:00",
        "2022-02-28 14:14:48+08:00",
        None,
        1645956888,
        1645956888.0,
        ["2022-02-28 14:14:48"],
    ],
)
def test_parse_china_time_rejects(value: object) -> None:
    assert parse_china_time(value) is None


# --- parse_size ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("29.9KB", 30618),
        ("812B", 812),
        ("812", 812),
        ("0B", 0),
        ("1KB", 1024),
        ("1.2 MB", round(1.2 * 1024**2)),
        ("1MB", 1024**2),
        ("2GB", 2 * 1024**3),
        ("1.5gb", round(1.5 * 1024**3)),
        ("3 kb", 3072),
        ("3kb", 3072),
        ("  5 KB  ", 5120),
        ("7K", 7168),
        ("10 bytes", 10),
        ("1KiB", 1024),
    ],
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    "text",
    [None, "", "   ", "KB", "junk", "12XB", "-1KB", "1e3KB", "1,5KB", "1..2KB", "KB12", "1 2KB"],
)
def test_parse_size_junk_is_none(text: str | None) -> None:
    assert parse_size(text) is None


def test_parse_size_too_big_for_bigint_is_none() -> None:
    assert parse_size("9" * 30 + "PB") is None
    assert parse_size("9" * 400 + "KB") is None


# --- ids ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (462821966907328, 462821966907328),
        ("462821966907328", 462821966907328),
        (1, 1),
        (MAX_BIGINT, MAX_BIGINT),
        (str(MAX_BIGINT), MAX_BIGINT),
    ],
)
def test_usable_ids(value: object, expected: int) -> None:
    record = parsed({"id": value})
    assert record.id == expected
    assert type(record.id) is int


@pytest.mark.parametrize(
    ("item", "words"),
    [
        ({}, ("no id",)),
        ({"fileName": "a.pdf"}, ("no id",)),
        ({"id": None}, ("null",)),
        ({"id": True}, ("boolean",)),
        ({"id": False}, ("boolean",)),
        ({"id": 1.0}, ("not an integer",)),
        ({"id": 4.6e14}, ("not an integer",)),
        ({"id": -5}, ("not positive",)),
        ({"id": 0}, ("not positive",)),
        ({"id": "0"}, ("not positive",)),
        ({"id": 2**63}, ("64-bit",)),
        ({"id": 2**70}, ("64-bit",)),
        ({"id": str(2**63)}, ("64-bit",)),
        ({"id": "abc"}, ("not an integer", "abc")),
        ({"id": "12a"}, ("not an integer",)),
        ({"id": "-5"}, ("not an integer",)),
        ({"id": "1.5"}, ("not an integer",)),
        ({"id": ""}, ("not an integer",)),
        ({"id": [1]}, ("array",)),
        ({"id": {"value": 1}}, ("object",)),
    ],
)
def test_unusable_ids_are_rejected_with_a_reason(item: dict[str, Any], words: tuple[str]) -> None:
    result = rejected(item)
    assert "id" in result.reason
    for word in words:
        assert word in result.reason
    assert json.loads(result.payload) == item


def test_rejected_record_id_keeps_the_raw_id_text() -> None:
    assert rejected({"id": "abc"}).record_id == "abc"
    assert rejected({"id": -5}).record_id == "-5"
    assert rejected({"id": 2**63}).record_id == str(2**63)
    assert rejected({}).record_id is None
    assert rejected({"id": None}).record_id is None
    assert len(rejected({"id": "x" * 500}).record_id or "") <= 64


def test_rejection_reason_quotes_a_long_bad_id_briefly() -> None:
    result = rejected({"id": "z" * 10_000})
    assert len(result.reason) < 200


@pytest.mark.parametrize(
    ("item", "kind"),
    [
        (5, "number"),
        (1.5, "number"),
        ("462821966907328", "string"),
        ([{"id": 1}], "array"),
        (None, "null"),
        (True, "boolean"),
    ],
)
def test_non_object_items_are_rejected(item: object, kind: str) -> None:
    result = rejected(item)
    assert kind in result.reason
    assert "object" in result.reason
    assert json.loads(result.payload) == item
    assert result.record_id is None


def test_payload_is_the_json_text_of_the_item() -> None:
    item = {"id": "bad", "fileName": "报告.pdf", "nested": {"a": [1, 2.5, None, True]}}
    result = rejected(item)
    assert json.loads(result.payload) == item
    assert "报告" in result.payload  # kept as text, not \u escapes


def test_to_json_text_keeps_nan() -> None:
    text = to_json_text({"x": float("nan")})
    assert "NaN" in text


# --- fileContent --------------------------------------------------------------------------------


@pytest.mark.parametrize("content", ["not json{", "", "{", '"just a string"', "[1,2]", "null", 42])
def test_file_content_not_a_json_object_keeps_the_record(content: object) -> None:
    item = {"id": 7, "fileContent": content, "fileName": "notes"}
    record = parsed(item)
    assert record.file_url is None
    assert record.file_size_text is None
    assert record.file_size_bytes is None
    assert record.file_store_id is None
    assert record.file_type is None
    assert record.file_name == "notes"
    assert record.raw["fileContent"] == content


def test_file_content_deeply_nested_string_keeps_the_record() -> None:
    content = "[" * 100_000
    record = parsed({"id": 7, "fileContent": content})
    assert record.file_url is None
    assert record.raw["fileContent"] == content


def test_file_content_as_an_object() -> None:
    item = {
        "id": 9,
        "fileContent": {
            "name": "合同.docx",
            "url": "https://x/y/合同.docx",
            "size": "1.5MB",
            "type": "docx",
            "fileId": "g1/abc",
        },
    }
    record = parsed(item)
    assert record.file_name == "合同.docx"  # no fileName: the content's name
    assert record.file_url == "https://x/y/合同.docx"
    assert record.file_size_text == "1.5MB"
    assert record.file_size_bytes == round(1.5 * 1024**2)
    assert record.file_type == "docx"
    assert record.file_store_id == "g1/abc"


def test_file_name_prefers_the_record_field() -> None:
    item = {"id": 1, "fileName": "top", "fileContent": json.dumps({"name": "inner"})}
    assert parsed(item).file_name == "top"


def test_unknown_extra_fields_survive_in_raw() -> None:
    item = sample()
    item["newField"] = {"deep": [1, "two", None]}
    item["anotherOne"] = 3.25
    record = parsed(item)
    assert record.raw["newField"] == {"deep": [1, "two", None]}
    assert record.raw["anotherOne"] == 3.25
    assert record.id == 462821966907328


# --- wrong-type fields --------------------------------------------------------------------------


def test_wrong_type_fields_become_none_or_text() -> None:
    item = sample()
    item.update(
        salesId="abc",
        authorName=123,
        createTime="yesterday",
        corpid=5,
        operatorId=1.5,
        followContent=["x"],
        customerId={"a": 1},
    )
    record = parsed(item)
    assert record.sales_id is None
    assert record.author_name == "123"
    assert record.create_time is None
    assert record.corp_id == "5"
    assert record.operator_id is None
    assert record.follow_content is None
    assert record.customer_id is None
    assert record.file_size_bytes == 30618  # the rest still parses
    assert record.raw["salesId"] == "abc"


def test_numeric_strings_in_int_columns() -> None:
    record = parsed({"id": 1, "salesId": "446755638177856", "customerId": "-3"})
    assert record.sales_id == 446755638177856
    assert record.customer_id == -3


def test_int_columns_out_of_bigint_range_become_none() -> None:
    record = parsed({"id": 1, "salesId": 2**63, "customerId": -(2**63) - 1, "operatorId": True})
    assert record.sales_id is None
    assert record.customer_id is None
    assert record.operator_id is None


def test_follow_content_text_is_kept() -> None:
    assert parsed({"id": 1, "followContent": "跟进记录"}).follow_content == "跟进记录"


def test_non_finite_number_in_a_text_column_would_be_rejected_anyway() -> None:
    # NaN anywhere makes the record unstorable; it never turns into the text "nan".
    result = rejected({"id": 1, "authorName": float("nan")})
    assert "non-finite" in result.reason


# --- unstorable records -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("item", "word"),
    [
        ({"id": 1, "fileName": "a\x00b"}, "NUL"),
        ({"id": 1, "extra": {"k": ["ok", "bad\x00"]}}, "NUL"),
        ({"id": 1, "key\x00": 1}, "NUL"),
        ({"id": 1, "fileName": "\ud800"}, "surrogate"),
        ({"id": 1, "x": ["fine", {"y": "\udfff tail"}]}, "surrogate"),
        ({"id": 1, "\udc80": "v"}, "surrogate"),
        ({"id": 1, "x": float("nan")}, "non-finite"),
        ({"id": 1, "x": float("inf")}, "non-finite"),
        ({"id": 1, "x": [1, {"y": float("-inf")}]}, "non-finite"),
        ({"id": 1, "x": nested_lists(100)}, "nested"),
        ({"id": 1, "x": nested_lists(900)}, "nested"),
    ],
)
def test_unstorable_records_are_rejected(item: dict[str, Any], word: str) -> None:
    result = rejected(item)
    assert word in result.reason
    assert result.record_id == "1"
    assert isinstance(result.payload, str)


def test_moderate_nesting_is_kept() -> None:
    item = {"id": 1, "x": nested_lists(10)}
    assert parsed(item).raw["x"] == nested_lists(10)


def test_nested_depth_reason_names_the_limit() -> None:
    assert "64" in rejected({"id": 1, "x": nested_lists(200)}).reason


# --- file_type ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ({"id": 1, "fileContent": json.dumps({"type": " .RAR "})}, "rar"),
        ({"id": 1, "fileContent": json.dumps({"type": "PDF"})}, "pdf"),
        ({"id": 1, "fileName": "Report.PDF"}, "pdf"),
        ({"id": 1, "fileName": "archive.tar.gz"}, "gz"),
        ({"id": 1, "fileContent": json.dumps({"url": "https://x.cn/a/b/file.docx"})}, "docx"),
        ({"id": 1, "fileName": "no-extension"}, None),
        ({"id": 1, "fileContent": json.dumps({"url": "https://x.cn/a/plain"})}, None),
        ({"id": 1, "fileContent": json.dumps({"url": "https://x.cn.example/path"})}, None),
        ({"id": 1}, None),
    ],
)
def test_file_type(item: dict[str, Any], expected: str | None) -> None:
    assert parsed(item).file_type == expected


def test_file_type_falls_back_to_the_url_when_the_name_has_no_usable_extension() -> None:
    item = sample()
    content = json.loads(item["fileContent"])
    del content["type"]
    item["fileContent"] = json.dumps(content)
    # "0.0.2-SNAPSHOT" has a dot but "2-SNAPSHOT" is no extension; the url ends in .rar
    assert parsed(item).file_type == "rar"


def test_file_type_from_name_before_url() -> None:
    item = {
        "id": 1,
        "fileName": "scan.jpg",
        "fileContent": json.dumps({"url": "https://x.cn/a/blob.bin"}),
    }
    assert parsed(item).file_type == "jpg"


# --- odd input that once raised (regressions) ----------------------------------------------------


@pytest.mark.parametrize("value", ["²", "١٢٣", "１２", "-²", "²³"])
def test_non_ascii_digit_ids_are_rejected(value: str) -> None:
    result = rejected({"id": value})
    assert "not an integer" in result.reason
    assert result.record_id == value


@pytest.mark.parametrize("key", ["salesId", "customerId", "operatorId"])
@pytest.mark.parametrize("value", ["²", "-²", "١٢٣"])
def test_non_ascii_digits_in_int_columns_become_none(key: str, value: str) -> None:
    record = parsed({"id": 5, key: value})
    assert record.sales_id is None
    assert record.customer_id is None
    assert record.operator_id is None
    assert record.raw[key] == value


@pytest.mark.parametrize("text", ["0001-01-01 00:00:00", "0001-01-01 07:59:59"])
def test_create_time_that_would_leave_the_datetime_range_is_none(text: str) -> None:
    assert parse_china_time(text) is None
    assert parsed({"id": 5, "createTime": text}).create_time is None


def test_earliest_representable_create_time() -> None:
    assert parse_china_time("0001-01-01 08:00:00") == datetime(1, 1, 1, tzinfo=UTC)


def test_int_too_long_to_print_as_id_is_rejected() -> None:
    result = rejected({"id": 10**5000})
    assert "64-bit" in result.reason
    assert len(result.reason) < 200
    assert result.record_id is not None
    assert len(result.record_id) <= 64
    json.loads(result.payload)  # still JSON text


def test_int_too_long_to_store_as_json_is_rejected() -> None:
    # Its raw JSON could not be written, so the record is set aside rather than half-kept.
    assert "too long to store" in rejected({"id": 1, "authorName": 10**5000}).reason


def test_deepest_nesting_json_loads_produces_is_rejected() -> None:
    # json.loads stops near the recursion limit (~1000); well inside it the record is rejected.
    item = json.loads('{"id": 1, "x": ' + "[" * 500 + "]" * 500 + "}")
    assert "nested" in rejected(item).reason


def test_nesting_beyond_the_recursion_limit_is_rejected() -> None:
    result = rejected({"id": 1, "x": nested_lists(5000)})
    assert "nested" in result.reason
    assert isinstance(json.loads(result.payload), str)  # a JSON text, if not the item


def test_to_json_text_of_unprintable_values_is_json() -> None:
    for value in (nested_lists(5000), {"x": 10**5000}):
        assert isinstance(json.loads(to_json_text(value)), str)


def test_kept_records_have_a_serialisable_raw() -> None:
    result = parse_record({"id": 1, "extra": 10**5000})
    if isinstance(result, FileRecord):
        json.dumps(result.raw)
    else:
        assert "64-bit" in result.reason or "integer" in result.reason


# --- property -----------------------------------------------------------------------------------

_odd_text = st.text(st.characters(categories=["Cs", "Cc", "L", "N", "P", "Zs"]), max_size=12)
_text = st.one_of(st.text(max_size=12), _odd_text)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**300), max_value=2**300),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    _text,
)
_json_like = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(_text, children, max_size=4)
    ),
    max_leaves=20,
)
_ids = st.one_of(
    _json_like,
    st.integers(),
    st.integers(min_value=MAX_BIGINT - 3, max_value=MAX_BIGINT + 3),
    st.integers(min_value=-3, max_value=3),
    st.text(alphabet="0123456789 -+.", max_size=25),
    st.integers(min_value=0, max_value=2**64).map(str),
    st.sampled_from(["١٢٣", "²", "-²", " 12 ", "0x10", "1e5", "NaN", "１２"]),
)
_china_times = st.datetimes(
    min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)
).map(lambda d: d.strftime("%Y-%m-%d %H:%M:%S"))
_fields = st.fixed_dictionaries(
    {},
    optional={
        "corpid": _json_like,
        "salesId": _json_like,
        "customerId": _json_like,
        "operatorId": _json_like,
        "createTime": st.one_of(_json_like, _china_times),
        "fileName": _json_like,
        "authorName": _json_like,
        "followContent": _json_like,
        "fileContent": st.one_of(
            _json_like,
            st.dictionaries(st.sampled_from(["name", "url", "size", "type", "fileId"]), _json_like),
            _json_like.map(lambda v: json.dumps(v, ensure_ascii=False)),
        ),
    },
)


def _check(result: FileRecord | RejectedRecord) -> None:
    if isinstance(result, FileRecord):
        assert type(result.id) is int
        assert 0 < result.id < 2**63
        for value in (result.sales_id, result.customer_id, result.operator_id):
            assert value is None or (type(value) is int and -(2**63) <= value < 2**63)
        if result.file_size_bytes is not None:
            assert 0 <= result.file_size_bytes < 2**63
        if result.create_time is not None:
            assert result.create_time.utcoffset() == timedelta(0)
        for text in (result.corp_id, result.file_name, result.author_name, result.file_type):
            assert text is None or isinstance(text, str)
        json.dumps(result.raw, allow_nan=False)  # storable as JSON
    else:
        assert isinstance(result, RejectedRecord)
        assert isinstance(result.reason, str)
        assert result.reason.strip()
        assert isinstance(result.payload, str)
        assert result.record_id is None or len(result.record_id) <= 64


@settings(max_examples=300, deadline=None, database=None)
@given(_json_like)
def test_property_any_json_like_value_parses_or_is_rejected(item: object) -> None:
    _check(parse_record(item))


@settings(max_examples=400, deadline=None, database=None)
@given(_ids, _fields, st.dictionaries(_text, _json_like, max_size=3))
def test_property_records_with_an_id_key(
    id_value: object, fields: dict[str, Any], extra: dict[str, Any]
) -> None:
    item = {**extra, **fields, "id": id_value}
    result = parse_record(item)
    _check(result)
    if isinstance(result, FileRecord):
        assert result.raw is item or result.raw == item
    if type(id_value) is int and 0 < id_value < 2**63 and isinstance(result, RejectedRecord):
        # a usable id is only ever rejected because the record cannot be stored
        assert any(w in result.reason for w in ("NUL", "surrogate", "non-finite", "nested"))


@settings(max_examples=200, deadline=None, database=None)
@given(st.integers(min_value=1, max_value=MAX_BIGINT))
def test_property_every_positive_bigint_id_is_kept(value: int) -> None:
    assert parsed({"id": value}).id == value
    assert parsed({"id": str(value)}).id == value


@settings(max_examples=200, deadline=None, database=None)
@given(
    st.floats(min_value=0, max_value=10**6, allow_nan=False),
    st.sampled_from([("B", 0), ("KB", 1), ("MB", 2), ("GB", 3), ("kb", 1), ("mb", 2)]),
)
def test_property_parse_size_matches_the_binary_multiple(number: float, unit: tuple) -> None:
    text = f"{number:.3f}{unit[0]}"
    expected = round(float(f"{number:.3f}") * 1024 ** unit[1])
    assert parse_size(text) == expected
