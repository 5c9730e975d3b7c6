"""The console's templates (sync/console/templates/), with autoescaping on for every one of
them: whatever came from outside (names, errors, payloads) is shown as text, never markup."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from sync.domain.chinatime import format_china_time
from sync.domain.customers import customer_label
from sync.domain.durations import format_duration

BASE = "/console"


def _count(value: int | float | None) -> str:
    return "" if value is None else f"{value:,}"


def _age(instant: datetime | None, now: datetime) -> str:
    if instant is None:
        return ""
    seconds = (now - instant).total_seconds()
    return f"{format_duration(abs(seconds))} {'ago' if seconds >= 0 else 'ahead'}"


def _label(row: dict[str, Any]) -> str:
    return customer_label(row.get("customer_id"), row.get("external_user_id"))


def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("sync.console", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["china"] = format_china_time
    env.filters["count"] = _count
    env.filters["duration"] = format_duration
    env.globals["age"] = _age
    env.globals["label"] = _label
    env.globals["base"] = BASE
    return env
