"""Search items as customers or rejections, and the search answer's classification."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from sync.api.client import search_payload
from sync.api.responses import classify_search_response
from sync.domain.discovered import DiscoveredCustomer, RejectedCustomer, parse_customer_item
from sync.domain.discovery import SearchQuery, Window
from sync.domain.errors import CredentialsRejected, TransientError


def test_a_full_item_fills_every_column() -> None:
    item = {
        "customerId": "447338525077791",
        "externalUserId": "wmABC",
        "qwSalesId": "zhangwei01",
        "wechatNickname": "🌸王伟✨",
        "qwRemark": "老客户",
        "createTime": "2024-01-02 08:00:00",
        "qwLastFollowTime": 1704153600000,
        "isFriend": 1,
        "deleteStatus": 2,
        "mainFollows": [{"salesId": 392926480749222, "salesName": "李娜"}],
    }
    parsed = parse_customer_item(item)
    assert isinstance(parsed, DiscoveredCustomer)
    assert parsed.customer_id == 447338525077791
    assert (parsed.user_id, parsed.sales_id, parsed.owner_name) == (
        "zhangwei01",
        392926480749222,
        "李娜",
    )
    assert parsed.tanma_create_time == datetime(2024, 1, 2, 0, 0, tzinfo=UTC)
    assert parsed.last_follow_time == datetime(2024, 1, 2, 0, 0, tzinfo=UTC)
    assert parsed.is_friend is True and parsed.delete_status == 2
    assert (parsed.nickname, parsed.remark) == ("🌸王伟✨", "老客户")
    assert parsed.raw is item


def test_the_assumed_id_field_names_are_read_too() -> None:
    parsed = parse_customer_item({"id": 12, "salesId": "34", "externalUserId": None})
    assert isinstance(parsed, DiscoveredCustomer)
    assert (parsed.customer_id, parsed.sales_id, parsed.external_user_id) == (12, 34, None)


def test_an_external_id_alone_is_enough() -> None:
    parsed = parse_customer_item({"externalUserId": " wmX "})
    assert isinstance(parsed, DiscoveredCustomer)
    assert parsed.customer_id is None and parsed.identity == "ext:wmX"


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        ({"customerId": None, "externalUserId": None}, "no usable customer id"),
        ({"customerId": "12ab"}, 'customerId "12ab" is not a positive integer'),
        ({"customerId": -3, "externalUserId": ""}, "externalUserId is empty"),
        ({"customerId": 1.5, "externalUserId": 7}, "externalUserId is a JSON number"),
        ({"customerId": 5, "wechatNickname": "a\u0000b"}, "NUL"),
        ([1, 2], "not an object"),
    ],
)
def test_an_item_without_a_usable_id_is_rejected_with_its_reason(item: object, reason: str) -> None:
    parsed = parse_customer_item(item)
    assert isinstance(parsed, RejectedCustomer)
    assert reason in parsed.reason
    assert json.loads(parsed.payload) == item


def ok(data: object) -> bytes:
    return json.dumps({"code": 0, "message": "success", "data": data}).encode()


def test_the_customers_are_in_data_data_with_a_total() -> None:
    page = classify_search_response(
        200, ok({"totalCount": "3", "pageSize": 2, "data": [{"customerId": 1}]})
    )
    assert page.total_count == 3 and page.items == [{"customerId": 1}]
    assert page.reported_page_size == 2


def test_a_search_answer_without_a_total_is_retried() -> None:
    with pytest.raises(TransientError, match="totalCount"):
        classify_search_response(200, ok({"data": []}))
    with pytest.raises(TransientError, match="data is null"):
        classify_search_response(200, ok(None))


def test_a_non_zero_code_names_the_code_and_message() -> None:
    body = json.dumps({"code": 40030, "message": "查询结果超出上限"}).encode()
    with pytest.raises(
        TransientError, match="API error code 40030; the API says: 查询结果超出上限"
    ):
        classify_search_response(200, body)
    with pytest.raises(CredentialsRejected):
        classify_search_response(200, json.dumps({"code": 1002}).encode())


def test_the_request_names_the_window_in_china_time_both_ends_inclusive() -> None:
    start = int(datetime(2024, 1, 1, 16, 0, tzinfo=UTC).timestamp())
    payload = search_payload(SearchQuery(Window(start, start + 59), 3, 100))
    assert payload == {
        "pageNo": 3,
        "pageSize": 100,
        "createTime": {"start": "2024-01-02 00:00:00", "end": "2024-01-02 00:00:59"},
    }
    assert "createTime" not in search_payload(SearchQuery(None, 1, 1))
