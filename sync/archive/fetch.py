"""Downloading one file, safely: the allow-list before any connection, the address rules after
DNS, redirects checked hop by hop, the size cap, and the body checks that keep an error page
from being taken for a file. A thin shell over aiohttp; the rules are in the pure modules.

The resolver is the guard against DNS rebinding: aiohttp connects to exactly the addresses the
resolver returns, and the resolver returns only addresses the policy allows, so the address
that was checked is the address connected to. No proxy is used for downloads (a proxy would
resolve the name itself, past the check).
"""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from sync.archive import bodies, sizes
from sync.archive.outcomes import ArchiveFailure, Reason
from sync.archive.policy import HostPolicy, parse_address

CHUNK_BYTES = 256 * 1024
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class AddressRefused(Exception):
    """Every address a host resolved to is private or internal (and not on the allow-list)."""


class GuardedResolver(AbstractResolver):
    def __init__(self, policy: HostPolicy) -> None:
        self._policy = policy
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        allowed = []
        for result in found:
            address = parse_address(result["host"])
            if address is not None and self._policy.address_allowed(address):
                allowed.append(result)
        if not allowed:
            shown = ", ".join(sorted({r["host"] for r in found})) or "nothing"
            raise AddressRefused(
                f"host {host} resolves to {shown}: private or internal addresses are fetched "
                "only when SYNC_ARCHIVE_HOSTS names them"
            )
        return allowed

    async def close(self) -> None:
        await self._inner.close()


@dataclass(frozen=True, slots=True)
class Fetched:
    sha256: str
    length: int


class Fetcher:
    """``async with Fetcher(...) as fetcher: await fetcher.fetch(url, ..., write=sink)``."""

    def __init__(
        self,
        policy: HostPolicy,
        *,
        max_bytes: int,
        timeout_s: float,
        max_redirects: int,
        connections: int,
    ) -> None:
        self.policy = policy
        self.max_bytes = max_bytes
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=timeout_s, sock_read=timeout_s
        )
        self._max_redirects = max_redirects
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Fetcher:
        connector = aiohttp.TCPConnector(
            resolver=GuardedResolver(self.policy),
            use_dns_cache=False,
            limit=self._connections,
        )
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=self._timeout, trust_env=False
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def refusal(self, url: str) -> ArchiveFailure | None:
        """The failure a URL meets before any connection (None when it may be fetched)."""
        reason = self.policy.check_url(url)
        return None if reason is None else ArchiveFailure(Reason.REFUSED_HOST, reason)

    async def fetch(
        self,
        url: str,
        *,
        size_text: str | None,
        file_type: str | None,
        write: Callable[[bytes], Awaitable[Any]],
    ) -> Fetched:
        """Stream the file at ``url`` into ``write``, hashing as it goes; ArchiveFailure says
        why not. ``write`` may have received part of the body when this raises."""
        assert self._session is not None, "use the Fetcher as an async context manager"
        html_expected = bodies.expects_html(file_type, url)
        for hop in range(self._max_redirects + 1):
            refused = self.refusal(url)
            if refused is not None and hop:
                raise ArchiveFailure(
                    Reason.REFUSED_REDIRECT, f"redirected to {url[:200]}: {refused}"
                )
            if refused is not None:
                raise refused
            try:
                async with self._session.get(
                    url, allow_redirects=False, headers={"Accept-Encoding": "identity"}
                ) as response:
                    if response.status in _REDIRECTS:
                        location = response.headers.get("Location")
                        if not location:
                            raise ArchiveFailure(
                                Reason.HTTP_ERROR,
                                f"HTTP {response.status} without a Location",
                                status=response.status,
                            )
                        url = urljoin(url, location)
                        continue
                    return await self._read(response, size_text, html_expected, write)
            except AddressRefused as exc:
                raise ArchiveFailure(Reason.REFUSED_ADDRESS, str(exc)) from None
            except (TimeoutError, aiohttp.ServerTimeoutError):
                raise ArchiveFailure(Reason.TIMEOUT, "timed out") from None
            except aiohttp.ClientError as exc:
                raise ArchiveFailure(Reason.CONNECTION, _describe(exc)) from None
        raise ArchiveFailure(Reason.REFUSED_REDIRECT, f"more than {self._max_redirects} redirects")

    async def _read(
        self,
        response: aiohttp.ClientResponse,
        size_text: str | None,
        html_expected: bool,
        write: Callable[[bytes], Awaitable[Any]],
    ) -> Fetched:
        status = response.status
        if not 200 <= status < 300:
            reason = Reason.NOT_FOUND if status in (404, 410) else Reason.HTTP_ERROR
            raise ArchiveFailure(reason, f"HTTP {status}", status=status)
        announced = response.content_length
        encoded = response.headers.get("Content-Encoding", "identity").lower() != "identity"
        if announced is not None and not encoded:
            if announced > self.max_bytes:
                raise ArchiveFailure(
                    Reason.TOO_LARGE,
                    f"announces {announced} bytes, above SYNC_ARCHIVE_MAX_BYTES ({self.max_bytes})",
                )
            if sizes.contradicts(size_text, announced):
                raise ArchiveFailure(
                    Reason.SIZE_MISMATCH,
                    f"announces {announced} bytes; the record says {size_text}",
                )
        content_type = response.headers.get("Content-Type")
        digest = hashlib.sha256()
        length = 0
        head = b""
        judged = False
        async for chunk in response.content.iter_chunked(CHUNK_BYTES):
            length += len(chunk)
            if length > self.max_bytes:
                raise ArchiveFailure(
                    Reason.TOO_LARGE,
                    f"more than SYNC_ARCHIVE_MAX_BYTES ({self.max_bytes}) bytes streamed",
                )
            if not judged:
                # The first bytes decide whether this is a page; hold them until there are
                # enough to tell.
                head += chunk
                if len(head) < bodies.SNIFF_BYTES:
                    continue
                judged = True
                self._judge(content_type, head, html_expected)
                chunk, head = head, b""
            digest.update(chunk)
            await write(chunk)
        if not judged:
            self._judge(content_type, head, html_expected)
            if head:
                digest.update(head)
                await write(head)
        if announced is not None and not encoded and length != announced:
            raise ArchiveFailure(Reason.CONNECTION, f"body ended at {length} of {announced} bytes")
        if sizes.contradicts(size_text, length):
            raise ArchiveFailure(
                Reason.SIZE_MISMATCH, f"{length} bytes arrived; the record says {size_text}"
            )
        return Fetched(digest.hexdigest(), length)

    @staticmethod
    def _judge(content_type: str | None, head: bytes, html_expected: bool) -> None:
        if bodies.is_error_page(content_type, head, html_expected=html_expected):
            raise ArchiveFailure(
                Reason.ERROR_PAGE, f"an HTML page ({content_type or 'no type'}) came, not a file"
            )


def _describe(exc: aiohttp.ClientError) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect to {exc.host}:{exc.port} ({exc.os_error.strerror or exc})"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "body cut short"
    return f"{type(exc).__name__}: {exc}"[:300]
