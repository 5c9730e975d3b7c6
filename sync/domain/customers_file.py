"""Reading a customers file (CSV with a header, or JSON Lines). Pure: text in, rows and
per-line problems out, so one bad line is reported by number and the others still import."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field

COLUMNS = ("customer_id", "user_id", "external_user_id", "sales_id")
_MAX_ID = 2**63 - 1


@dataclass(frozen=True, slots=True)
class CustomerRow:
    customer_id: int | None
    user_id: str | None
    external_user_id: str | None
    sales_id: int | None
    # Where it came from in a customers file (0: typed on the command line). Provenance, not
    # data: two rows saying the same thing are equal wherever they stand.
    line: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class LineProblem:
    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}" if self.line else self.reason


class CustomersFileError(ValueError):
    """The file as a whole cannot be read (not UTF-8, no header, unknown columns)."""


def parse_customers(data: bytes, name: str = "") -> tuple[list[CustomerRow], list[LineProblem]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise CustomersFileError(f"line {line}: not UTF-8 text (byte {exc.start})") from None
    if not text.strip():
        raise CustomersFileError("the file is empty")
    lowered = name.lower()
    is_jsonl = lowered.endswith((".jsonl", ".ndjson", ".json")) or (
        not lowered.endswith(".csv") and text.lstrip().startswith("{")
    )
    return _parse_jsonl(text) if is_jsonl else _parse_csv(text)


def _parse_csv(text: str) -> tuple[list[CustomerRow], list[LineProblem]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if not header or not any(cell.strip() for cell in header):
        raise CustomersFileError(
            f"line 1: expected a header naming the columns {','.join(COLUMNS)}"
        )
    names = [cell.strip().lower() for cell in header]
    unknown = [n for n in names if n not in COLUMNS]
    if unknown:
        raise CustomersFileError(
            f"line 1: unknown column {unknown[0]!r} (the columns are {','.join(COLUMNS)})"
        )
    if "customer_id" not in names and "external_user_id" not in names:
        raise CustomersFileError("line 1: need a customer_id or an external_user_id column")
    rows: list[CustomerRow] = []
    problems: list[LineProblem] = []
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            problems.append(LineProblem(reader.line_num, f"unreadable CSV ({exc})"))
            continue
        line = reader.line_num
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) != len(names):
            problems.append(LineProblem(line, f"{len(cells)} fields, the header has {len(names)}"))
            continue
        _collect(dict(zip(names, cells, strict=True)), line, rows, problems)
    return rows, problems


def _parse_jsonl(text: str) -> tuple[list[CustomerRow], list[LineProblem]]:
    rows: list[CustomerRow] = []
    problems: list[LineProblem] = []
    # split on newlines only: str.splitlines() would also split inside JSON strings at U+2028.
    for line, raw in enumerate(text.split("\n"), start=1):
        if not raw.strip():
            continue
        try:
            item = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            problems.append(LineProblem(line, f"not JSON ({exc})"))
            continue
        if not isinstance(item, dict):
            problems.append(LineProblem(line, "not a JSON object"))
            continue
        unknown = [k for k in item if k not in COLUMNS]
        if unknown:
            problems.append(LineProblem(line, f"unknown key {unknown[0]!r}"))
            continue
        _collect(item, line, rows, problems)
    return rows, problems


def _collect(
    fields: dict[str, object], line: int, rows: list[CustomerRow], problems: list[LineProblem]
) -> None:
    try:
        row = CustomerRow(
            customer_id=_id(fields.get("customer_id"), "customer_id"),
            user_id=_text(fields.get("user_id"), "user_id"),
            external_user_id=_text(fields.get("external_user_id"), "external_user_id"),
            sales_id=_id(fields.get("sales_id"), "sales_id"),
            line=line,
        )
    except ValueError as exc:
        problems.append(LineProblem(line, str(exc)))
        return
    if row.customer_id is None and row.external_user_id is None:
        problems.append(LineProblem(line, "needs a customer_id or an external_user_id"))
        return
    rows.append(row)


def _id(value: object, column: str) -> int | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"{column} must be a whole number, got {value!r}")
    if isinstance(value, str):
        if not (value.strip().isascii() and value.strip().isdigit()):
            raise ValueError(f"{column} must be a whole number, got {value.strip()[:40]!r}")
        value = int(value.strip())
    if not 0 < value <= _MAX_ID:
        raise ValueError(f"{column} {value} is out of range")
    return value


def _text(value: object, column: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise ValueError(f"{column} must be text, got {value!r}")
    value = value.strip()
    if len(value) > 128:
        raise ValueError(f"{column} is longer than 128 characters")
    if "\x00" in value or not _encodable(value):
        raise ValueError(f"{column} holds a NUL or invalid Unicode character")
    return value or None


def _encodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone UTF-16 surrogate from a JSON escape
        return False
    return True
