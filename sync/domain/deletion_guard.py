"""The mass-delete guard: whether a full reconcile may mark what it did not see as deleted.

A reconcile that walked a list the server cut short (an answer that ends too soon, a page-size
cap the server does not echo, a customer id that answers an empty list) would otherwise mark
most of a customer's files deleted in one transaction. I/O-free.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DeletionGuard:
    """How a reconcile's deletions are judged. ``max_share`` is SYNC_MAX_DELETE_SHARE;
    ``ended_early`` says why the walk is known to have ended before the end of the list, or
    None; ``allow_mass_delete`` is the operator's ``customer reconcile --allow-mass-delete``."""

    max_share: float
    ended_early: str | None = None
    allow_mass_delete: bool = False
    # SYNC_MAX_DELETE_MIN_FILES: fewer vanishing files than this pass the share rule, unless
    # they are all the customer has (an empty list is the failure the guard exists for).
    min_files: int = 1


@dataclass(frozen=True, slots=True)
class DeletionVerdict:
    """Mark the files deleted (``hold_reason`` None), or hold them back for that reason."""

    hold_reason: str | None

    @property
    def apply(self) -> bool:
        return self.hold_reason is None


def judge_deletions(guard: DeletionGuard, live_files: int, vanishing: int) -> DeletionVerdict:
    """The verdict on marking ``vanishing`` of a customer's ``live_files`` deleted."""
    if guard.allow_mass_delete or vanishing == 0:
        return DeletionVerdict(None)
    if guard.ended_early is not None:
        return DeletionVerdict(
            f"a full reconcile would mark {vanishing} of {live_files} files deleted, but its "
            f"walk ended early ({guard.ended_early})"
        )
    if vanishing < guard.min_files and vanishing < live_files:
        return DeletionVerdict(None)
    if live_files > 0 and vanishing / live_files > guard.max_share:
        return DeletionVerdict(
            f"a full reconcile would mark {vanishing} of {live_files} files deleted "
            f"({vanishing / live_files:.0%}, over SYNC_MAX_DELETE_SHARE {guard.max_share:.0%})"
        )
    return DeletionVerdict(None)


def walk_ended_early(total_count: int | None, items_seen: int) -> str | None:
    """Why a walk that reached the end of a list did so too soon, or None: the server's own
    ``totalCount`` on the walk's first page says the list holds more items than the walk saw.
    ``totalCount`` is informational (records may vanish during a walk), so only a shortfall
    beyond the few that may go meanwhile counts."""
    if total_count is None or items_seen >= total_count:
        return None
    if total_count - items_seen <= max(1, total_count // 100):
        return None
    return f"the server counted {total_count} files, the walk saw {items_seen}"
