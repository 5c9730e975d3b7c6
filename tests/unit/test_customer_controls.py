"""The pure parts of acting on one customer: the mass-delete guard, the state document that
`customer show --format json` prints and `customer reset --from-json` takes back, and resets."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sync.domain.customer_state import (
    DOCUMENT_KIND,
    DOCUMENT_VERSION,
    StateDocumentError,
    cursor_document,
    read_state_document,
    reset_cursor,
)
from sync.domain.deletion_guard import DeletionGuard, judge_deletions, walk_ended_early
from sync.domain.pager import CustomerCursor


@pytest.mark.parametrize(
    ("live", "vanishing", "applies"),
    [(10, 0, True), (10, 5, True), (10, 6, False), (1, 1, False), (0, 0, True), (200, 100, True)],
)
def test_the_share_rule(live: int, vanishing: int, applies: bool) -> None:
    verdict = judge_deletions(DeletionGuard(0.5), live, vanishing)
    assert verdict.apply is applies
    if not applies:
        assert verdict.hold_reason is not None
        assert f"{vanishing} of {live} files" in verdict.hold_reason


@pytest.mark.parametrize(
    ("live", "vanishing", "applies"),
    [(2, 1, True), (8, 4, True), (10, 6, False), (3, 3, False), (1, 1, False)],
)
def test_a_few_vanishing_files_pass_unless_they_are_all_there_is(
    live: int, vanishing: int, applies: bool
) -> None:
    assert judge_deletions(DeletionGuard(0.3, min_files=5), live, vanishing).apply is applies


def test_an_early_end_holds_any_deletion_and_the_operator_overrides_all() -> None:
    early = DeletionGuard(1.0, ended_early="the server counted 90 files, the walk saw 5")
    assert not judge_deletions(early, 100, 1).apply
    assert judge_deletions(early, 100, 0).apply
    allowed = DeletionGuard(0.0, ended_early="x", allow_mass_delete=True)
    assert judge_deletions(allowed, 10, 10).apply


@pytest.mark.parametrize(
    ("total", "seen", "early"),
    [(None, 0, False), (100, 100, False), (100, 120, False), (100, 99, False), (100, 5, True)],
)
def test_a_walk_ends_early_when_the_server_counted_more(
    total: int | None, seen: int, early: bool
) -> None:
    assert (walk_ended_early(total, seen) is not None) is early


def document(cursor: CustomerCursor, **customer: object) -> dict[str, object]:
    return {
        "kind": DOCUMENT_KIND,
        "version": DOCUMENT_VERSION,
        "customer": {"customer_id": 7, "external_user_id": None, **customer},
        "control": {"paused": True},
        "cursor": cursor_document(cursor),
    }


def test_a_state_document_round_trips() -> None:
    cursor = CustomerCursor(
        high_water_id=460_000_000_000_000,
        pass_cursor_id=459_000_000_000_000,
        pass_top_id=461_000_000_000_000,
        pass_started_at=datetime(2026, 12, 2, 3, 4, 5, 123456, tzinfo=UTC),
        pass_full=True,
    )
    restored = read_state_document(document(cursor), 7, None)
    assert restored.cursor == cursor and restored.paused is True


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"kind": "other"}, "not a customer state document"),
        ({"customer": {"customer_id": 8, "external_user_id": None}}, "not this one"),
        ({"cursor": {"high_water_id": "12"}}, "cursor.high_water_id"),
        ({"cursor": {"high_water_id": True}}, "cursor.high_water_id"),
        ({"cursor": {"pass_started_at": "2026-12-02 03:04:05"}}, "cursor.pass_started_at"),
        ({"cursor": {"pass_cursor_id": 5}}, "without pass_started_at"),
        ({"cursor": {"pass_full": "yes"}}, "cursor.pass_full"),
        ({"control": {"paused": 1}}, "control.paused"),
        ({"cursor": []}, "field cursor"),
    ],
)
def test_a_wrong_document_names_the_field(change: dict[str, object], message: str) -> None:
    with pytest.raises(StateDocumentError, match=message):
        read_state_document({**document(CustomerCursor()), **change}, 7, None)
    with pytest.raises(StateDocumentError, match="not a JSON object"):
        read_state_document([1], 7, None)


def test_a_reset_drops_the_pass_and_never_raises_the_mark() -> None:
    current = CustomerCursor(
        high_water_id=100, pass_cursor_id=50, pass_started_at=datetime.now(UTC)
    )
    assert reset_cursor(current, None) == CustomerCursor()
    assert reset_cursor(current, 80) == CustomerCursor(high_water_id=80)
    assert reset_cursor(current, 100) == CustomerCursor(high_water_id=100)
    with pytest.raises(StateDocumentError, match="above the customer's high-water mark"):
        reset_cursor(current, 101)
    with pytest.raises(StateDocumentError, match="high-water mark \\(None\\)"):
        reset_cursor(CustomerCursor(), 5)
