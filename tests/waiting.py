"""Waiting for a condition instead of sleeping a fixed time: the condition is polled until it
holds, within a generous bound, so a slow machine gets the time it needs and a fast one moves on
at once. The bound only turns a hang into a failure; it is not what a test measures."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

POLL_S = 0.02


async def until(condition: Callable[[], bool | Awaitable[bool]], limit_s: float, what: str) -> None:
    """Return once ``condition()`` (a plain or an async callable) is true; fail after
    ``limit_s`` seconds, naming ``what`` was awaited."""
    deadline = time.monotonic() + limit_s
    while True:
        held = condition()
        if inspect.isawaitable(held):
            held = await held
        if held:
            return
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {limit_s:g} s waiting for {what}")
        await asyncio.sleep(POLL_S)


def until_sync(condition: Callable[[], bool], limit_s: float, what: str) -> None:
    """``until`` for code outside an event loop (a test driving a subprocess)."""
    deadline = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {limit_s:g} s waiting for {what}")
        time.sleep(POLL_S)
