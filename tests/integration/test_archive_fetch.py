"""The downloader against real loopback servers: address rules after DNS, redirects, sizes
and truncated bodies. Nothing here touches a database."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from sync.archive.fetch import Fetcher
from sync.archive.outcomes import ArchiveFailure, Reason
from sync.archive.policy import HostPolicy

BODY = bytes(range(256)) * 64  # 16 KiB


class Sink:
    def __init__(self) -> None:
        self.data = bytearray()

    async def write(self, chunk: bytes) -> None:
        self.data += chunk


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, list[str]]]:
    """A file server on 127.0.0.1 with a few routes; yields its base URL and the Host headers
    of the requests it received."""
    hits: list[str] = []

    async def file(request: web.Request) -> web.StreamResponse:
        hits.append(request.host)
        return web.Response(body=BODY, content_type="application/octet-stream")

    async def redirect(request: web.Request) -> web.StreamResponse:
        hits.append(request.host)
        raise web.HTTPFound(request.query["to"])

    async def truncated(request: web.Request) -> web.StreamResponse:
        hits.append(request.host)
        response = web.StreamResponse(headers={"Content-Length": str(len(BODY) * 2)})
        await response.prepare(request)
        await response.write(BODY)
        assert request.transport is not None
        request.transport.close()
        return response

    app = web.Application()
    app.router.add_get("/file", file)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/truncated", truncated)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}", hits
    await runner.cleanup()


def fetcher(hosts: str, **options: int) -> Fetcher:
    return Fetcher(
        HostPolicy.parse(hosts),
        max_bytes=options.get("max_bytes", 10**9),
        timeout_s=10,
        max_redirects=options.get("max_redirects", 3),
        connections=2,
    )


async def fetch(f: Fetcher, url: str, size_text: str | None = None) -> tuple[str, Sink]:
    sink = Sink()
    async with f:
        got = await f.fetch(url, size_text=size_text, file_type="bin", write=sink.write)
    return got.sha256, sink


async def failure(call: Callable[[], Awaitable[object]]) -> ArchiveFailure:
    with pytest.raises(ArchiveFailure) as caught:
        await call()
    return caught.value


async def test_an_allowed_file_streams_and_hashes(server) -> None:
    base, hits = server
    digest, sink = await fetch(fetcher("127.0.0.1"), f"{base}/file", "16.0KB")
    assert digest == hashlib.sha256(BODY).hexdigest() and bytes(sink.data) == BODY
    assert len(hits) == 1


async def test_a_name_that_resolves_to_loopback_is_refused_without_a_request(server) -> None:
    base, hits = server
    url = base.replace("127.0.0.1", "localhost") + "/file"
    got = await failure(lambda: fetch(fetcher("localhost"), url))
    assert got.reason is Reason.REFUSED_ADDRESS and "127.0.0.1" in str(got)
    assert hits == []  # the address was refused before any connection


async def test_a_host_off_the_list_is_refused_without_a_request(server) -> None:
    base, hits = server
    got = await failure(lambda: fetch(fetcher("*.tanmarket.cn"), f"{base}/file"))
    assert got.reason is Reason.REFUSED_HOST
    assert hits == []


async def test_redirects_inside_the_list_are_followed_and_outside_refused(server) -> None:
    base, hits = server
    inside = f"{base}/redirect?to={base}/file"
    digest, _ = await fetch(fetcher("127.0.0.1"), inside)
    assert digest == hashlib.sha256(BODY).hexdigest()
    hits.clear()
    outside = f"{base}/redirect?to=" + base.replace("127.0.0.1", "localhost") + "/file"
    got = await failure(lambda: fetch(fetcher("127.0.0.1"), outside))
    assert got.reason is Reason.REFUSED_REDIRECT
    assert hits == ["127.0.0.1:" + base.rsplit(":", 1)[1]]  # only the redirecting hop
    loop = f"{base}/redirect?to={base}/redirect%3Fto%3D{base}/file"
    got = await failure(lambda: fetch(fetcher("127.0.0.1", max_redirects=1), loop))
    assert got.reason is Reason.REFUSED_REDIRECT and "redirects" in str(got)


async def test_size_rules(server) -> None:
    base, _ = server
    big = await failure(lambda: fetch(fetcher("127.0.0.1", max_bytes=1000), f"{base}/file"))
    assert big.reason is Reason.TOO_LARGE
    wrong = await failure(lambda: fetch(fetcher("127.0.0.1"), f"{base}/file", "3.5MB"))
    assert wrong.reason is Reason.SIZE_MISMATCH


async def test_a_truncated_body_is_a_failure(server) -> None:
    base, _ = server
    got = await failure(lambda: fetch(fetcher("127.0.0.1"), f"{base}/truncated"))
    assert got.reason is Reason.CONNECTION
