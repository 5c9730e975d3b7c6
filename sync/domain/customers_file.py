"""Reading a customers file (CSV with a header, or JSON Lines) as people make them: Excel's
encodings, semicolons or tabs between fields, the API's own column names, extra columns. Pure:
bytes in, rows and per-line problems out, so one bad line is reported by number and the others
still import."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
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
    """The file as a whole cannot be read (an unknown encoding, no header, no id column)."""


@dataclass(frozen=True, slots=True)
class CustomersFile:
    """What a customers file holds: the rows, the lines set aside, and notes about the file as
    a whole that a person should see once (its encoding, the columns that were ignored)."""

    rows: list[CustomerRow]
    problems: list[LineProblem]
    notes: list[str]


# The API's own spellings (customerId, externalUserId, …) and the snake_case ones, in any case,
# with or without separators: a header cell is matched on its letters and digits alone.
def _squeezed(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


_COLUMN_BY_SPELLING = {_squeezed(column): column for column in COLUMNS}
# Offered in this order when a header's first line has several of them outside quotes.
_DELIMITERS = (",", ";", "\t", "|")
_DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "vertical bar"}
SAVE_AS_UTF8 = 'save it as UTF-8 (Excel: File > Save As > "CSV UTF-8"; WPS: 另存为 CSV, 编码 UTF-8)'


def read_customers(data: bytes, name: str = "") -> CustomersFile:
    """A customers file in UTF-8 (with or without a byte-order mark), UTF-16 with a mark
    (Excel's "Unicode text"), or GBK/GB18030 (Excel's default in China); CSV with a header
    (comma, semicolon, tab or vertical bar between fields) or JSON Lines."""
    text, notes = _decode(data)
    if not text.strip():
        raise CustomersFileError("the file is empty")
    lowered = name.lower()
    is_jsonl = lowered.endswith((".jsonl", ".ndjson", ".json")) or (
        not lowered.endswith((".csv", ".tsv", ".txt")) and text.lstrip().startswith("{")
    )
    parsed = _parse_jsonl(text) if is_jsonl else _parse_csv(text)
    return CustomersFile(parsed.rows, parsed.problems, notes + parsed.notes)


def parse_customers(data: bytes, name: str = "") -> tuple[list[CustomerRow], list[LineProblem]]:
    """``read_customers`` for callers that need only the rows and the lines set aside."""
    parsed = read_customers(data, name)
    return parsed.rows, parsed.problems


def _decode(data: bytes) -> tuple[str, list[str]]:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16"), []
        except UnicodeDecodeError as exc:
            raise CustomersFileError(
                f"not UTF-16 text after its byte-order mark (byte {exc.start}); {SAVE_AS_UTF8}"
            ) from None
    try:
        return data.decode("utf-8-sig"), []
    except UnicodeDecodeError as utf8_error:
        line = data[: utf8_error.start].count(b"\n") + 1
        try:
            # UTF-8 characters before the broken one mean a damaged UTF-8 file, which read as
            # GBK would garble every one of them.
            if not data[: utf8_error.start].isascii():
                raise UnicodeDecodeError("gb18030", data, 0, 1, "after valid UTF-8")
            # GB18030 is a superset of GBK and GB2312: one decoder reads all three.
            text = data.decode("gb18030")
        except UnicodeDecodeError:
            raise CustomersFileError(
                f"line {line}: not UTF-8 text (byte {utf8_error.start}), nor GBK/GB18030; "
                f"{SAVE_AS_UTF8}"
            ) from None
        return text, [
            f"not UTF-8 (line {line}, byte {utf8_error.start}): read as GBK/GB18030, "
            "the encoding Excel uses in China"
        ]


def _header_delimiter(first_line: str) -> str:
    """The delimiter of a CSV file, judged from its header line: the candidate that occurs
    most often outside quotes (a one-column file has none, and is read as comma-separated).
    The header's names are known words, so this is steadier than guessing from the data."""
    counts = dict.fromkeys(_DELIMITERS, 0)
    quoted = False
    for ch in first_line:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch in counts:
            counts[ch] += 1
    best = max(_DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


def _parse_csv(text: str) -> CustomersFile:
    delimiter = _header_delimiter(text.lstrip("\r\n").split("\n", 1)[0])
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = next(reader, None)
    if not header or not any(cell.strip() for cell in header):
        raise CustomersFileError(
            f"line 1: expected a header naming the columns {','.join(COLUMNS)}"
        )
    names: list[str | None] = []
    ignored: list[str] = []
    for cell in header:
        column = _COLUMN_BY_SPELLING.get(_squeezed(cell))
        if column is not None and column in names:
            raise CustomersFileError(f"line 1: two columns mean {column} ({cell.strip()!r})")
        names.append(column)
        if column is None and cell.strip():
            ignored.append(cell.strip())
    if "customer_id" not in names and "external_user_id" not in names:
        shown = ", ".join(repr(c.strip()) for c in header[:6])
        raise CustomersFileError(
            f"line 1: need a customer_id or an external_user_id column (the header has {shown}; "
            f"the columns are {','.join(COLUMNS)})"
        )
    notes = []
    if delimiter != ",":
        notes.append(f"fields are separated by {_DELIMITER_NAMES[delimiter]}s")
    if ignored:
        notes.append(_ignored_note("column", ignored))
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
            problems.append(
                LineProblem(line, f"{_count(len(cells), 'field')}, the header has {len(names)}")
            )
            continue
        fields = {n: cell for n, cell in zip(names, cells, strict=True) if n is not None}
        _collect(fields, line, rows, problems)
    return CustomersFile(rows, problems, notes)


def _parse_jsonl(text: str) -> CustomersFile:
    rows: list[CustomerRow] = []
    problems: list[LineProblem] = []
    ignored: dict[str, None] = {}  # insertion-ordered set
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
        fields: dict[str, object] = {}
        clash = ""
        for key, value in item.items():
            column = _COLUMN_BY_SPELLING.get(_squeezed(key))
            if column is None:
                ignored.setdefault(key)
            elif column in fields:
                clash = f"two keys mean {column} ({key!r})"
            else:
                fields[column] = value
        if clash:
            problems.append(LineProblem(line, clash))
            continue
        _collect(fields, line, rows, problems)
    notes = [_ignored_note("key", list(ignored))] if ignored else []
    return CustomersFile(rows, problems, notes)


def _ignored_note(what: str, names: list[str]) -> str:
    shown = ", ".join(repr(n[:40]) for n in names[:8])
    more = f" and {len(names) - 8} more" if len(names) > 8 else ""
    return (
        f"ignored the unknown {_count(len(names), what, with_number=False)} {shown}{more} "
        f"(tanma-sync reads {', '.join(COLUMNS)})"
    )


def _count(n: int, noun: str, *, with_number: bool = True) -> str:
    word = noun if n == 1 else f"{noun}s"
    return f"{n} {word}" if with_number else word


def _collect(
    fields: Mapping[str, object], line: int, rows: list[CustomerRow], problems: list[LineProblem]
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
