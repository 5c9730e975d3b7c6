"""Reading a console page's query string. Pure: the parameters in, the page's question out,
or ``BadParameter`` with a line naming the parameter at fault (shown as a 400 page)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from sync.mirror.console_reads import STATES, CustomerQuery

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
_MAX_SEARCH = 200
_MAX_KEY = 2**63 - 1


class BadParameter(ValueError):
    """A query parameter the console cannot use; the message names it."""


@dataclass(frozen=True, slots=True)
class PageAt:
    after: int | None
    before: int | None
    limit: int


def page_at(query: Mapping[str, str]) -> PageAt:
    """``after``/``before`` (a row key, at most one of them) and ``limit``."""
    after = _key(query, "after")
    before = _key(query, "before")
    if after is not None and before is not None:
        raise BadParameter("give after or before, not both")
    limit = _integer(query, "limit", DEFAULT_LIMIT)
    if not 1 <= limit <= MAX_LIMIT:
        raise BadParameter(f"limit {limit}: give 1 to {MAX_LIMIT}")
    return PageAt(after, before, limit)


def choice(query: Mapping[str, str], name: str, allowed: Collection[str]) -> str | None:
    """A parameter that must be one of ``allowed`` (empty or absent: None)."""
    value = query.get(name, "").strip()
    if not value:
        return None
    if value not in allowed:
        raise BadParameter(f"{name} {value[:40]!r}: choose one of {', '.join(sorted(allowed))}")
    return value


def customers_query(query: Mapping[str, str]) -> CustomerQuery:
    at = page_at(query)
    search = query.get("q", "").strip()
    if len(search) > _MAX_SEARCH:
        raise BadParameter(f"q: at most {_MAX_SEARCH} characters")
    if "\x00" in search:
        raise BadParameter("q: contains a NUL character")
    return CustomerQuery(
        state=choice(query, "state", STATES),
        search=search,
        after=at.after,
        before=at.before,
        limit=at.limit,
    )


def _key(query: Mapping[str, str], name: str) -> int | None:
    if not query.get(name, "").strip():
        return None
    value = _integer(query, name, 0)
    if not 0 <= value <= _MAX_KEY:
        raise BadParameter(f"{name} {value}: not a row key")
    return value


def _integer(query: Mapping[str, str], name: str, default: int) -> int:
    text = query.get(name, "").strip()
    if not text:
        return default
    if not (text.isascii() and text.lstrip("-").isdigit()) or len(text) > 20:
        raise BadParameter(f"{name} {text[:40]!r}: not a whole number")
    return int(text)
