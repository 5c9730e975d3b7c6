"""Which requests the simulator spoils, and how: a small policy with its own seeded RNG."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from random import Random

FAULT_KINDS = ("http500", "html502", "truncated", "code1000", "burst429", "stall", "reset")


class FaultPolicy:
    """Draws at most one fault per request from per-kind probabilities.

    ``cap`` bounds consecutive faults on one page (customer, lastId): after that many in a row
    the page is served, so a client that retries patiently always gets through. A burst of 429s
    spills over onto the next ``burst_length`` requests, whatever they ask for; those 429s are
    faults of the page they hit like any other, so the cap holds for them too.
    """

    def __init__(
        self,
        probabilities: Mapping[str, float],
        seed: int = 0,
        cap: int | None = 3,
        burst_length: int = 3,
    ) -> None:
        unknown = set(probabilities) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds: {sorted(unknown)}")
        self._rng = Random(seed)
        self._cap = cap
        self.burst_length = burst_length
        self._burst_left = 0
        self._streaks: dict[Hashable, int] = {}
        self.set_probabilities(probabilities)

    def set_probabilities(self, probabilities: Mapping[str, float]) -> None:
        self._table = [(k, float(probabilities.get(k, 0.0))) for k in FAULT_KINDS]
        self._table = [(k, p) for k, p in self._table if p > 0]

    def reseed(self, seed: int) -> None:
        self._rng = Random(seed)

    def set_cap(self, cap: int | None) -> None:
        self._cap = cap

    def retry_after(self) -> int:
        """Retry-After seconds for a burst 429: 0 or 1, as gateways send both."""
        return self._rng.randint(0, 1)

    def choose(self, page: Hashable) -> str | None:
        """The fault for a request for ``page``, or None to serve it normally."""
        streak = self._streaks.get(page, 0)
        if self._cap is not None and streak >= self._cap:
            self._streaks.pop(page, None)
            return None
        if self._burst_left > 0:
            self._burst_left -= 1
            self._streaks[page] = streak + 1
            return "burst429"
        if not self._table:
            self._streaks.pop(page, None)
            return None
        roll = self._rng.random()
        for kind, probability in self._table:
            if roll < probability:
                self._streaks[page] = streak + 1
                if kind == "burst429":
                    self._burst_left = self.burst_length
                return kind
            roll -= probability
        self._streaks.pop(page, None)
        return None
