"""Customers files: CSV with a header, or JSON Lines; one bad line is reported, the rest import."""

from __future__ import annotations

import json

import pytest

from sync.domain.customers_file import (
    COLUMNS,
    CustomerRow,
    CustomersFileError,
    LineProblem,
    parse_customers,
    read_customers,
)


def row(
    customer_id: int | None = None,
    user_id: str | None = None,
    external_user_id: str | None = None,
    sales_id: int | None = None,
) -> CustomerRow:
    return CustomerRow(customer_id, user_id, external_user_id, sales_id)


def lines_of(problems: list[LineProblem]) -> list[int]:
    return [p.line for p in problems]


# --- CSV ----------------------------------------------------------------------------------------


def test_csv_with_the_full_header() -> None:
    data = (
        b"customer_id,user_id,external_user_id,sales_id\n"
        b"460155938357312,zhangsan,wmABC123,446755638177856\n"
        b"42,,,\n"
    )
    rows, problems = parse_customers(data, "customers.csv")
    assert problems == []
    assert rows == [
        row(460155938357312, "zhangsan", "wmABC123", 446755638177856),
        row(42),
    ]


def test_csv_columns_in_any_order_and_subset() -> None:
    data = b"sales_id,external_user_id,customer_id\n7,wmX,3\n,wmY,\n"
    rows, problems = parse_customers(data)
    assert problems == []
    assert rows == [row(3, None, "wmX", 7), row(None, None, "wmY", None)]


def test_csv_header_is_case_and_space_insensitive() -> None:
    rows, problems = parse_customers(b" Customer_ID , USER_ID \n5 , li \n")
    assert problems == []
    assert rows == [row(5, "li")]


def test_csv_bom_is_tolerated() -> None:
    data = "\ufeffcustomer_id,user_id\n1,王五\n".encode()
    rows, problems = parse_customers(data, "export.csv")
    assert problems == []
    assert rows == [row(1, "王五")]


def test_csv_crlf_line_endings() -> None:
    rows, problems = parse_customers(b"customer_id,user_id\r\n1,a\r\nx,b\r\n3,c\r\n")
    assert rows == [row(1, "a"), row(3, "c")]
    assert lines_of(problems) == [3]


def test_csv_blank_lines_are_skipped_and_counted() -> None:
    data = b"customer_id\n\n1\n   \n,\nabc\n2\n"
    rows, problems = parse_customers(data)
    assert rows == [row(1), row(2)]
    assert lines_of(problems) == [6]


def test_csv_bad_lines_are_reported_by_number() -> None:
    data = (
        b"customer_id,user_id,external_user_id,sales_id\n"  # 1
        b"1,a,,\n"  # 2 good
        b"abc,b,,\n"  # 3 non-numeric customer_id
        b",c,,\n"  # 4 neither id
        b"5,d\n"  # 5 too few fields
        b"6,e,,,extra\n"  # 6 too many fields
        b"7,f,,x9\n"  # 7 bad sales_id
        b"8,g,wm8,9\n"  # 8 good
    )
    rows, problems = parse_customers(data, "c.csv")
    assert rows == [row(1, "a"), row(8, "g", "wm8", 9)]
    assert lines_of(problems) == [3, 4, 5, 6, 7]
    by_line = {p.line: p.reason for p in problems}
    assert "customer_id" in by_line[3]
    assert "abc" in by_line[3]
    assert "customer_id" in by_line[4]
    assert "external_user_id" in by_line[4]
    assert "2 fields" in by_line[5]
    assert "4" in by_line[5]
    assert "5 fields" in by_line[6]
    assert "sales_id" in by_line[7]


def test_csv_quoted_field_with_a_newline_keeps_line_numbers() -> None:
    data = b'customer_id,user_id\n1,"two\nlines"\nx,u\n3,u\n'
    rows, problems = parse_customers(data)
    assert rows == [row(1, "two\nlines"), row(3, "u")]
    assert lines_of(problems) == [4]


@pytest.mark.parametrize(
    ("value", "word"),
    [
        ("0", "out of range"),
        ("-1", "whole number"),
        ("1.5", "whole number"),
        (str(2**63), "out of range"),
    ],
)
def test_csv_id_range(value: str, word: str) -> None:
    rows, problems = parse_customers(f"customer_id\n{value}\n".encode())
    assert rows == []
    assert lines_of(problems) == [2]
    assert word in problems[0].reason
    assert "customer_id" in problems[0].reason


def test_csv_largest_id() -> None:
    rows, _ = parse_customers(f"customer_id\n{2**63 - 1}\n".encode())
    assert rows == [row(2**63 - 1)]


def test_csv_user_id_too_long() -> None:
    rows, problems = parse_customers(b"customer_id,user_id\n1," + b"u" * 129 + b"\n2,ok\n")
    assert rows == [row(2, "ok")]
    assert lines_of(problems) == [2]
    assert "user_id" in problems[0].reason


def test_csv_external_user_id_alone_is_enough() -> None:
    rows, problems = parse_customers(b"external_user_id\nwmA\n\n")
    assert rows == [row(external_user_id="wmA")]
    assert problems == []


def test_unknown_columns_are_ignored_with_one_note() -> None:
    parsed = read_customers(b"customer_id,phone,notes\n1,123,x\n2,456,\n")
    assert parsed.rows == [row(1), row(2)]
    assert parsed.problems == []
    assert len(parsed.notes) == 1
    assert "'phone', 'notes'" in parsed.notes[0] and "columns" in parsed.notes[0]


@pytest.mark.parametrize(
    "header",
    [
        "customerId,externalUserId,userId,salesId",
        "CUSTOMER_ID,External_User_Id,user id,Sales-Id",
        " customerid , externaluserid , userid , salesid ",
    ],
)
def test_the_apis_own_header_spellings_are_read(header: str) -> None:
    parsed = read_customers(f"{header}\n7,wm7,u7,70\n".encode())
    assert parsed.rows == [row(7, "u7", "wm7", 70)]
    assert parsed.notes == []


def test_two_spellings_of_one_column_are_a_file_error() -> None:
    with pytest.raises(CustomersFileError) as caught:
        read_customers(b"customer_id,customerId\n1,1\n")
    assert "two columns mean customer_id" in str(caught.value)


@pytest.mark.parametrize(
    ("delimiter", "word"), [(";", "semicolons"), ("\t", "tabs"), ("|", "vertical bars")]
)
def test_the_delimiter_is_taken_from_the_header(delimiter: str, word: str) -> None:
    text = delimiter.join(("customer_id", "user_id", "sales_id")) + "\n"
    text += delimiter.join(("5", '"a,b"', "50")) + "\n"
    parsed = read_customers(text.encode())
    assert parsed.rows == [row(5, "a,b", sales_id=50)]
    assert parsed.notes == [f"fields are separated by {word}"]


def test_a_one_column_file_is_comma_separated() -> None:
    parsed = read_customers(b"customer_id\n5\n6\n")
    assert parsed.rows == [row(5), row(6)]
    assert parsed.notes == []


def test_gbk_is_read_with_a_note() -> None:
    data = "customer_id,user_id\n1,张三\n2,李四\n".encode("gbk")
    parsed = read_customers(data, "customers.csv")
    assert parsed.rows == [row(1, "张三"), row(2, "李四")]
    assert len(parsed.notes) == 1 and "GBK/GB18030" in parsed.notes[0]
    assert "line 2" in parsed.notes[0]


def test_gb18030_beyond_gbk_is_read() -> None:
    data = "customer_id,user_id\n1,𠀀\n".encode("gb18030")
    assert read_customers(data).rows == [row(1, "𠀀")]


def test_utf16_with_a_byte_order_mark_is_read() -> None:
    data = "customer_id\tuser_id\r\n3\t王\r\n".encode("utf-16")
    parsed = read_customers(data, "customers.txt")
    assert parsed.rows == [row(3, "王")]


def test_singular_field_count() -> None:
    _, problems = parse_customers(b"customer_id,user_id\n1\n1,a,b\n")
    assert [p.reason for p in problems] == [
        "1 field, the header has 2",
        "3 fields, the header has 2",
    ]


def test_header_without_an_id_column_is_a_file_error() -> None:
    with pytest.raises(CustomersFileError) as caught:
        parse_customers(b"user_id,sales_id\na,1\n")
    assert "customer_id" in str(caught.value)


def test_headerless_csv_is_a_file_error() -> None:
    with pytest.raises(CustomersFileError) as caught:
        parse_customers(b"460155938357312\n1\n")
    assert "460155938357312" in str(caught.value)


@pytest.mark.parametrize("data", [b"", b"\n", b"\n\n\n", b",,,\n1\n", b"\xef\xbb\xbf"])
def test_empty_csv_is_a_file_error(data: bytes) -> None:
    with pytest.raises(CustomersFileError) as caught:
        parse_customers(data, "customers.csv")
    assert "empty" in str(caught.value) or "header" in str(caught.value)


@pytest.mark.parametrize("data", [b"", b"\n\n"])
def test_empty_file_without_a_name_is_a_file_error(data: bytes) -> None:
    with pytest.raises(CustomersFileError):
        parse_customers(data)


@pytest.mark.parametrize(
    ("data", "line"),
    [
        (b"\xffcustomer_id\n1\n", 1),
        (b"customer_id\n1\n2\n\xfe\n", 4),
        # a cut multi-byte character after good ones: damaged UTF-8, not GBK
        ("customer_id,user_id\n1,张\n".encode() + b"2,\xe7\x8e\n", 3),
    ],
)
def test_not_utf8_is_a_file_error_naming_the_line(data: bytes, line: int) -> None:
    with pytest.raises(CustomersFileError) as caught:
        parse_customers(data)
    assert f"line {line}" in str(caught.value)
    assert "UTF-8" in str(caught.value) and "CSV UTF-8" in str(caught.value)


def test_customers_file_error_is_a_value_error() -> None:
    assert issubclass(CustomersFileError, ValueError)


def test_line_problem_text() -> None:
    assert str(LineProblem(7, "bad")) == "line 7: bad"


def test_columns_constant() -> None:
    assert COLUMNS == ("customer_id", "user_id", "external_user_id", "sales_id")


# --- JSON Lines ---------------------------------------------------------------------------------


def test_jsonl() -> None:
    data = b"\n".join(
        [
            json.dumps({"customer_id": 1, "user_id": "a", "sales_id": 9}).encode(),
            json.dumps({"external_user_id": "wmB"}).encode(),
            json.dumps({"customer_id": "3", "external_user_id": "wmC"}).encode(),
            json.dumps({"customer_id": 4, "user_id": 123}).encode(),
        ]
    )
    rows, problems = parse_customers(data, "c.jsonl")
    assert problems == []
    assert rows == [
        row(1, "a", None, 9),
        row(None, None, "wmB", None),
        row(3, None, "wmC", None),
        row(4, "123"),
    ]


@pytest.mark.parametrize("name", ["c.jsonl", "c.ndjson", "c.json", "C.JSONL", "", "upload"])
def test_jsonl_is_detected_by_name_or_content(name: str) -> None:
    rows, problems = parse_customers(b'{"customer_id": 5}\n', name)
    assert rows == [row(5)]
    assert problems == []


def test_csv_name_wins_over_content() -> None:
    with pytest.raises(CustomersFileError):
        parse_customers(b'{"customer_id": 5}\n', "c.csv")


def test_jsonl_bom_is_tolerated() -> None:
    rows, problems = parse_customers(b'\xef\xbb\xbf{"customer_id": 5}\n')
    assert rows == [row(5)]
    assert problems == []


def test_jsonl_bad_lines_are_reported_by_number() -> None:
    data = (
        b'{"customer_id": 1}\n'  # 1
        b"\n"  # 2 blank
        b'{"customer_id": "abc"}\n'  # 3 non-numeric
        b'{"user_id": "only"}\n'  # 4 neither id
        b"{not json\n"  # 5 bad JSON
        b"[1, 2]\n"  # 6 not an object
        b'{"customer_id": 2, "customerId": 2}\n'  # 7 two spellings of one key
        b'{"customer_id": 3.5}\n'  # 8 not a whole number
        b'{"customer_id": true}\n'  # 9 boolean
        b'{"customer_id": 4, "user_id": ["x"]}\n'  # 10 user_id not text
        b"   \n"  # 11 blank
        b'{"customer_id": 5}\n'  # 12 good
    )
    rows, problems = parse_customers(data, "c.jsonl")
    assert rows == [row(1), row(5)]
    assert lines_of(problems) == [3, 4, 5, 6, 7, 8, 9, 10]
    by_line = {p.line: p.reason for p in problems}
    assert "customer_id" in by_line[3]
    assert "external_user_id" in by_line[4]
    assert "JSON" in by_line[5]
    assert "object" in by_line[6]
    assert "customer_id" in by_line[7]
    assert "customer_id" in by_line[8]
    assert "customer_id" in by_line[9]
    assert "user_id" in by_line[10]


def test_jsonl_unknown_keys_are_ignored_with_one_note() -> None:
    parsed = read_customers(
        b'{"customerId": 1, "phone": "x"}\n{"externalUserId": "wm2", "notes": ""}\n', "c.jsonl"
    )
    assert parsed.rows == [row(1), row(external_user_id="wm2")]
    assert parsed.problems == []
    assert len(parsed.notes) == 1 and "'phone', 'notes'" in parsed.notes[0]
    assert "keys" in parsed.notes[0]


def test_jsonl_null_values_are_absent() -> None:
    rows, problems = parse_customers(
        b'{"customer_id": 1, "user_id": null, "external_user_id": null, "sales_id": null}\n'
    )
    assert rows == [row(1)]
    assert problems == []


def test_jsonl_crlf() -> None:
    rows, problems = parse_customers(
        b'{"customer_id": 1}\r\n\r\n{"customer_id": "x"}\r\n', "c.jsonl"
    )
    assert rows == [row(1)]
    assert lines_of(problems) == [3]


def test_jsonl_deeply_nested_line_is_a_line_problem() -> None:
    data = b"[" * 100_000 + b'\n{"customer_id": 2}\n'
    rows, problems = parse_customers(data, "c.jsonl")
    assert rows == [row(2)]
    assert lines_of(problems) == [1]


def test_jsonl_not_utf8_names_the_line() -> None:
    with pytest.raises(CustomersFileError) as caught:
        parse_customers(b'{"customer_id": 1}\n{"user_id": "\xff"}\n', "c.jsonl")
    assert "line 2" in str(caught.value)


def test_jsonl_whitespace_is_trimmed() -> None:
    rows, _ = parse_customers(b'{"customer_id": " 7 ", "user_id": "  u  "}\n', "c.jsonl")
    assert rows == [row(7, "u")]


def test_jsonl_empty_strings_are_absent() -> None:
    rows, problems = parse_customers(
        b'{"customer_id": "", "external_user_id": "  "}\n{"customer_id": 2, "user_id": ""}\n',
        "c.jsonl",
    )
    assert rows == [row(2)]
    assert lines_of(problems) == [1]


@pytest.mark.parametrize("digits", ["²", "١٢٣", "１２"])
def test_non_ascii_digits_are_a_line_problem_naming_the_column(digits: str) -> None:
    rows, problems = parse_customers(f"customer_id\n{digits}\n5\n".encode())
    assert rows == [row(5)]
    assert lines_of(problems) == [2]
    assert "customer_id" in problems[0].reason


# --- bugs ---------------------------------------------------------------------------------------


def test_jsonl_line_separator_inside_a_string() -> None:
    data = '{"customer_id": 1, "user_id": "a\u2028b"}\nbad\n{"customer_id": 3}\n'.encode()
    rows, problems = parse_customers(data, "c.jsonl")
    assert rows == [row(1, "a\u2028b"), row(3)]
    assert lines_of(problems) == [2]


def test_csv_oversized_field_is_a_line_problem() -> None:
    data = b"customer_id,user_id\n1," + b"a" * 200_000 + b"\n2,b\n"
    rows, problems = parse_customers(data, "c.csv")
    assert row(2, "b") in rows
    assert 2 in lines_of(problems)


@pytest.mark.parametrize("data", [b"", b"\n  \n"])
def test_empty_jsonl_is_a_file_error(data: bytes) -> None:
    with pytest.raises(CustomersFileError):
        parse_customers(data, "customers.jsonl")


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (b"customer_id,user_id\n1,a\x00b\n", "c.csv"),
        (b'{"customer_id": 1, "external_user_id": "wm\\u0000x"}\n', "c.jsonl"),
        (b'{"customer_id": 1, "user_id": "\\ud800"}\n', "c.jsonl"),
    ],
    ids=["csv-nul", "jsonl-nul", "jsonl-surrogate"],
)
def test_unstorable_text_is_a_line_problem(data: bytes, name: str) -> None:
    rows, problems = parse_customers(data, name)
    assert rows == []
    assert lines_of(problems) == [1 if name.endswith(".jsonl") else 2]
