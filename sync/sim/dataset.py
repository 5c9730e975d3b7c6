"""A deterministic, lazily generated set of customers and their file records.

Everything is a pure function of the seed, the customer index and the history of ``advance``
calls, so a dataset of 100,000 customers costs nothing until a customer is asked for, and two
datasets with the same seed and history agree record for record.

How records are placed so nothing needs a global index: a customer with index ``i`` owns the
ids whose sequence number is ``i % 2048`` and whose millisecond is ``i // 2048`` modulo
``ceil(customers / 2048)``. Ids therefore never collide between customers, and an id names its
customer (``delete_record`` needs no lookup table). Customer ids are spread on a time grid, one
slot per index, and external ids carry a scrambled index, so both map back to the customer in O(1).
"""

from __future__ import annotations

import bisect
import csv
import io
import json
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from random import Random
from typing import Any

from sync.domain.chinatime import CHINA_TZ, format_china_time
from sync.domain.ids import (
    ID_SEQ_RANGE,
    ID_UNITS_PER_SECOND,
    id_from_ms,
    id_time,
    ms_since_epoch,
)
from sync.sim import content
from sync.sim.content import Staff
from sync.sim.files import FileShapes

DEFAULT_START = datetime(2024, 1, 1, tzinfo=CHINA_TZ)
MAX_USABLE_ID = 2**63 - 1

# Poison kinds. The first six leave the record without a usable id (a mirror must reject them);
# the last two keep a usable id and must be stored like any other record.
POISON_KINDS = (
    "id_missing",
    "id_null",
    "id_string",
    "id_float",
    "id_negative",
    "id_huge",
    "content_not_json",
    "extra_field",
)
UNUSABLE_ID_KINDS = frozenset(POISON_KINDS[:6])
# Hostile kinds, placed only by ``add_record(poison=...)`` (never drawn, so seeded data sets stay
# as they were). Each keeps a usable id and must be stored: a NUL or a lone surrogate written as
# a JSON escape inside the fileContent text, and a followContent of 100,000 characters.
HOSTILE_KINDS = ("content_nul", "content_surrogate", "huge_text")

_MS_PER_DAY = 86_400_000
_MS_PER_HOUR = 3_600_000
_NEWEST_CUSTOMER_AGE_MS = 30 * _MS_PER_DAY
_CUSTOMER_SPAN_MS = 970 * _MS_PER_DAY
_STAFF_SPAN_MS = 400 * _MS_PER_DAY
_LATE_MAX_MS = 60_000
_EXTERNAL_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_EXTERNAL_TAIL = 6
_EXTERNAL_SPACE = len(_EXTERNAL_ALPHABET) ** _EXTERNAL_TAIL
_EXTERNAL_MULTIPLIER = 1_000_003  # prime, coprime to 62, so the scramble is a bijection


def is_usable_id(value: object) -> bool:
    """Whether a raw ``id`` can key the mirror: a JSON integer in 1..2**63-1."""
    return type(value) is int and 0 < value <= MAX_USABLE_ID


@dataclass(frozen=True, slots=True)
class SimCustomer:
    index: int
    customer_id: int
    external_user_id: str
    user_id: str
    sales_id: int


@dataclass(frozen=True, slots=True)
class PoisonRecord:
    """A currently visible record with something wrong (or merely unexpected) in it."""

    kind: str
    customer_index: int
    key: int  # the id, or for records without a usable id the hidden sort key
    body: dict[str, Any]  # the record exactly as the API sends it

    @property
    def usable(self) -> bool:
        """True when the record still has a usable id and belongs in the mirror."""
        return self.kind not in UNUSABLE_ID_KINDS


@dataclass(slots=True)
class _Record:
    key: int  # the id, or for records without a usable id the id they would have had
    body: dict[str, Any]
    poison: str | None


@dataclass(frozen=True, slots=True)
class _Advance:
    generation: int
    new_rate: float
    late_rate: float
    delete_rate: float
    update_rate: float
    customers: frozenset[int] | None


class _CustomerState:
    __slots__ = ("_neg_keys", "_visible", "applied", "customer", "hidden", "pages", "records")

    def __init__(self, customer: SimCustomer, records: dict[int, _Record], applied: int) -> None:
        self.customer = customer
        self.records = records
        self.hidden: set[int] = set()
        self.applied = applied
        self._visible: list[_Record] | None = None
        self._neg_keys: list[int] = []
        # Encoded pages by (lastId, pageSize); see SimDataset.encoded_page.
        self.pages: dict[tuple[int | float | None, int], tuple[bytes, int]] = {}

    def visible(self) -> tuple[list[_Record], list[int]]:
        """Visible records newest first, and their negated keys (ascending, for bisect)."""
        if self._visible is None:
            shown = [r for k, r in self.records.items() if k not in self.hidden]
            shown.sort(key=lambda r: r.key, reverse=True)
            self._visible = shown
            self._neg_keys = [-r.key for r in shown]
        return self._visible, self._neg_keys

    def changed(self) -> None:
        self._visible = None
        self.pages.clear()

    def top_visible(self) -> int | None:
        shown, _ = self.visible()
        return shown[0].key if shown else None


class SimDataset:
    """Customers and their file records, as the simulated API serves them."""

    def __init__(
        self,
        seed: int = 1,
        customers: int = 50,
        mean_files: float = 20.0,
        poison_rate: float = 0.0,
        start: datetime = DEFAULT_START,
        files: FileShapes | None = None,
    ) -> None:
        if customers < 0:
            raise ValueError("customers must be >= 0")
        if not 0.0 <= poison_rate <= 1.0:
            raise ValueError("poison_rate must be within 0..1")
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        self.seed = seed
        self.customer_count = customers
        self.mean_files = mean_files
        self.poison_rate = poison_rate
        self.start = start
        self.files = files  # None: URLs point at a host that does not exist
        self.generation = 0

        self._start_ms = ms_since_epoch(start)
        newest = self._start_ms - _NEWEST_CUSTOMER_AGE_MS
        self._customer_base_ms = max(_MS_PER_DAY, newest - _CUSTOMER_SPAN_MS)
        if newest <= self._customer_base_ms:
            raise ValueError("start is too close to the id epoch (2015-01-01)")
        self._customer_step_ms = max(1, (newest - self._customer_base_ms) // max(1, customers))
        self._residues = max(1, math.ceil(customers / ID_SEQ_RANGE))

        setup = Random(f"{seed}:setup")
        self.corpid = "ww" + "".join(setup.choices("0123456789abcdef", k=16))
        self._external_offset = setup.randrange(_EXTERNAL_SPACE)
        self._sales, self._admin = self._make_staff(setup)
        self._staff_by_id = {s.staff_id: s for s in (*self._sales, self._admin)}

        self._headers: dict[int, SimCustomer] = {}
        self._counts: dict[int, int] = {}
        self._states: dict[int, _CustomerState] = {}
        self._history: list[_Advance] = []
        self._owner: dict[int, int] = {}  # ids placed by add_record, which may not follow the grid
        self._added_ids: dict[int, int] = {}  # customer ids of add_customers, off the grid
        self._newest_added_ms = 0

    # ----- customers -------------------------------------------------------------------------

    def customer(self, index: int) -> SimCustomer:
        """The customer with this index (0-based)."""
        cached = self._headers.get(index)
        if cached is not None:
            return cached
        if not 0 <= index < self.customer_count:
            raise IndexError(f"customer index {index} out of range")
        rng = Random(f"{self.seed}:{index}:customer")
        ms = self._customer_base_ms + index * self._customer_step_ms
        ms += rng.randrange(self._customer_step_ms)
        owner = self._sales[rng.randrange(len(self._sales))]
        customer = SimCustomer(
            index=index,
            customer_id=id_from_ms(ms, rng.randrange(ID_SEQ_RANGE)),
            external_user_id="wm" + content.token(rng, 24) + self._index_tail(index),
            user_id=owner.user_id,
            sales_id=owner.staff_id,
        )
        self._headers[index] = customer
        self._counts[index] = self._draw_count(rng)
        return customer

    def add_customers(self, count: int) -> list[SimCustomer]:
        """``count`` new customers, created at the data set's clock (``now``), one millisecond
        apart, without files yet (``add_record`` and ``advance`` give them some). The id grid
        leaves room for ``ceil(customers / 2048) * 2048`` customers in all, the data set's
        initial size rounded up; ValueError past that."""
        room = self._residues * ID_SEQ_RANGE - self.customer_count
        if count > room:
            raise ValueError(f"room for {room} more customers in this data set, not {count}")
        added = []
        base_ms = max(ms_since_epoch(self.now), self._newest_added_ms + 1)
        for offset in range(count):
            index = self.customer_count
            rng = Random(f"{self.seed}:{index}:customer")
            owner = self._sales[rng.randrange(len(self._sales))]
            customer = SimCustomer(
                index=index,
                customer_id=id_from_ms(base_ms + offset, rng.randrange(ID_SEQ_RANGE)),
                external_user_id="wm" + content.token(rng, 24) + self._index_tail(index),
                user_id=owner.user_id,
                sales_id=owner.staff_id,
            )
            self._headers[index] = customer
            self._counts[index] = 0
            self._added_ids[customer.customer_id] = index
            self.customer_count += 1
            added.append(customer)
        self._newest_added_ms = base_ms + count - 1
        return added

    def iter_customers(self) -> Iterator[SimCustomer]:
        return (self.customer(i) for i in range(self.customer_count))

    def base_file_count(self, index: int) -> int:
        """How many records the customer starts with (before any generation); cheap."""
        self.customer(index)
        return self._counts[index]

    def staff_name(self, staff_id: int) -> str:
        return self._staff_by_id[staff_id].name

    def customer_by_id(self, customer_id: object) -> SimCustomer | None:
        if type(customer_id) is not int or customer_id <= 0:
            return None
        if customer_id in self._added_ids:
            return self.customer(self._added_ids[customer_id])
        ms = customer_id // ID_SEQ_RANGE
        index = (ms - self._customer_base_ms) // self._customer_step_ms
        if not 0 <= index < self.customer_count:
            return None
        customer = self.customer(index)
        return customer if customer.customer_id == customer_id else None

    def customer_by_external(self, external_user_id: object) -> SimCustomer | None:
        if not isinstance(external_user_id, str) or len(external_user_id) != 32:
            return None
        value = 0
        for char in external_user_id[-_EXTERNAL_TAIL:]:
            digit = _EXTERNAL_ALPHABET.find(char)
            if digit < 0:
                return None
            value = value * len(_EXTERNAL_ALPHABET) + digit
        inverse = pow(_EXTERNAL_MULTIPLIER, -1, _EXTERNAL_SPACE)
        index = ((value - self._external_offset) * inverse) % _EXTERNAL_SPACE
        if index >= self.customer_count:
            return None
        customer = self.customer(index)
        return customer if customer.external_user_id == external_user_id else None

    def customers_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["customer_id", "user_id", "external_user_id", "sales_id"])
        for c in self.iter_customers():
            writer.writerow([c.customer_id, c.user_id, c.external_user_id, c.sales_id])
        return out.getvalue()

    def customers_jsonl(self) -> str:
        lines = (
            json.dumps(
                {
                    "customer_id": c.customer_id,
                    "user_id": c.user_id,
                    "external_user_id": c.external_user_id,
                    "sales_id": c.sales_id,
                },
                ensure_ascii=False,
            )
            + "\n"
            for c in self.iter_customers()
        )
        return "".join(lines)

    # ----- records ---------------------------------------------------------------------------

    @property
    def now(self) -> datetime:
        """The dataset's clock: ``start`` plus one hour per generation."""
        return self.start + timedelta(hours=self.generation)

    def visible_records(self, customer_index: int) -> list[dict[str, Any]]:
        """Copies of the customer's visible records, newest first (by sort key, descending)."""
        shown, _ = self._state(customer_index).visible()
        return [dict(r.body) for r in shown]

    def page(
        self, customer_index: int, last_id: int | float | None, size: int
    ) -> tuple[int, list[dict[str, Any]]]:
        """``(total visible, records with sort key < last_id, at most size)``: the server's view.

        The dicts are the dataset's own; callers must not change them.
        """
        shown, neg_keys = self._state(customer_index).visible()
        begin = 0 if last_id is None else bisect.bisect_right(neg_keys, -last_id)
        return len(shown), [r.body for r in shown[begin : begin + size]]

    def encoded_page(
        self,
        customer_index: int,
        last_id: int | float | None,
        size: int,
        encode: Callable[[int, list[dict[str, Any]]], bytes],
    ) -> tuple[bytes, int]:
        """``encode(*page(...))`` and the page's record count, encoded once per (lastId, size)
        until the customer's records change. A cached page costs a dict look-up to serve, so a
        benchmark measures its client rather than this simulator's JSON encoder."""
        state = self._state(customer_index)
        key = (last_id, size)
        cached = state.pages.get(key)
        if cached is None:
            total, records = self.page(customer_index, last_id, size)
            cached = state.pages[key] = (encode(total, records), len(records))
        return cached

    def expected_mirror(self) -> dict[int, dict[str, Any]]:
        """Every visible record with a usable id, keyed by id: what a complete mirror holds."""
        mirror: dict[int, dict[str, Any]] = {}
        for state in self._all_states():
            for record in state.visible()[0]:
                if is_usable_id(record.body.get("id")):
                    mirror[record.key] = dict(record.body)
        return mirror

    def poison_records(self) -> list[PoisonRecord]:
        """Visible poison records, including the harmless kinds (see ``PoisonRecord.usable``)."""
        found: list[PoisonRecord] = []
        for state in self._all_states():
            for record in state.visible()[0]:
                if record.poison is not None:
                    found.append(
                        PoisonRecord(
                            record.poison, state.customer.index, record.key, dict(record.body)
                        )
                    )
        return found

    # ----- change ----------------------------------------------------------------------------

    def advance(
        self,
        new_rate: float = 0.3,
        late_rate: float = 0.1,
        delete_rate: float = 0.02,
        update_rate: float = 0.02,
        customers: Iterable[int] | None = None,
    ) -> int:
        """Move the clock one hour and let customers change; returns the new generation.

        Per customer (each with its own probability): one late record 1–60 s below the visible
        max id, 1–3 new records above every id, one record hidden, one record's fileName and
        followContent changed. The work is recorded here and applied to each customer when it
        is next looked at, so this is O(1) even for huge datasets.
        """
        self.generation += 1
        chosen = None if customers is None else frozenset(customers)
        self._history.append(
            _Advance(self.generation, new_rate, late_rate, delete_rate, update_rate, chosen)
        )
        return self.generation

    def add_record(
        self,
        customer_index: int,
        id: int | None = None,  # named like the API field, shadowing the builtin on purpose
        below_max_by_seconds: float | None = None,
        *,
        poison: str | None = None,
    ) -> dict[str, Any]:
        """Add one record (above every id by default) and return a copy of it.

        ``id`` places it exactly; ``below_max_by_seconds`` places it that far below the visible
        max id (a late arrival); ``poison`` turns it into that poison kind.
        """
        if id is not None and below_max_by_seconds is not None:
            raise ValueError("give id or below_max_by_seconds, not both")
        if poison is not None and poison not in POISON_KINDS + HOSTILE_KINDS:
            raise ValueError(f"unknown poison kind {poison!r}")
        state = self._state(customer_index)
        if id is not None:
            if not is_usable_id(id):
                raise ValueError(f"id {id!r} is not a usable id")
            key = id
        elif below_max_by_seconds is not None:
            top = state.top_visible()
            if top is None:
                raise ValueError("the customer has no visible record to be below")
            key = top - round(below_max_by_seconds * ID_UNITS_PER_SECOND)
            if key <= 0:
                raise ValueError("that is below the id epoch")
        else:
            key = self._fresh_id(state, ms_since_epoch(self.now))
        if key in state.records:
            raise ValueError(f"customer {customer_index} already has a record {key}")
        rng = Random(f"{self.seed}:added:{customer_index}:{key}")
        record = self._build(rng, key, state.customer, poison)
        state.records[key] = record
        self._owner[key] = customer_index
        state.changed()
        return dict(record.body)

    def delete_record(self, record_id: int) -> None:
        """Hide a record, as if deleted upstream. KeyError when no customer has it."""
        state = self._owning_state(record_id)
        state.hidden.add(record_id)
        state.changed()

    def restore_record(self, record_id: int) -> None:
        state = self._owning_state(record_id)
        state.hidden.discard(record_id)
        state.changed()

    # ----- internals -------------------------------------------------------------------------

    def _make_staff(self, rng: Random) -> tuple[list[Staff], Staff]:
        count = max(8, min(500, self.customer_count // 25))
        low = max(0, self._customer_base_ms - _STAFF_SPAN_MS)
        step = max(1, (self._customer_base_ms - low) // (count + 1))
        admin = Staff(id_from_ms(low, rng.randrange(ID_SEQ_RANGE)), "admin", "admin")
        sales = []
        for number in range(1, count + 1):
            ms = low + number * step + rng.randrange(step)
            name, user_id = content.staff_name(rng, number)
            sales.append(Staff(id_from_ms(ms, rng.randrange(ID_SEQ_RANGE)), user_id, name))
        return sales, admin

    def _index_tail(self, index: int) -> str:
        value = (index * _EXTERNAL_MULTIPLIER + self._external_offset) % _EXTERNAL_SPACE
        chars = []
        for _ in range(_EXTERNAL_TAIL):
            value, digit = divmod(value, len(_EXTERNAL_ALPHABET))
            chars.append(_EXTERNAL_ALPHABET[digit])
        return "".join(reversed(chars))

    def _draw_count(self, rng: Random) -> int:
        # A mixture tuned to a mean of 20: 5% empty, most with a handful, 3% with hundreds
        # (so paging gets exercised). Other means scale the non-empty counts.
        if self.mean_files <= 0:
            return 0
        u = rng.random()
        if u < 0.05:
            return 0
        if u < 0.67:
            drawn = rng.randint(1, 5)
        elif u < 0.97:
            drawn = rng.randint(6, 30)
        else:
            drawn = rng.randint(170, 680)
        return max(1, round(drawn * self.mean_files / 20.0))

    def _state(self, index: int) -> _CustomerState:
        state = self._states.get(index)
        if state is None:
            state = self._materialize(index)
            self._states[index] = state
        if state.applied < len(self._history):
            for step in self._history[state.applied :]:
                if step.customers is None or index in step.customers:
                    self._apply(state, step)
            state.applied = len(self._history)
        return state

    def _all_states(self) -> Iterator[_CustomerState]:
        return (self._state(i) for i in range(self.customer_count))

    def _materialize(self, index: int) -> _CustomerState:
        customer = self.customer(index)
        count = self._counts[index]
        residue, seq = divmod(index, ID_SEQ_RANGE)
        low_ms = customer.customer_id // ID_SEQ_RANGE + 1000
        # Slots k give ms = residue + k * residues: the customer's share of the time line.
        k_low = -(-(low_ms - residue) // self._residues)
        k_high = (self._start_ms - 1 - residue) // self._residues + 1
        rng = Random(f"{self.seed}:{index}")
        slots = rng.sample(range(k_low, k_high), min(count, max(0, k_high - k_low)))
        slots.sort()
        records: dict[int, _Record] = {}
        poison_rng = Random(f"{self.seed}:{index}:poison")
        for k in slots:
            key = id_from_ms(residue + k * self._residues, seq)
            records[key] = self._build(rng, key, customer, self._draw_poison(poison_rng))
        return _CustomerState(customer, records, applied=0)

    def _draw_poison(self, rng: Random) -> str | None:
        # A separate stream, so a dataset with poison differs from one without only in poison.
        if self.poison_rate <= 0 or rng.random() >= self.poison_rate:
            return None
        return rng.choice(POISON_KINDS)

    def _build(self, rng: Random, key: int, customer: SimCustomer, poison: str | None) -> _Record:
        instant = id_time(key)
        shapes = self.files
        place = (
            None
            if shapes is None
            else lambda path, drawn: (
                shapes.url(key, shapes.size(key, drawn), path),
                shapes.size(key, drawn),
            )
        )
        file_name, file_content = content.file_fields(rng, instant.strftime("%Y-%m"), place)
        roll = rng.random()
        if roll < 0.05:
            operator = self._admin
        elif roll < 0.8:
            operator = self._staff_by_id[customer.sales_id]
        else:
            operator = rng.choice(self._sales)
        body: dict[str, Any] = {
            "id": key,
            "corpid": self.corpid,
            "salesId": customer.sales_id,
            "customerId": customer.customer_id,
            "createTime": format_china_time(instant),
            "fileContent": file_content,
            "fileName": file_name,
            "operatorId": operator.staff_id,
            "authorName": operator.name,
            "followContent": content.follow_note(rng),
        }
        if poison is not None:
            _spoil(body, poison, key)
        return _Record(key, body, poison)

    def _apply(self, state: _CustomerState, step: _Advance) -> None:
        index = state.customer.index
        rng = Random(f"{self.seed}:g{step.generation}:{index}")
        poison_rng = Random(f"{self.seed}:g{step.generation}:{index}:poison")
        # Draw every decision up front so one event's randomness never shifts another's.
        late, new, delete, update = (rng.random() for _ in range(4))
        # Late first: it lands below the max the customer had before this hour's new records.
        top = state.top_visible()
        if late < step.late_rate and top is not None:
            key = self._late_id(state, rng, top)
            if key is not None:
                state.records[key] = self._build(
                    rng, key, state.customer, self._draw_poison(poison_rng)
                )
        if new < step.new_rate:
            now_ms = self._start_ms + step.generation * _MS_PER_HOUR
            for _ in range(rng.randint(1, 3)):
                key = self._fresh_id(state, now_ms - rng.randrange(_MS_PER_HOUR))
                state.records[key] = self._build(
                    rng, key, state.customer, self._draw_poison(poison_rng)
                )
        state.changed()
        if delete < step.delete_rate:
            victim = self._pick_usable(state, rng)
            if victim is not None:
                state.hidden.add(victim.key)
                state.changed()
        if update < step.update_rate:
            target = self._pick_usable(state, rng)
            if target is not None:
                old_name = target.body.get("fileName")
                # A new dict, so copies handed out earlier keep showing the old version.
                target.body = {
                    **target.body,
                    "fileName": content.revised_name(str(old_name), step.generation),
                    "followContent": f"第{step.generation}次修改：客户更新了文件说明",
                }

    def _pick_usable(self, state: _CustomerState, rng: Random) -> _Record | None:
        candidates = [r for r in state.visible()[0] if is_usable_id(r.body.get("id"))]
        return rng.choice(candidates) if candidates else None

    def _fresh_id(self, state: _CustomerState, at_ms: int) -> int:
        """A grid id at or after ``at_ms``, above every id the customer has (hidden ones too)."""
        residue, seq = divmod(state.customer.index, ID_SEQ_RANGE)
        top = max(state.records, default=0)
        ms = max(at_ms, top // ID_SEQ_RANGE + 1)
        ms += (residue - ms) % self._residues
        return id_from_ms(ms, seq)

    def _late_id(self, state: _CustomerState, rng: Random, top: int) -> int | None:
        """A free grid id 1–60 s (in id units) below ``top``; None when none turned up."""
        residue, seq = divmod(state.customer.index, ID_SEQ_RANGE)
        # Aligning down to the customer's grid may move it ``residues`` ms lower; leave room.
        widest = _LATE_MAX_MS - self._residues
        for _ in range(8):
            ms = top // ID_SEQ_RANGE - rng.randint(1000, widest)
            ms -= (ms - residue) % self._residues
            key = id_from_ms(ms, seq)
            if key not in state.records:
                return key
        return None

    def _owning_state(self, record_id: int) -> _CustomerState:
        index = self._owner.get(record_id)
        if index is None and is_usable_id(record_id):
            ms, seq = divmod(record_id, ID_SEQ_RANGE)
            index = (ms % self._residues) * ID_SEQ_RANGE + seq
        if index is not None and 0 <= index < self.customer_count:
            state = self._state(index)
            if record_id in state.records:
                return state
        raise KeyError(f"no record {record_id!r}")


def _spoil(body: dict[str, Any], kind: str, key: int) -> None:
    """Turn a good record into poison of ``kind``, keeping the field order the API uses."""
    if kind == "id_missing":
        del body["id"]
    elif kind == "id_null":
        body["id"] = None
    elif kind == "id_string":
        body["id"] = "abc"
    elif kind == "id_float":
        body["id"] = 1.5
    elif kind == "id_negative":
        body["id"] = -key
    elif kind == "id_huge":
        body["id"] = 2**63 + key
    elif kind == "content_not_json":
        body["fileContent"] = "not json {"
    elif kind == "extra_field":
        body["extraField"] = {"nested": [1, 2]}
    elif kind == "content_nul":
        body["fileContent"] = json.dumps({"name": "合同\u0000.pdf", "size": "1KB"})
    elif kind == "content_surrogate":
        body["fileContent"] = json.dumps({"url": "https://x/\ud800", "type": "\udfff"})
    elif kind == "huge_text":
        body["followContent"] = "长" * 100_000
    else:
        raise ValueError(f"unknown poison kind {kind!r}")
