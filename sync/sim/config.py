"""Settings of the simulated server; all of them can be changed while it runs."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from sync.sim.faults import FAULT_KINDS


@dataclass
class SimConfig:
    app_id: str = "demo-app"
    app_key: str = "demo-key"
    timestamp_window_s: float = 300
    page_size_cap: int = 100  # the server returns at most this many; data.pageSize echoes it
    # Returns at most this many records while data.pageSize still echoes the size asked for
    # (a silent cap: the client's walk ends after the first page); None serves whole pages.
    silent_page_size_cap: int | None = None
    default_page_size: int = 30  # when the request has no pageSize (the doc's example uses 30)
    latency_ms: float = 0
    rate_limit: float | None = None  # requests per second; None = unlimited
    rate_burst: float | None = None  # token bucket capacity; None = max(2, rate_limit / 5)
    # Judge a request by when it may have arrived, not only when the loop read it: the bucket
    # gets the simulator's own lateness as slack (sync/sim/lateness.py).
    stall_credit: bool = True
    clock_offset_s: float = 0  # how far the server's clock is off (its Date header shows it)
    fault_http500: float = 0
    fault_html502: float = 0
    fault_truncated: float = 0
    fault_code1000: float = 0
    fault_burst429: float = 0
    fault_stall: float = 0
    fault_reset: float = 0
    fault_seed: int = 0
    stall_s: float = 30
    burst429_length: int = 3  # how many requests after the first one a 429 burst also hits
    max_faults_per_customer_page: int | None = 3  # then that (customer, lastId) is served
    # Encode each page once and serve the cached bytes after (benchmarks: the simulator must
    # not be the ceiling). Off by default so tests exercise the encoding path every time.
    prebuilt_pages: bool = False
    # The customer search: the most results one query may page through (pageNo × pageSize;
    # past it the answer is a non-zero code), its page size cap, and what happens upstream
    # before each search request is served (customers created, customers removed).
    search_max_results: int = 10_000
    search_page_size_cap: int = 100
    search_create_per_request: int = 0
    search_delete_per_request: int = 0
    search_null_external_rate: float = 0.0  # items whose externalUserId is null
    search_string_id_rate: float = 0.0  # items whose customerId is a digit string
    # Served files (a data set with FileShapes): whether the "missing" ones are served (404
    # until then), and the pause before each 64 KiB chunk of a "slow" one.
    serve_missing_files: bool = False
    slow_file_chunk_s: float = 0.05
    # Message pushes to the address registered with /api/v2/push-register: which changes send
    # one ("record": a file added, "customer": a customer added; comma-separated, empty: none),
    # the corp id of the cipher (empty: the app id's part before "_"), and the share of pushes
    # sent with a bad sign, sent twice (same msgId), or followed by a byte-for-byte replay.
    push_events: str = "record,customer"
    push_corp_id: str = ""
    push_bad_sign_rate: float = 0.0
    push_duplicate_rate: float = 0.0
    push_replay_rate: float = 0.0

    def fault_probabilities(self) -> dict[str, float]:
        return {kind: getattr(self, f"fault_{kind}") for kind in FAULT_KINDS}

    def effective_burst(self) -> float:
        if self.rate_burst is not None:
            return self.rate_burst
        return max(2.0, (self.rate_limit or 0) / 5)

    def with_changes(self, changes: dict[str, Any]) -> SimConfig:
        """A copy with ``changes`` applied; ValueError on unknown fields or wrong types."""
        fields = {f.name: f for f in dataclasses.fields(self)}
        unknown = set(changes) - set(fields)
        if unknown:
            raise ValueError(f"unknown config fields: {sorted(unknown)}")
        for name, value in changes.items():
            _check_type(name, value)
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def public_dict(self) -> dict[str, Any]:
        """``as_dict`` without the app key, for the /_sim/config answers (they end up in logs
        and terminals as readily as the start-up lines do)."""
        return {k: v for k, v in self.as_dict().items() if k != "app_key"}


_STRINGS = frozenset({"app_id", "app_key", "push_events", "push_corp_id"})
_INTEGERS = frozenset(
    {
        "page_size_cap",
        "silent_page_size_cap",
        "default_page_size",
        "fault_seed",
        "burst429_length",
        "max_faults_per_customer_page",
        "search_max_results",
        "search_page_size_cap",
        "search_create_per_request",
        "search_delete_per_request",
    }
)
_BOOLEANS = frozenset({"prebuilt_pages", "serve_missing_files", "stall_credit"})
_NULLABLE = frozenset(
    {"rate_limit", "rate_burst", "max_faults_per_customer_page", "silent_page_size_cap"}
)


def _check_type(name: str, value: object) -> None:
    # Changes arrive as JSON from the admin endpoint, so check them rather than trust them.
    if value is None:
        if name not in _NULLABLE:
            raise ValueError(f"{name} cannot be null")
        return
    if name in _STRINGS:
        ok = isinstance(value, str)
    elif name in _BOOLEANS:
        ok = isinstance(value, bool)
    elif name in _INTEGERS:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok:
        raise ValueError(f"{name}: {value!r} has the wrong type")
