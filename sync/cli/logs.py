"""structlog set-up: console lines in a terminal, JSON or logfmt lines otherwise, always on
stderr so stdout stays clean for tables and CSV. The app key is scrubbed from every event as a
second line of defence (no code path is meant to log it in the first place)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any, TextIO

import structlog

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
REDACTED = "[redacted]"


class _StderrLogger:
    """Looks sys.stderr up on every call, so a progress display that wraps it sees the lines."""

    def msg(self, message: str) -> None:
        stream: TextIO = sys.stderr
        stream.write(message + "\n")
        stream.flush()

    log = debug = info = warning = warn = error = critical = exception = msg


# Shorter secrets are only scrubbed as whole values: as substrings they would mangle every line.
_MIN_SUBSTRING_SECRET = 6


class SecretScrubber:
    def __init__(self, secrets: list[str]) -> None:
        self._secrets = [s for s in secrets if len(s) >= _MIN_SUBSTRING_SECRET]
        self._whole = frozenset(s for s in secrets if s)

    def __call__(
        self, _logger: Any, _name: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        if not self._whole:
            return event
        return {key: self._scrub(value) for key, value in event.items()}

    def _scrub(self, value: Any) -> Any:
        if isinstance(value, str) and value in self._whole:
            return REDACTED
        if isinstance(value, str):
            for secret in self._secrets:
                value = value.replace(secret, REDACTED)
            return value
        if isinstance(value, dict | list | tuple) or not isinstance(
            value, int | float | bool | type(None)
        ):
            text = str(value)
            scrubbed = self._scrub(text)
            return scrubbed if scrubbed != text else value
        return value


def configure_logging(
    fmt: str = "auto", level: str = "info", secrets: list[str] | None = None
) -> None:
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    renderer: Any
    if fmt == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    elif fmt == "logfmt":
        renderer = structlog.processors.LogfmtRenderer(key_order=["timestamp", "level", "event"])
    else:
        renderer = structlog.processors.JSONRenderer(ensure_ascii=False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            SecretScrubber(secrets or []),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=lambda *_args: _StderrLogger(),
        cache_logger_on_first_use=False,
    )


@contextmanager
def only_warnings() -> Iterator[None]:
    """Lines below warning dropped while inside: for a daemon the demo runs between its own
    report lines, whose info lines would bury them."""
    previous = structlog.get_config()["wrapper_class"]
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    try:
        yield
    finally:
        structlog.configure(wrapper_class=previous)
