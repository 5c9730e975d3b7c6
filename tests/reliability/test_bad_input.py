"""Bad input, generated: every hostile value the API could send ends stored, set aside with a
reason, or as a clear error for that customer; never as an unhandled exception.

The pure properties (parser, response classifier, pager) run without I/O; the storage property
and the poison run go into SQLite and PostgreSQL. Every test counts the inputs it generated.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import re
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from sqlalchemy import select

from sync.api.responses import FilePage, classify_response
from sync.cli.passes import sync_pass
from sync.domain.customers_file import CustomerRow
from sync.domain.discovered import DiscoveredCustomer, RejectedCustomer, parse_customer_item
from sync.domain.errors import SyncError
from sync.domain.jsoncodec import decode_json
from sync.domain.pager import CustomerCursor, PageVerdict, PassMode, begin_pass, step
from sync.domain.records import MAX_BIGINT, FileRecord, RejectedRecord, parse_record, to_json_text
from sync.engine.passes import split_items
from sync.mirror import database as db
from sync.mirror.models import CustomerFile, RejectedRecordRow
from sync.mirror.store import MirrorStore
from sync.sim import HOSTILE_KINDS, POISON_KINDS, UNUSABLE_ID_KINDS, SimDataset
from tests.helpers import DERIVED, assert_mirror_equals, fetch_mirror, make_settings
from tests.reliability.conftest import SEED, Scale
from tests.reliability.figures import Figures
from tests.reliability.hostile import any_records, bodies
from tests.reliability.support import import_customers

_UNSTORABLE_TEXT = re.compile("[\x00\ud800-\udfff]")
_TEXT_COLUMNS = ("corp_id", "file_name", "file_url", "file_type", "file_size_text")
_TEXT_COLUMNS += ("file_store_id", "author_name", "follow_content")
_INT_COLUMNS = ("sales_id", "customer_id", "file_size_bytes", "operator_id")
_NOW = datetime(2025, 1, 1, tzinfo=UTC)


def _hypothesis(examples: int):
    """The run's seed, no example database, no deadline (a loaded CI machine is slow)."""

    def wrap(test):
        return seed(SEED)(
            settings(
                max_examples=examples,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )(test)
        )

    return wrap


def _storable_text(value: str | None) -> bool:
    return value is None or (isinstance(value, str) and not _UNSTORABLE_TEXT.search(value))


def assert_storable(parsed: FileRecord | RejectedRecord) -> None:
    """What the parser hands the store fits both databases' columns."""
    if isinstance(parsed, RejectedRecord):
        assert parsed.reason and _storable_text(parsed.reason)
        assert parsed.record_id is None or (
            _storable_text(parsed.record_id) and len(parsed.record_id) <= 64
        )
        assert isinstance(parsed.payload, str)
        return
    assert 1 <= parsed.id <= MAX_BIGINT
    for column in _TEXT_COLUMNS:
        assert _storable_text(getattr(parsed, column)), column
    for column in _INT_COLUMNS:
        value = getattr(parsed, column)
        assert value is None or -MAX_BIGINT - 1 <= value <= MAX_BIGINT, column
    assert parsed.file_type is None or len(parsed.file_type) <= 32
    assert parsed.create_time is None or parsed.create_time.tzinfo is not None
    json.dumps(parsed.raw, allow_nan=False)  # JSON both databases accept


# ----- pure -----------------------------------------------------------------------------------


def test_the_record_parser_stores_or_rejects_every_input(
    scale: Scale, figures: Figures, case_name: str
) -> None:
    seen: Counter[str] = Counter()

    @_hypothesis(scale.property_examples)
    @given(any_records())
    def check(item: Any) -> None:
        parsed = parse_record(item)
        assert isinstance(parsed, FileRecord | RejectedRecord)
        assert_storable(parsed)
        seen["stored" if isinstance(parsed, FileRecord) else "rejected"] += 1

    check()
    figures.add(case_name, inputs_generated=seen.total())
    figures.add_kinds("parser_outcomes", case_name, dict(seen))
    assert seen["stored"] and seen["rejected"]


def test_the_fast_decoding_path_parses_every_record_as_the_thorough_one_does(
    scale: Scale, figures: Figures, case_name: str
) -> None:
    """orjson plus the NUL-escape search (``decode_json``) lets the parser skip searching each
    string; whatever the input, the records and rejections must be exactly the thorough ones."""
    seen: Counter[str] = Counter()

    @_hypothesis(scale.property_examples)
    @given(any_records(), st.booleans())
    def check(item: Any, ascii_only: bool) -> None:
        try:
            text = json.dumps({"code": 0, "data": {"result": [item]}}, ensure_ascii=ascii_only)
        except (ValueError, RecursionError):
            return  # no JSON text to send (the classifier test covers such bodies)
        body = text.encode("utf-8", "surrogatepass")
        document, checked = decode_json(body)
        reference = json.loads(body)
        assert to_json_text(document) == to_json_text(reference)
        fast = parse_record(document["data"]["result"][0], strings_checked=checked)
        thorough = parse_record(reference["data"]["result"][0])
        assert _comparable(fast) == _comparable(thorough)
        seen["checked" if checked else "thorough"] += 1

    check()
    figures.add(case_name, inputs_generated=seen.total())
    assert seen["checked"] and seen["thorough"], seen


def test_the_fast_decoding_path_parses_every_customer_item_as_the_thorough_one_does(
    scale: Scale, figures: Figures, case_name: str
) -> None:
    """The same proof for discovery's customer items: a search answer decoded by
    ``decode_json`` skips the string search, and the outcome must be the thorough one."""
    seen: Counter[str] = Counter()

    @_hypothesis(scale.property_examples)
    @given(any_records(), st.booleans())
    def check(item: Any, ascii_only: bool) -> None:
        try:
            text = json.dumps({"code": 0, "data": {"data": [item]}}, ensure_ascii=ascii_only)
        except (ValueError, RecursionError):
            return
        body = text.encode("utf-8", "surrogatepass")
        document, checked = decode_json(body)
        reference = json.loads(body)
        fast = parse_customer_item(document["data"]["data"][0], strings_checked=checked)
        thorough = parse_customer_item(reference["data"]["data"][0])
        assert _comparable_customer(fast) == _comparable_customer(thorough)
        seen["checked" if checked else "thorough"] += 1

    check()
    figures.add(case_name, inputs_generated=seen.total())
    assert seen["checked"] and seen["thorough"], seen


def _comparable_customer(parsed: DiscoveredCustomer | RejectedCustomer) -> object:
    if isinstance(parsed, RejectedCustomer):
        return parsed
    return dataclasses.replace(parsed, raw={}), to_json_text(parsed.raw)


def _comparable(parsed: FileRecord | RejectedRecord) -> object:
    # raw compared as text: NaN is not equal to itself, and raw holds it in rejected records.
    if isinstance(parsed, RejectedRecord):
        return parsed
    return parsed._replace(raw={}), to_json_text(parsed.raw)


def test_the_response_classifier_answers_every_body(
    scale: Scale, figures: Figures, case_name: str
) -> None:
    seen: Counter[str] = Counter()
    statuses = st.one_of(
        st.just(200),
        st.sampled_from([201, 204, 301, 400, 401, 403, 404, 405, 408, 429, 500, 502, 503]),
        st.integers(100, 999),
    )

    @_hypothesis(scale.property_examples)
    @given(
        statuses,
        bodies(),
        st.none() | st.floats(0, 300),
        st.none() | st.integers(0, 2**42),
    )
    def check(status: int, body: bytes, retry_after: float | None, server_ms: int | None) -> None:
        try:
            page = classify_response(
                status, body, retry_after=retry_after, server_time_ms=server_ms
            )
        except SyncError as exc:
            assert str(exc)  # says what is wrong
            seen[type(exc).__name__] += 1
            return
        assert isinstance(page, FilePage) and isinstance(page.items, list)
        for parsed in (*split_items(page.items)[0], *split_items(page.items)[1]):
            assert_storable(parsed)
        seen["page"] += 1

    check()
    figures.add(case_name, inputs_generated=seen.total())
    figures.add_kinds("classifier_outcomes", case_name, dict(seen))
    assert seen["page"] and seen["TransientError"]


_page_ids = st.lists(
    st.one_of(st.integers(1, 60), st.integers(1, MAX_BIGINT), st.just(MAX_BIGINT)), max_size=12
)


def test_the_pager_moves_down_or_stops_on_any_server(
    scale: Scale, figures: Figures, case_name: str
) -> None:
    """A server answering any ids for any lastId (duplicates, ids at or above lastId, the top of
    the id range): every step either moves the cursor strictly down or ends the pass, so a walk
    always ends; the high-water mark only rises, and never above the first page's top."""
    seen: Counter[str] = Counter()

    @_hypothesis(scale.property_examples)
    @given(
        st.none() | st.integers(1, MAX_BIGINT),
        st.sampled_from(list(PassMode)),
        st.integers(1, 10),
        st.data(),
    )
    def check(mark: int | None, mode: PassMode, size: int, data: st.DataObject) -> None:
        cursor = begin_pass(CustomerCursor(high_water_id=mark), mode, 1000, _NOW)
        first_top: int | None = None
        for number in range(1, 200):
            ids = data.draw(_page_ids)
            extra = data.draw(st.integers(0, 3))  # items without a usable id
            reported = data.draw(st.none() | st.integers(0, 12))
            result = step(
                cursor, ids, len(ids) + extra, requested_size=size, reported_size=reported
            )
            if number == 1 and ids:
                first_top = max(ids)
            if result.verdict is PageVerdict.CONTINUE:
                asked = cursor.pass_cursor_id
                moved = result.cursor.pass_cursor_id
                assert moved is not None and (asked is None or moved < asked)
                cursor = result.cursor
                continue
            if result.verdict is PageVerdict.COMPLETE:
                new = result.cursor.high_water_id
                assert not result.cursor.in_pass
                assert mark is None or (new is not None and new >= mark)
                assert new in (mark, first_top)
            seen[result.verdict.value] += 1
            return
        raise AssertionError("the walk did not end in 200 pages")

    check()
    figures.add(case_name, inputs_generated=seen.total())
    figures.add_kinds("pager_outcomes", case_name, dict(seen))
    assert seen["complete"]


# ----- into the databases ---------------------------------------------------------------------


def _equivalent(stored: Any, sent: Any) -> bool:
    """JSON equality, except that numbers are compared as doubles: PostgreSQL's jsonb keeps a
    number as a decimal and writes it back without an exponent, so a float like 1.5e300 comes
    back as the integer it stands for. Same value as a double; not the same Python object."""
    if isinstance(sent, bool) or isinstance(stored, bool):
        return stored is sent
    if isinstance(sent, int | float) and isinstance(stored, int | float):
        return stored == sent or float(stored) == float(sent)
    if isinstance(sent, dict) and isinstance(stored, dict):
        return stored.keys() == sent.keys() and all(_equivalent(stored[k], sent[k]) for k in sent)
    if isinstance(sent, list) and isinstance(stored, list):
        return len(stored) == len(sent) and all(map(_equivalent, stored, sent))
    return stored == sent


_pooled_ids = st.one_of(st.integers(1, 40), st.integers(1, MAX_BIGINT))  # repeats on purpose


def test_hostile_pages_are_stored_or_set_aside_in_the_database(
    database_url: str, scale: Scale, figures: Figures, case_name: str
) -> None:
    """Pages of hostile records, with ids repeated within a page and across pages, written by
    the store in one transaction each: the first copy of an id in a page is what the row holds,
    every rejected item is set aside with its reason, and no write fails."""
    seen: Counter[str] = Counter()
    with asyncio.Runner() as runner:
        engine = db.create_engine(database_url)
        runner.run(db.upgrade(engine))
        store = MirrorStore(engine)
        runner.run(store.customers.import_rows([CustomerRow(1, None, None, None)]))
        customer = runner.run(store.customers.keys())[0]

        @_hypothesis(scale.store_examples)
        @given(st.lists(any_records(_pooled_ids), min_size=1, max_size=6))
        def check(items: list[Any]) -> None:
            kept, rejected = split_items(items)
            runner.run(
                store.pages.save(
                    customer, kept, rejected, CustomerCursor(), run_id=None, completed=True
                )
            )
            first: dict[int, FileRecord] = {}
            for record in kept:
                first.setdefault(record.id, record)
            rows, set_aside = runner.run(_read_back(engine, list(first)))
            for record_id, record in first.items():
                row = rows[record_id]
                for column in DERIVED:
                    assert getattr(row, column) == getattr(record, column), column
                if row.raw != record.raw:
                    assert _equivalent(row.raw, record.raw)
                    seen["jsonb_number_rewritten"] += 1
            for item in rejected:
                digest = hashlib.sha256(item.payload.encode("utf-8", "surrogatepass")).hexdigest()
                assert set_aside[digest]
            seen["items"] += len(items)
            seen["stored"] += len(first)
            seen["duplicates_in_page"] += len(kept) - len(first)
            seen["rejected"] += len(rejected)
            seen["pages"] += 1

        try:
            check()
        finally:
            runner.run(engine.dispose())
    figures.add(case_name, inputs_generated=seen["pages"], records_generated=seen["items"])
    figures.add_kinds("store_outcomes", case_name, dict(seen))
    assert seen["stored"] and seen["rejected"]


async def _read_back(engine, ids: list[int]) -> tuple[dict[int, Any], dict[str, str]]:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(CustomerFile).where(CustomerFile.id.in_(ids)))).all()
        set_aside = (
            await conn.execute(select(RejectedRecordRow.payload_sha256, RejectedRecordRow.reason))
        ).all()
    return {r.id: r for r in rows}, {digest: reason for digest, reason in set_aside}


async def test_poison_served_by_the_simulator_through_the_engine(
    store: MirrorStore,
    database_url: str,
    sim_factory,
    scale: Scale,
    rng,
    figures: Figures,
    case_name: str,
) -> None:
    """Every poison kind the simulator has, drawn at random and planted in a few customers on
    purpose, through the real client and engine: no customer fails, the usable records are
    mirrored exactly, the rest set aside once each with a reason; a second pass changes
    nothing."""
    dataset = SimDataset(
        seed=rng.randrange(10**6),
        customers=scale.poison_customers,
        mean_files=15,
        poison_rate=0.06,
    )
    for kind in POISON_KINDS + HOSTILE_KINDS:
        for index in rng.sample(range(dataset.customer_count), 2):
            dataset.add_record(index, poison=kind)
    sim = sim_factory(dataset)
    await import_customers(store, dataset)
    settings = make_settings(sim.base_url, database_url, sync_page_size=10)

    report = await sync_pass(settings, store, PassMode.BACKFILL)
    poison = sim.call(dataset.poison_records)
    unusable = {
        (p.customer_index, json.dumps(p.body, sort_keys=True)) for p in poison if not p.usable
    }
    async with store.engine.connect() as conn:
        set_aside = (await conn.execute(select(RejectedRecordRow))).all()
    figures.add(
        case_name,
        poison_records_served=len(poison),
        poison_set_aside=len(set_aside),
        poison_customers_failed=report.totals.customers_failed,
    )
    figures.add_kinds("poison_by_kind", case_name, dict(Counter(p.kind for p in poison)))

    assert {p.kind for p in poison} == set(POISON_KINDS + HOSTILE_KINDS)
    assert report.totals.customers_failed == 0, report.failures[:3]
    assert report.status == "partial"  # records were set aside, and the run says so
    assert_mirror_equals(await fetch_mirror(store.engine), dataset.expected_mirror())
    assert len(set_aside) == len(unusable)
    assert all(row.reason and row.payload for row in set_aside)
    assert {p.kind for p in poison if not p.usable} == UNUSABLE_ID_KINDS

    again = await sync_pass(settings, store, PassMode.FULL)
    assert again.totals.customers_failed == 0
    assert again.totals.records_inserted == again.totals.records_updated == 0
    async with store.engine.connect() as conn:
        assert len((await conn.execute(select(RejectedRecordRow))).all()) == len(unusable)
    assert_mirror_equals(await fetch_mirror(store.engine), dataset.expected_mirror())


def test_unstorable_escapes_inside_file_content_are_stored_not_fatal() -> None:
    """A NUL or lone surrogate written as a JSON escape inside fileContent would pass a check of
    the record's own text and then fail the page's INSERT (PostgreSQL refuses NUL, SQLite's
    encoder lone surrogates) on every pass, blocking the customer for good. Such content is
    ignored like content that is not JSON, and the record is stored."""
    for content in ('{"name": "a\\u0000b"}', '{"url": "\\ud800", "type": "\\udfff"}'):
        parsed = parse_record({"id": 5, "fileContent": content})
        assert isinstance(parsed, FileRecord)
        assert parsed.file_name is parsed.file_url is parsed.file_type is None
        assert parsed.raw["fileContent"] == content
        assert_storable(parsed)


def test_a_text_id_with_a_nul_or_surrogate_can_be_set_aside() -> None:
    """A text id holding a NUL or a lone surrogate, kept verbatim in record_id, would make the
    rejection itself fail to store on every pass; it is shown with U+FFFD instead."""
    for raw_id in ("12\x00", "\ud800"):
        parsed = parse_record({"id": raw_id})
        assert isinstance(parsed, RejectedRecord)
        assert parsed.record_id is not None and "\ufffd" in parsed.record_id
        assert_storable(parsed)
