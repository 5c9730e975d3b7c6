"""A loopback TCP proxy in front of a server (PostgreSQL here) that a test can cut and restore,
to make the database unreachable for a while without touching the server itself."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from types import TracebackType

from tests.reliability.loop_thread import LoopThread


class TcpProxy(LoopThread):
    """``with TcpProxy(host, port) as proxy:`` forwards 127.0.0.1:``proxy.port`` to the target.

    ``cut()`` stops listening and aborts every open connection, so the target is unreachable
    (connections refused) until ``restore()`` listens on the same port again. Runs on its own
    thread and event loop, so a busy test loop cannot delay the forwarding.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        super().__init__("tcp-proxy")
        self._target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.StreamWriter] = set()
        self.port = 0
        self.connections = 0
        self.cuts = 0

    def __enter__(self) -> TcpProxy:
        self._start_loop()
        self.port = self._call(self._listen(0), 10)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._call(self._close(), 10)
        self._stop_loop()

    @property
    def url_host_port(self) -> str:
        return f"127.0.0.1:{self.port}"

    def cut(self) -> None:
        """Refuse new connections and abort the open ones."""
        self.cuts += 1
        self._call(self._close(), 10)

    def restore(self) -> None:
        """Listen again on the same port."""
        self._call(self._listen(self.port), 10)

    async def _listen(self, port: int) -> int:
        self._server = await asyncio.start_server(
            self._serve, "127.0.0.1", port, reuse_address=True
        )
        return self._server.sockets[0].getsockname()[1]

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._pipes):
            transport = writer.transport
            with contextlib.suppress(OSError):
                sock = transport.get_extra_info("socket")
                if sock is not None:  # RST, not FIN: the peer sees a reset, as on a real outage
                    sock.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                    )
            transport.abort()
        self._pipes.clear()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            server_r, server_w = await asyncio.open_connection(*self._target)
        except OSError:
            client_w.transport.abort()
            return
        self._pipes |= {client_w, server_w}
        pumps = [
            asyncio.ensure_future(self._pump(client_r, server_w)),
            asyncio.ensure_future(self._pump(server_r, client_w)),
        ]
        # When either side closes, close the other: a client waiting for the server to hang up
        # after its goodbye must see the hang-up.
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for writer in (client_w, server_w):
            writer.transport.abort()
        await asyncio.gather(*pumps, return_exceptions=True)
        self._pipes -= {client_w, server_w}

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
