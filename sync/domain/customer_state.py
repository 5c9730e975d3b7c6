"""One customer's cursor as operators see and edit it: the JSON ``customer show --format json``
prints, what ``customer reset --from-json`` takes back, and the cursor a reset leaves. I/O-free.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sync.domain.pager import CustomerCursor

# What a state document says it is; a document of another kind (or a later version) is refused.
DOCUMENT_KIND = "tanma-sync customer state"
DOCUMENT_VERSION = 1

_ID_FIELDS = ("high_water_id", "pass_cursor_id", "pass_top_id", "pass_floor_id")


class StateDocumentError(ValueError):
    """A state document that cannot be taken back; the message names the field at fault."""


@dataclass(frozen=True, slots=True)
class RestoredState:
    """What a state document asks a reset to put back."""

    cursor: CustomerCursor
    paused: bool


def cursor_document(cursor: CustomerCursor) -> dict[str, Any]:
    """The cursor as JSON values (instants as ISO 8601 in UTC)."""
    started = cursor.pass_started_at
    return {
        **{name: getattr(cursor, name) for name in _ID_FIELDS},
        "pass_started_at": None if started is None else started.astimezone(UTC).isoformat(),
        "pass_full": cursor.pass_full,
    }


def read_state_document(
    document: object, customer_id: int | None, external_user_id: str | None
) -> RestoredState:
    """The cursor and pause a state document holds, checked to be about this customer."""
    if not isinstance(document, dict):
        raise StateDocumentError("the state document is not a JSON object")
    if document.get("kind") != DOCUMENT_KIND or document.get("version") != DOCUMENT_VERSION:
        raise StateDocumentError(
            f"not a customer state document (kind {DOCUMENT_KIND!r}, version "
            f"{DOCUMENT_VERSION}, as `customer show --format json` prints)"
        )
    identity = document.get("customer")
    if not isinstance(identity, dict):
        raise StateDocumentError("field customer is missing or not an object")
    said = (identity.get("customer_id"), identity.get("external_user_id"))
    if said != (customer_id, external_user_id):
        raise StateDocumentError(
            f"the document is about customer {said[0] or said[1]}, not this one"
        )
    cursor = document.get("cursor")
    if not isinstance(cursor, dict):
        raise StateDocumentError("field cursor is missing or not an object")
    ids: dict[str, int | None] = {}
    for name in _ID_FIELDS:
        value = cursor.get(name)
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or value < 0
        ):
            raise StateDocumentError(f"field cursor.{name} is not a record id or null")
        ids[name] = value
    started = _instant(cursor.get("pass_started_at"), "cursor.pass_started_at")
    full = cursor.get("pass_full", False)
    if not isinstance(full, bool):
        raise StateDocumentError("field cursor.pass_full is not true or false")
    control = document.get("control", {})
    paused = control.get("paused", False) if isinstance(control, dict) else None
    if not isinstance(paused, bool):
        raise StateDocumentError("field control.paused is not true or false")
    restored = CustomerCursor(**ids, pass_started_at=started, pass_full=full)
    if restored.pass_cursor_id is not None and not restored.in_pass:
        raise StateDocumentError("field cursor.pass_cursor_id is set without pass_started_at")
    return RestoredState(restored, paused)


def _instant(value: object, name: str) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is not None:
            return parsed.astimezone(UTC)
    raise StateDocumentError(f"field {name} is not an ISO 8601 instant with a zone, or null")


def reset_cursor(current: CustomerCursor, to_last_id: int | None) -> CustomerCursor:
    """The cursor ``customer reset`` leaves: none at all (the next pass reads the whole list),
    or a high-water mark at ``to_last_id`` (the next pass re-reads everything above it). A
    pass under way is dropped either way. A mark above the current one would claim records
    as mirrored that never were, so it is refused."""
    if to_last_id is None:
        return CustomerCursor()
    if to_last_id < 0:
        raise StateDocumentError("--to must be a record id (0 or more)")
    mark = current.high_water_id
    if mark is None or to_last_id > mark:
        raise StateDocumentError(
            f"--to {to_last_id} is above the customer's high-water mark ({mark}): records "
            "there were never mirrored, so they cannot be re-read from there"
        )
    return CustomerCursor(high_water_id=to_last_id)
