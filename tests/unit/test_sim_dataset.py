"""The simulator's dataset: deterministic, shaped like the real API's data, and changeable."""

from __future__ import annotations

import csv
import io
import json
import time
from datetime import datetime, timedelta

import pytest

from sync.sim import (
    CHINA_TZ,
    ID_EPOCH,
    ID_UNITS_PER_SECOND,
    POISON_KINDS,
    UNUSABLE_ID_KINDS,
    SimDataset,
    id_create_time,
    id_time,
    is_usable_id,
    make_id,
)

RECORD_FIELDS = [
    "id",
    "corpid",
    "salesId",
    "customerId",
    "createTime",
    "fileContent",
    "fileName",
    "operatorId",
    "authorName",
    "followContent",
]


def _ids(records: list[dict]) -> list[int]:
    return [r["id"] for r in records]


def _with_files(ds: SimDataset, least: int = 1) -> list[int]:
    return [i for i in range(ds.customer_count) if ds.base_file_count(i) >= least]


# ----- the id scheme ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("record_id", "create_time"),
    [(462821966907328, "2022-02-28 14:14:48"), (460911105235008, "2022-02-17 19:04:10")],
)
def test_vendor_sample_ids_decode_to_their_create_time(record_id: int, create_time: str) -> None:
    assert id_create_time(record_id) == create_time


def test_make_id_inverts_id_time() -> None:
    instant = datetime(2022, 2, 28, 14, 14, 48, 528000, tzinfo=CHINA_TZ)
    assert make_id(instant, 1984) == 462821966907328
    assert id_time(462821966907328) == instant
    assert make_id(ID_EPOCH, 0) == 0
    assert make_id(ID_EPOCH + timedelta(seconds=1), 0) == ID_UNITS_PER_SECOND == 2_048_000


def test_make_id_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="seq"):
        make_id(ID_EPOCH, 2048)
    with pytest.raises(ValueError, match="before"):
        make_id(ID_EPOCH - timedelta(days=1), 0)
    with pytest.raises(ValueError, match="aware"):
        make_id(datetime(2020, 1, 1), 0)  # a naive datetime


# ----- shape -----------------------------------------------------------------------------------


def test_same_seed_same_data_other_seed_other_data() -> None:
    a, b, c = SimDataset(seed=7), SimDataset(seed=7), SimDataset(seed=8)
    assert a.customers_csv() == b.customers_csv()
    for index in range(a.customer_count):
        assert a.visible_records(index) == b.visible_records(index)
    assert a.expected_mirror() == b.expected_mirror()
    assert a.customers_csv() != c.customers_csv()
    assert set(a.expected_mirror()) != set(c.expected_mirror())


def test_records_have_the_api_fields_and_consistent_ids() -> None:
    ds = SimDataset(seed=2, customers=30)
    corpids = set()
    for index in _with_files(ds):
        customer = ds.customer(index)
        for record in ds.visible_records(index):
            assert list(record) == RECORD_FIELDS
            assert record["createTime"] == id_create_time(record["id"])
            assert record["customerId"] == customer.customer_id
            assert record["salesId"] == customer.sales_id
            content = json.loads(record["fileContent"])
            assert set(content) == {"name", "url", "size", "type", "fileId"}
            assert content["url"].startswith("https://files.example.invalid/group1/M00/")
            assert content["url"].endswith(content["fileId"])
            assert content["size"][-2:] in {"KB", "MB", "GB"} or content["size"].endswith("B")
            assert id_time(record["id"]) < ds.start
            assert id_time(record["id"]) > id_time(customer.customer_id)
            corpids.add(record["corpid"])
    assert len(corpids) == 1
    (corpid,) = corpids
    assert corpid.startswith("ww")
    assert len(corpid) == 18


def test_content_is_varied_and_unicode() -> None:
    mirror = SimDataset(seed=3, customers=60).expected_mirror()
    types = {json.loads(r["fileContent"])["type"] for r in mirror.values()}
    assert {"pdf", "docx", "xlsx", "jpg", "png", "rar", "mp4", "pptx"} <= types
    assert any(not r["fileName"].isascii() for r in mirror.values())
    assert any(not r["authorName"].isascii() for r in mirror.values())
    nulls = sum(r["followContent"] is None for r in mirror.values()) / len(mirror)
    assert 0.5 < nulls < 0.7


def test_file_counts_are_skewed_around_the_mean() -> None:
    ds = SimDataset(seed=4, customers=5000, mean_files=20.0)
    counts = [ds.base_file_count(i) for i in range(ds.customer_count)]
    assert 17 < sum(counts) / len(counts) < 23
    assert 0.03 < counts.count(0) / len(counts) < 0.07
    assert sum(c <= 5 for c in counts) / len(counts) > 0.5
    assert max(counts) >= 400
    assert 0 < sum(c >= 100 for c in counts) / len(counts) < 0.06


def test_generated_records_match_the_drawn_counts_and_ids_are_unique() -> None:
    ds = SimDataset(seed=5, customers=300)
    total = sum(ds.base_file_count(i) for i in range(ds.customer_count))
    assert len(ds.expected_mirror()) == total  # a collision would lose a record here


def test_records_come_newest_first() -> None:
    ds = SimDataset(seed=6, customers=40)
    for index in _with_files(ds, 2):
        ids = _ids(ds.visible_records(index))
        assert ids == sorted(ids, reverse=True)
        assert len(set(ids)) == len(ids)


def test_customers_are_found_by_either_id() -> None:
    ds = SimDataset(seed=9, customers=3000)
    for index in (0, 1, 2047, 2048, 2999):
        customer = ds.customer(index)
        assert customer.index == index
        assert customer.external_user_id.startswith("wm")
        assert len(customer.external_user_id) == 32
        assert ds.customer_by_id(customer.customer_id) == customer
        assert ds.customer_by_external(customer.external_user_id) == customer
    assert ds.customer_by_id(ds.customer(5).customer_id + 1) is None
    assert ds.customer_by_id("12") is None
    assert ds.customer_by_external("wm" + "x" * 30) is None
    assert ds.customer_by_external(ds.customer(5).external_user_id[:-1] + "!") is None
    with pytest.raises(IndexError):
        ds.customer(3000)


def test_a_large_dataset_is_cheap_until_used() -> None:
    started = time.perf_counter()
    ds = SimDataset(seed=1, customers=100_000)
    customer = ds.customer(99_999)
    records = ds.visible_records(99_999)
    assert time.perf_counter() - started < 0.5
    assert ds.customer_by_external(customer.external_user_id) == customer
    assert all(r["customerId"] == customer.customer_id for r in records)


def test_page_filters_below_last_id() -> None:
    ds = SimDataset(seed=10, customers=40)
    index = max(range(ds.customer_count), key=ds.base_file_count)
    everything = ds.visible_records(index)
    total, first = ds.page(index, None, 10)
    assert total == len(everything)
    assert _ids(first) == _ids(everything[:10])
    _, second = ds.page(index, first[-1]["id"], 10)
    assert _ids(second) == _ids(everything[10:20])
    _, none = ds.page(index, 1, 10)
    assert none == []


# ----- generations -----------------------------------------------------------------------------


def test_advance_adds_late_records_just_below_the_max() -> None:
    ds = SimDataset(seed=11, customers=60)
    before = {i: _ids(ds.visible_records(i)) for i in range(ds.customer_count)}
    assert ds.advance(new_rate=0, late_rate=1, delete_rate=0, update_rate=0) == 1
    for index, old in before.items():
        added = set(_ids(ds.visible_records(index))) - set(old)
        if not old:
            assert added == set()
            continue
        assert len(added) == 1
        (late,) = added
        assert old[0] - 60 * ID_UNITS_PER_SECOND <= late < old[0] - ID_UNITS_PER_SECOND // 2


def test_advance_adds_new_records_above_every_id_at_the_new_time() -> None:
    ds = SimDataset(seed=12, customers=40)
    before = {i: _ids(ds.visible_records(i)) for i in range(ds.customer_count)}
    ds.advance(new_rate=1, late_rate=0, delete_rate=0, update_rate=0)
    assert ds.now == ds.start + timedelta(hours=1)
    for index, old in before.items():
        now = ds.visible_records(index)
        added = _ids(now)[: len(now) - len(old)]
        assert 1 <= len(added) <= 3
        assert _ids(now)[len(added) :] == old
        for record_id in added:
            assert ds.start < id_time(record_id) <= ds.now


def test_deletion_hides_and_restore_brings_back() -> None:
    ds = SimDataset(seed=13, customers=20)
    index = _with_files(ds, 3)[0]
    victim = ds.visible_records(index)[1]["id"]
    ds.delete_record(victim)
    assert victim not in _ids(ds.visible_records(index))
    assert victim not in ds.expected_mirror()
    ds.restore_record(victim)
    assert victim in ds.expected_mirror()
    with pytest.raises(KeyError):
        ds.delete_record(victim + 1)


def test_advance_deletes_and_updates_keep_ids() -> None:
    ds = SimDataset(seed=14, customers=30)
    before = ds.expected_mirror()
    ds.advance(new_rate=0, late_rate=0, delete_rate=0, update_rate=1)
    after = ds.expected_mirror()
    assert set(after) == set(before)
    changed = [i for i in before if before[i] != after[i]]
    assert len(changed) == len(_with_files(ds))
    for record_id in changed:
        assert after[record_id]["fileName"] != before[record_id]["fileName"]
        assert after[record_id]["followContent"] != before[record_id]["followContent"]
        assert after[record_id]["createTime"] == before[record_id]["createTime"]
    ds.advance(new_rate=0, late_rate=0, delete_rate=1, update_rate=0)
    assert len(ds.expected_mirror()) == len(before) - len(_with_files(ds))


def test_advance_can_target_some_customers() -> None:
    ds = SimDataset(seed=15, customers=20)
    before = {i: ds.visible_records(i) for i in range(ds.customer_count)}
    ds.advance(new_rate=1, customers=[3])
    for index, old in before.items():
        assert (ds.visible_records(index) != old) == (index == 3)


def test_lazy_generations_match_eager_ones() -> None:
    eager, lazy = SimDataset(seed=16, customers=30), SimDataset(seed=16, customers=30)
    for _ in range(3):
        eager.advance(new_rate=0.5, late_rate=0.5, delete_rate=0.2, update_rate=0.2)
        eager.expected_mirror()  # looks at every customer after every generation
        lazy.advance(new_rate=0.5, late_rate=0.5, delete_rate=0.2, update_rate=0.2)
    assert lazy.expected_mirror() == eager.expected_mirror()
    assert lazy.generation == eager.generation == 3


def test_add_record_places_records_precisely() -> None:
    ds = SimDataset(seed=17, customers=10)
    index = _with_files(ds)[0]
    top = ds.visible_records(index)[0]["id"]
    late = ds.add_record(index, below_max_by_seconds=5)
    assert late["id"] == top - 5 * ID_UNITS_PER_SECOND
    assert late["createTime"] == id_create_time(late["id"])
    newest = ds.add_record(index)
    assert newest["id"] > top
    assert ds.visible_records(index)[0] == newest
    exact = ds.add_record(index, id=top - 1)
    assert exact["id"] in ds.expected_mirror()
    ds.delete_record(exact["id"])
    assert exact["id"] not in ds.expected_mirror()
    with pytest.raises(ValueError, match="already"):
        ds.add_record(index, id=top)
    poisoned = ds.add_record(index, poison="id_null")
    assert poisoned["id"] is None


# ----- poison ----------------------------------------------------------------------------------


def test_poison_kinds_appear_and_the_mirror_keeps_only_usable_ids() -> None:
    ds = SimDataset(seed=18, customers=200, poison_rate=0.1)
    poison = ds.poison_records()
    assert {p.kind for p in poison} == set(POISON_KINDS)
    mirror = ds.expected_mirror()
    assert all(is_usable_id(record_id) for record_id in mirror)
    for p in poison:
        raw_id = p.body.get("id")
        if p.kind in UNUSABLE_ID_KINDS:
            assert not p.usable
            assert not is_usable_id(raw_id)
            assert p.key not in mirror
        else:
            assert p.usable
            assert mirror[raw_id] == p.body
    values = {p.kind: p.body.get("id", "absent") for p in poison}
    assert values["id_missing"] == "absent"
    assert values["id_null"] is None
    assert values["id_string"] == "abc"
    assert values["id_float"] == 1.5
    assert values["id_negative"] < 0
    assert values["id_huge"] >= 2**63
    extra = next(p.body for p in poison if p.kind == "extra_field")
    assert extra["extraField"] == {"nested": [1, 2]}
    assert (
        next(p.body for p in poison if p.kind == "content_not_json")["fileContent"] == "not json {"
    )


def test_poison_keeps_its_place_in_the_order() -> None:
    ds = SimDataset(seed=19, customers=100, poison_rate=0.2)
    positions = {(p.customer_index, p.key) for p in ds.poison_records()}
    index = max({i for i, _ in positions}, key=ds.base_file_count)
    total, page = ds.page(index, None, 1000)
    assert total == len(page)
    for key in (k for i, k in positions if i == index):
        _, below = ds.page(index, key, 1000)
        assert len(below) < total  # the hidden key cuts the list like a real id would


def test_poison_does_not_disturb_the_other_records() -> None:
    clean = SimDataset(seed=20, customers=50).expected_mirror()
    dirty = SimDataset(seed=20, customers=50, poison_rate=0.3)
    spoiled = {p.key for p in dirty.poison_records()}
    assert spoiled
    assert not SimDataset(seed=20, customers=50).poison_records()
    for record_id, record in dirty.expected_mirror().items():
        if record_id not in spoiled:
            assert clean[record_id] == record
    assert set(clean) - spoiled == set(dirty.expected_mirror()) - spoiled


# ----- customer lists --------------------------------------------------------------------------


def test_customer_lists() -> None:
    ds = SimDataset(seed=21, customers=25)
    rows = list(csv.DictReader(io.StringIO(ds.customers_csv())))
    assert ds.customers_csv().splitlines()[0] == "customer_id,user_id,external_user_id,sales_id"
    assert len(rows) == 25
    assert int(rows[4]["customer_id"]) == ds.customer(4).customer_id
    lines = [json.loads(line) for line in ds.customers_jsonl().splitlines()]
    assert len(lines) == 25
    assert list(lines[0]) == ["customer_id", "user_id", "external_user_id", "sales_id"]
    assert lines[7]["external_user_id"] == ds.customer(7).external_user_id
    assert lines[7]["sales_id"] == ds.customer(7).sales_id
