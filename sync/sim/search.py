"""The simulated customer search: every customer of a ``SimDataset`` as a search item, ordered
newest first (createTime descending, then customer id descending), paged by ``pageNo``.

Besides the data set's own customers it holds customers placed here only (many in one second,
as a bulk import makes them) and raw items (hostile input), and it can forget customers (removed
upstream). The traps a client must survive come from the server: a cap on ``pageNo × pageSize``
answered with a non-zero code, and customers created and removed while a walk pages.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from datetime import datetime, timedelta
from random import Random
from typing import Any

from sync.domain.chinatime import CHINA_TZ, format_china_time
from sync.domain.ids import id_time
from sync.sim import content
from sync.sim.dataset import SimCustomer, SimDataset

# Ids of customers placed only in the directory start here, far from the data set's grid.
_DIRECTORY_ID_BASE = 9 * 10**17


@dataclass(frozen=True, slots=True)
class _Entry:
    second: int  # createTime, whole seconds since the epoch
    order: int  # the tie-break within a second (the customer id, or a synthetic one)


class CustomerDirectory:
    def __init__(self, dataset: SimDataset) -> None:
        self.dataset = dataset
        self._rng = Random(f"{dataset.seed}:search")
        self._removed: set[int] = set()
        self._extra: dict[int, Any] = {}  # order -> item, for directory-only items
        self._extra_second: dict[int, int] = {}  # order -> createTime second of those items
        self._follow: dict[int, datetime] = {}  # customer id -> a later qwLastFollowTime
        self._known = 0  # data set customers already placed in the order
        self._next_extra = _DIRECTORY_ID_BASE
        # Sorted ascending by (-second, -order): newest first, as the server answers.
        self._keys: list[tuple[int, int]] = []
        self.null_external_rate = 0.0
        self.string_id_rate = 0.0

    # -- contents --------------------------------------------------------------------------

    def _sync_with_dataset(self) -> None:
        if self._known >= self.dataset.customer_count:
            return
        fresh = []
        while self._known < self.dataset.customer_count:
            customer = self.dataset.customer(self._known)
            self._known += 1
            fresh.append((-_create_second(customer.customer_id), -customer.customer_id))
        # One sort for many (a data set's first look), not an insertion each.
        self._keys.extend(fresh)
        self._keys.sort()

    def _place(self, entry: _Entry) -> None:
        bisect.insort(self._keys, (-entry.second, -entry.order))

    def add_bulk(self, count: int, at: datetime) -> list[int]:
        """``count`` customers created in the same second ``at`` (directory only, no files);
        returns their customer ids."""
        second = int(at.timestamp())
        ids = []
        for _ in range(count):
            self._next_extra += 1
            order = self._next_extra
            self._extra[order] = self._base_item(order, f"wmbulk{order}", second)
            self._extra_second[order] = second
            self._place(_Entry(second, order))
            ids.append(order)
        return ids

    def add_raw(self, item: Any, at: datetime) -> None:
        """A raw item, served exactly as given (hostile input)."""
        self._next_extra += 1
        self._extra[self._next_extra] = item
        self._extra_second[self._next_extra] = int(at.timestamp())
        self._place(_Entry(int(at.timestamp()), self._next_extra))

    def remove(self, customer_id: int) -> None:
        """The customer no longer appears in the search (removed upstream)."""
        self._sync_with_dataset()
        if customer_id in self._removed:
            return
        key = self._key_of(customer_id)
        if key is None:
            raise KeyError(f"no customer {customer_id} in the search")
        self._keys.remove(key)
        self._removed.add(customer_id)

    def restore(self, customer_id: int) -> None:
        if customer_id not in self._removed:
            return
        self._removed.discard(customer_id)
        customer = self.dataset.customer_by_id(customer_id)
        second = (
            _create_second(customer_id) if customer is not None else self._extra_second[customer_id]
        )
        self._place(_Entry(second, customer_id))

    def follow_up(self, customer_id: int, when: datetime) -> None:
        """A sales person followed the customer up: its qwLastFollowTime moves to ``when``."""
        self._follow[customer_id] = when

    def churn(self, create: int, delete: int) -> None:
        """What happens upstream between two requests: ``create`` new customers (created now,
        so newest of all) and ``delete`` existing ones removed, chosen at random."""
        if create:
            self.dataset.add_customers(create)
        self._sync_with_dataset()
        for _ in range(min(delete, len(self._keys))):
            _, negative_order = self._keys[self._rng.randrange(len(self._keys))]
            self.remove(-negative_order)

    # -- answers ---------------------------------------------------------------------------

    def query(
        self, start: int | None, end: int | None, page_no: int, page_size: int
    ) -> tuple[int, list[dict[str, Any]]]:
        """(totalCount, the page's items) for createTime in [start, end] (None: unbounded)."""
        self._sync_with_dataset()
        low = 0 if end is None else bisect.bisect_left(self._keys, (-end, -(2**63)))
        high = (
            len(self._keys) if start is None else bisect.bisect_right(self._keys, (-start, 2**63))
        )
        total = max(0, high - low)
        first = low + (page_no - 1) * page_size
        keys = self._keys[first : min(high, first + page_size)]
        return total, [self._item(-order, -second) for second, order in keys]

    def expected_customers(self) -> dict[int, dict[str, Any]]:
        """Every customer the search lists, by customer id: what a complete discovery holds
        (raw items without a usable id are not among them)."""
        self._sync_with_dataset()
        found = {}
        for second, order in self._keys:
            item = self._item(-order, -second)
            customer_id = item.get("customerId") if isinstance(item, dict) else None
            if isinstance(customer_id, str) and customer_id.isdigit():
                customer_id = int(customer_id)
            if type(customer_id) is int and customer_id > 0:
                found[customer_id] = item
        return found

    def _key_of(self, customer_id: int) -> tuple[int, int] | None:
        customer = self.dataset.customer_by_id(customer_id)
        if customer is not None:
            key = (-_create_second(customer_id), -customer_id)
        elif customer_id in self._extra_second:
            key = (-self._extra_second[customer_id], -customer_id)
        else:
            return None
        index = bisect.bisect_left(self._keys, key)
        return key if index < len(self._keys) and self._keys[index] == key else None

    def _item(self, order: int, second: int) -> Any:
        extra = self._extra.get(order)
        if extra is not None:
            return extra
        customer = self.dataset.customer_by_id(order)
        assert customer is not None
        return self._customer_item(customer, second)

    def _customer_item(self, customer: SimCustomer, second: int) -> dict[str, Any]:
        rng = Random(f"{self.dataset.seed}:{customer.index}:search")
        item = self._base_item(customer.customer_id, customer.external_user_id, second)
        item["qwSalesId"] = customer.user_id
        owner_name = self.dataset.staff_name(customer.sales_id)
        item["mainFollows"] = [
            {"salesId": customer.sales_id, "salesName": owner_name, "followDeptNames": ["销售部"]}
        ]
        # The spec is unsure where the owner's Tanmarket id comes: sometimes at the top.
        if rng.random() < 0.5:
            item["salesId"] = customer.sales_id
        if rng.random() < self.null_external_rate:
            item["externalUserId"] = None
        if rng.random() < self.string_id_rate:
            item["customerId"] = str(customer.customer_id)
        followed = self._follow.get(customer.customer_id)
        if followed is not None:
            item["qwLastFollowTime"] = format_china_time(followed)
        return item

    def _base_item(self, customer_id: int, external: str, second: int) -> dict[str, Any]:
        rng = Random(f"{self.dataset.seed}:{customer_id}:item")
        created = datetime.fromtimestamp(second, CHINA_TZ)
        follow = created + timedelta(days=rng.randrange(1, 400), seconds=rng.randrange(86_400))
        return {
            "customerId": customer_id,
            "externalUserId": external,
            "unionId": "o" + content.token(rng, 27),
            "wechatNickname": content.customer_nickname(rng),
            "qwRemark": rng.choice(("", "老客户", "VIP 客户 ⭐", "展会认识", "转介绍")),
            "createTime": format_china_time(created),
            "getCreateTime": format_china_time(created),
            "qwLastFollowTime": format_china_time(follow) if rng.random() < 0.8 else None,
            "isFriend": rng.random() < 0.93,
            "deleteStatus": rng.choice((0, 0, 0, 0, 1, 2)),
            "shareFollows": [],
            "tags": [{"tagName": rng.choice(("意向客户", "已成交", "待跟进"))}],
            "salesStageName": rng.choice(("初步接触", "需求确认", "方案报价", "成交")),
            "1001": rng.choice(("上海", "北京", "深圳", "杭州")),
        }


def _create_second(customer_id: int) -> int:
    return int(id_time(customer_id).timestamp())
