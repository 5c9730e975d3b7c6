"""Where a pass's customers come from and what each one's pass came to.

A pass's workers ask a feed for their next customer and tell it how each one ended: a fixed
list for the CLI (``ListFeed``), leases for the daemon (``sync/daemon/lease_feed.py``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from sync.domain.customers import CustomerKey
from sync.domain.pager import PassMode
from sync.domain.tally import PageCounts
from sync.mirror.leases import LeaseFence


@dataclass(frozen=True, slots=True)
class Assignment:
    """One customer to sync, and how."""

    customer: CustomerKey
    mode: PassMode


@dataclass(slots=True)
class CustomerOutcome:
    """What one customer's pass came to. ``stopped`` means it was handed back unfinished (a
    shutdown, a lost lease): not a failure, its cursor is consistent and the next pass resumes."""

    error: str | None = None
    stopped: str | None = None
    counts: PageCounts = field(default_factory=PageCounts)
    # This was its first completed pass, and its list was empty (an unknown id answers so).
    empty_first: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and self.stopped is None


class CustomerFeed(Protocol):
    """Where a pass's workers get customers from: a fixed list (the CLI) or leases (the daemon)."""

    async def next(self) -> Assignment | None: ...

    async def finished(self, assignment: Assignment, outcome: CustomerOutcome) -> None: ...

    def may_continue(self, customer: CustomerKey) -> str | None:
        """None to go on with this customer's next page, else why not."""
        ...

    def deadline(self, customer: CustomerKey) -> float | None:
        """Loop time by which the customer must be let go (its lease runs out), or None."""
        ...

    def fence(self, customer: CustomerKey) -> LeaseFence | None:
        """A check run inside every page transaction, or None."""
        ...


class ListFeed:
    """The customers of a command-line pass, each once, all in one mode."""

    def __init__(self, customers: Sequence[CustomerKey], mode: PassMode) -> None:
        self._pending = deque(Assignment(c, mode) for c in customers)

    async def next(self) -> Assignment | None:
        return self._pending.popleft() if self._pending else None

    async def finished(self, assignment: Assignment, outcome: CustomerOutcome) -> None:
        pass

    def may_continue(self, customer: CustomerKey) -> str | None:
        return None

    def deadline(self, customer: CustomerKey) -> float | None:
        return None

    def fence(self, customer: CustomerKey) -> LeaseFence | None:
        return None


class ProgressSink(Protocol):
    """Told of a pass's progress as it goes (the CLI's bar or log line)."""

    def customers_total(self, total: int) -> None: ...
    def page_done(self, records: int) -> None: ...
    def customer_done(self, ok: bool) -> None: ...


class NoProgress:
    def customers_total(self, total: int) -> None:
        pass

    def page_done(self, records: int) -> None:
        pass

    def customer_done(self, ok: bool) -> None:
        pass
