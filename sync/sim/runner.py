"""Run a ``Simulator`` in a background thread, for synchronous tests and CLI subprocess targets."""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Callable
from typing import Any

from sync.sim.config import SimConfig
from sync.sim.dataset import SimDataset
from sync.sim.server import Simulator


class SimThread:
    """``with SimThread(dataset) as sim: ...`` serves on 127.0.0.1 (a free port) until exit.

    The dataset and simulator belong to the server's loop while it runs: change them only
    through ``call`` so no request sees a half-made change.
    """

    def __init__(
        self,
        dataset: SimDataset,
        config: SimConfig | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        timeout_s: float = 30.0,
    ) -> None:
        self.sim = Simulator(dataset, config)
        self._host = host
        self._port = port
        self._timeout = timeout_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._closed = False
        self.base_url = ""

    @property
    def endpoint_url(self) -> str:
        return self.sim.endpoint_url

    def __enter__(self) -> SimThread:
        self._thread = threading.Thread(target=self._run, name="tanma-sim", daemon=True)
        self._thread.start()
        if not self._ready.wait(self._timeout):
            raise RuntimeError("simulator did not start in time")
        if self._error is not None:
            raise RuntimeError("simulator failed to start") from self._error
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        loop, thread = self._loop, self._thread
        if self._closed or loop is None or thread is None or not thread.is_alive():
            return
        self._closed = True
        try:
            asyncio.run_coroutine_threadsafe(self.sim.stop(), loop).result(self._timeout)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(self._timeout)

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` on the server's loop and return its result.

        ``fn`` may be a plain function or a coroutine function; exceptions propagate.
        """
        loop = self._loop
        if loop is None or self._closed:
            raise RuntimeError("simulator not running")

        async def invoke() -> Any:
            result = fn(*args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
            return result

        return asyncio.run_coroutine_threadsafe(invoke(), loop).result(self._timeout)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            asyncio.set_event_loop(loop)
            try:
                self.base_url = loop.run_until_complete(self.sim.start(self._host, self._port))
            except BaseException as exc:  # handed to the starting thread, which raises it
                self._error = exc
                self._closed = True
                self._ready.set()
                return
            # Ready only once the loop runs, so the first ``call`` cannot race its start.
            loop.call_soon(self._ready.set)
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
