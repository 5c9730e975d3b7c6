"""The console in a real headless browser: Debian's Chromium (/usr/bin/chromium, which
.ci/run installs) driven by Playwright, against a console served on loopback by a thread of
its own over a mirror of 100,000 seeded customers, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
from aiohttp import web

from sync.console.app import console_app, mount
from sync.console.auth import ConsoleCredentials
from sync.mirror import database as db
from sync.mirror.store import MirrorStore
from tests.conftest import BACKENDS, drop_database_url, new_database_url
from tests.console_support import seed_mirror
from tests.helpers import APP_KEY, make_settings
from tests.waiting import until_sync

T = TypeVar("T")
CHROMIUM = Path(os.environ.get("TANMA_TEST_CHROMIUM", "/usr/bin/chromium"))
CUSTOMERS = 100_000
ARTEFACTS = Path(__file__).resolve().parents[2] / "test-artefacts"
TOKEN = "console-token-for-the-browser-tests"


@dataclass
class Served:
    url: str  # http://127.0.0.1:PORT/console
    backend: str
    customers: int


class _Stopper:
    """Ends the server thread's loop from the test thread."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.event: asyncio.Event | None = None

    def stop(self) -> None:
        if self.loop is not None and self.event is not None:
            self.loop.call_soon_threadsafe(self.event.set)


def _serve(database_url: str, credentials: ConsoleCredentials, ready: list, stopper: _Stopper):
    async def main() -> None:
        stopper.loop, stopper.event = asyncio.get_running_loop(), asyncio.Event()
        engine = db.create_engine(database_url)
        await db.upgrade(engine)
        store = MirrorStore(engine)
        # The defaults an operator has, so the charts and the screenshot read as in use.
        settings = make_settings("http://127.0.0.1:9", database_url, sync_rate_limit=10)
        await seed_mirror(store, CUSTOMERS, max_staleness_s=settings.sync_max_staleness)
        root = web.Application()
        mount(root, console_app(store, settings, credentials))
        runner = web.AppRunner(root, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        ready.append(f"http://127.0.0.1:{port}/console")
        await stopper.event.wait()
        await runner.cleanup()
        await engine.dispose()

    try:
        asyncio.run(main())
    except BaseException as exc:  # reported to the waiting fixture
        ready.append(exc)


def _off_thread(call: Callable[[], T]) -> T:
    """``call()`` in a thread of its own: the database helpers run their own event loop,
    and Playwright's keeps one running in this thread."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(call).result()


@pytest.fixture(scope="module", params=BACKENDS)
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    backend = request.param
    directory = tmp_path_factory.mktemp("console")
    url = _off_thread(lambda: new_database_url(backend, directory))
    ready: list = []
    stopper = _Stopper()
    thread = threading.Thread(
        target=_serve, args=(url, ConsoleCredentials(token=TOKEN), ready, stopper), daemon=True
    )
    thread.start()
    until_sync(lambda: bool(ready), 240, "the console to be seeded and serving")
    if isinstance(ready[0], BaseException):
        raise ready[0]
    yield Served(ready[0], backend, CUSTOMERS)
    stopper.stop()
    thread.join(timeout=30)
    _off_thread(lambda: drop_database_url(url))


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not CHROMIUM.is_file():
        # As for PostgreSQL and S3: skipped on a machine without it, a failure in CI.
        message = f"no Chromium at {CHROMIUM} (apt-get install chromium; .ci/run does)"
        if os.environ.get("TANMA_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"]
        )
        yield chromium
        chromium.close()


__all__ = ["APP_KEY", "ARTEFACTS", "TOKEN", "Served"]
