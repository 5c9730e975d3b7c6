"""The fast JSON path: orjson where it provably gives the standard library's answer."""

from __future__ import annotations

import json

import pytest

from sync.domain.jsoncodec import decode_json, encode_json


def page(*items: str) -> bytes:
    return ('{"code":0,"data":{"result":[' + ",".join(items) + "]}}").encode()


def test_an_ordinary_page_takes_the_fast_path_and_is_proven_storable() -> None:
    body = page(
        '{"id":576682793613312,"fileName":"报价单v9","fileContent":"{\\"size\\":\\"1KB\\"}"}'
    )
    document, checked = decode_json(body)
    assert checked
    assert document == json.loads(body)


@pytest.mark.parametrize(
    ("item", "why"),
    [
        ('{"id":1,"name":"a\\u0000b"}', "a NUL escape"),
        ('{"id":1,"fileContent":"{\\"name\\":\\"a\\\\u0000\\"}"}', "a NUL escape one level down"),
        ('{"id":1,"name":"\\ud800"}', "a lone surrogate (orjson refuses it)"),
        ('{"id":1,"size":NaN}', "NaN (orjson refuses it)"),
        ('{"id":1,"size":1e400}', "a number past a double (orjson refuses it)"),
        (
            '{"id":123456789012345678901234567890}',
            "an integer past 64 bits (orjson makes it float)",
        ),
        ('{"id":-9223372036854775809}', "below int64 (orjson: a float)"),
        ('{"id":1,"ratio":0.1000000000000000055511151231257827}', "a long mantissa"),
    ],
)
def test_what_orjson_refuses_or_may_read_differently_is_decoded_by_json(
    item: str, why: str
) -> None:
    body = page(item)
    document, checked = decode_json(body)
    assert not checked, why
    assert json.dumps(document) == json.dumps(json.loads(body)), why


def test_integers_stay_exact_on_either_path() -> None:
    for number in (2**63 - 1, -(2**63), 2**64, 10**30):
        document, _ = decode_json(page(f'{{"id":{number}}}'))
        assert document["data"]["result"][0]["id"] == number


def test_json_errors_are_the_standard_librarys() -> None:
    with pytest.raises(json.JSONDecodeError):
        decode_json(b'{"code":0,')
    with pytest.raises(json.JSONDecodeError):
        decode_json(b"<html>")


def test_a_bom_or_utf16_body_still_decodes() -> None:
    text = '{"code":0,"message":"成功"}'
    for body in (b"\xef\xbb\xbf" + text.encode(), text.encode("utf-16")):
        assert decode_json(body) == ({"code": 0, "message": "成功"}, False)


def test_records_are_written_compact_and_readable_and_read_back_equal() -> None:
    record = {"id": 1, "fileName": "报价单", "n": 2**70, "x": 1.5}
    text = encode_json({k: v for k, v in record.items() if k != "n"})
    assert text == '{"id":1,"fileName":"报价单","x":1.5}'
    wide = encode_json(record)  # past 64 bits: the standard library writes it, same form
    assert wide == '{"id":1,"fileName":"报价单","n":1180591620717411303424,"x":1.5}'
    assert json.loads(wide) == record
