"""The console over a real mirror on SQLite and PostgreSQL: its state predicates agree with
the report_sync_health view, every page renders (escaped, without the app key), paging and
filters, the credentials, and the daemon's listener serving it beside the probes."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from sync.config.settings import Settings
from sync.console.app import console_app, mount
from sync.console.auth import SESSION_COOKIE, ConsoleCredentials
from sync.daemon.daemon import console_check
from sync.daemon.health import Health
from sync.daemon.listener import StatusListener
from sync.daemon.metrics import DaemonMetrics
from sync.domain.errors import ConfigError
from sync.domain.push import Rejection, parse_message
from sync.mirror.console_reads import STATES, CustomerQuery
from sync.mirror.store import MirrorStore
from tests.console_support import seed_mirror, seeded_state
from tests.helpers import APP_KEY, make_settings

CUSTOMERS = 1_000
S3_SECRET, CONSOLE_PASSWORD = "s3-secret-never-shown", "console-password-never-shown"
PAGES = ("/", "/customers", "/customers/1", "/customers/74", "/runs", "/rejected")


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(
        "http://127.0.0.1:9",
        database_url,
        sync_rate_limit=10,
        sync_archive_s3_secret_access_key=S3_SECRET,
        sync_console_password=CONSOLE_PASSWORD,
        sync_console_user="ops",
    )


@pytest.fixture
async def seeded(store: MirrorStore, settings: Settings) -> MirrorStore:
    await seed_mirror(store, CUSTOMERS, max_staleness_s=settings.sync_max_staleness)
    return store


async def client_for(
    store: MirrorStore, settings: Settings, credentials: ConsoleCredentials
) -> TestClient:
    root = web.Application()
    mount(root, console_app(store, settings, credentials))
    client = TestClient(TestServer(root))
    await client.start_server()
    return client


@pytest.fixture
async def open_client(seeded: MirrorStore, settings: Settings) -> AsyncIterator[TestClient]:
    client = await client_for(seeded, settings, ConsoleCredentials())
    yield client
    await client.close()


async def every_row(store: MirrorStore, state: str | None, settings: Settings) -> list[dict]:
    now = await store.console.now()
    rows: list[dict] = []
    after = None
    while True:
        page = await store.console.customers(
            CustomerQuery(state=state, after=after, limit=200), now, settings.sync_max_staleness
        )
        rows += page.rows
        if not page.more_after:
            return rows
        after = page.rows[-1]["id"]


async def test_states_agree_with_the_health_view(seeded: MirrorStore, settings: Settings) -> None:
    bound = int(settings.sync_max_staleness)
    by_view = {r["customer_ref"]: r["state"] for r in await seeded.reads.customer_status(bound)}
    gone = {r["id"] for r in await every_row(seeded, "gone", settings)}
    expected = {ref: "gone" if ref in gone else state for ref, state in by_view.items()}
    assert expected == {ref: seeded_state(ref - 1) for ref in expected}
    for state in STATES:
        refs = {r["id"] for r in await every_row(seeded, state, settings)}
        assert refs == {ref for ref, s in expected.items() if s == state}, state
    counts = await seeded.console.state_counts(await seeded.console.now(), bound)
    assert counts == {s: sum(1 for v in expected.values() if v == s) for s in STATES}


async def test_staleness_histogram_counts_every_checked_customer(
    seeded: MirrorStore, settings: Settings
) -> None:
    from sync.domain.staleness import staleness_buckets

    buckets = staleness_buckets(settings.sync_max_staleness)
    counts = await seeded.console.staleness_histogram(await seeded.console.now(), buckets)
    checked = sum(1 for i in range(CUSTOMERS) if seeded_state(i) not in ("never_synced", "gone"))
    assert sum(counts) == checked
    stale = sum(1 for i in range(CUSTOMERS) if seeded_state(i) == "stale")
    assert sum(n for b, n in zip(buckets, counts, strict=True) if b.over_bound) == stale


async def test_every_page_renders_escaped_and_without_the_app_key(
    open_client: TestClient,
) -> None:
    for path in (*PAGES, "/rejected?kind=customers", "/customers?state=failing&q=owner"):
        response = await open_client.get(f"/console{path}")
        text = await response.text()
        assert response.status == 200, (path, text[:500])
        assert APP_KEY not in text and S3_SECRET not in text, path
        assert CONSOLE_PASSWORD not in text, path
        assert "<script>" not in text and "<img src=x" not in text, path
        assert "default-src 'none'" in response.headers["Content-Security-Policy"]
        assert response.headers["Cache-Control"] == "no-store"
    customer = await (await open_client.get("/console/customers/74")).text()
    assert "HTTP 502 &lt;script&gt;" in customer  # its last error, as text
    overview = await (await open_client.get("/console/")).text()
    assert overview.count("<svg") >= 9 and "SYNC_RATE_LIMIT 10/s" in overview


async def test_paging_forward_and_back(open_client: TestClient) -> None:
    first = await (await open_client.get("/console/customers?state=ok&limit=10")).text()
    assert 'rel="next"' in first and 'rel="prev"' not in first
    second = await (await open_client.get("/console/customers?state=ok&limit=10&after=31")).text()
    assert ">10000030<" not in second and 'rel="prev"' in second
    back = await (await open_client.get("/console/customers?state=ok&limit=10&before=32")).text()
    assert back.count('href="/console/customers/') == 10 and ">10000030<" in back


async def test_bad_requests_get_one_line(open_client: TestClient) -> None:
    for path, status, words in (
        ("/customers?limit=abc", 400, "limit &#39;abc&#39;: not a whole number"),
        ("/customers?state=<b>", 400, "state &#39;&lt;b&gt;&#39;"),
        ("/customers/99999999", 404, "no customer row 99999999"),
        ("/customers/abc", 400, "not a customer row number"),
        ("/runs?mode=nope", 400, "mode &#39;nope&#39;: choose one of"),
        ("/static/../../etc/passwd", 404, ""),
    ):
        response = await open_client.get(f"/console{path}")
        assert response.status == status, path
        assert words in await response.text(), path


async def test_token_bearer_cookie_and_sign_in(seeded: MirrorStore, settings: Settings) -> None:
    client = await client_for(seeded, settings, ConsoleCredentials(token="tok-123"))
    try:
        for path in PAGES:
            refused = await client.get(f"/console{path}", allow_redirects=False)
            assert refused.status == 303, path
            assert refused.headers["Location"].startswith("/console/login?next=")
            wrong = await client.get(f"/console{path}", headers={"Authorization": "Bearer x"})
            assert wrong.status == 401 and "10000000" not in await wrong.text()
        ok = await client.get("/console/customers", headers={"Authorization": "Bearer tok-123"})
        assert ok.status == 200
        assert (await client.get("/console/static/console.css")).status == 200
        bad = await client.post("/console/login", data={"token": "nope", "next": "/console/"})
        assert bad.status == 401
        signed = await client.post(
            "/console/login",
            data={"token": "tok-123", "next": "//evil.example/"},
            allow_redirects=False,
        )
        assert signed.status == 303 and signed.headers["Location"] == "/console/"
        cookie = signed.cookies[SESSION_COOKIE]
        assert "tok-123" not in cookie.value and cookie["httponly"] and cookie["samesite"]
        page = await client.get("/console/runs")  # the client keeps the cookie
        assert page.status == 200
        out = await client.post("/console/logout", allow_redirects=False)
        assert out.status == 303
        client.session.cookie_jar.clear()
        assert (await client.get("/console/runs", allow_redirects=False)).status == 303
    finally:
        await client.close()


async def test_basic_auth(seeded: MirrorStore, settings: Settings) -> None:
    client = await client_for(seeded, settings, ConsoleCredentials(user="ops", password="pw"))
    try:
        refused = await client.get("/console/")
        assert refused.status == 401
        assert refused.headers["WWW-Authenticate"].startswith("Basic ")
        good = base64.b64encode(b"ops:pw").decode()
        assert (
            await client.get("/console/", headers={"Authorization": f"Basic {good}"})
        ).status == 200
        bad = base64.b64encode(b"ops:nope").decode()
        assert (
            await client.get("/console/", headers={"Authorization": f"Basic {bad}"})
        ).status == 401
    finally:
        await client.close()


async def test_the_daemon_listener_serves_it_beside_open_probes(
    seeded: MirrorStore, settings: Settings
) -> None:
    listener = StatusListener(
        lambda: Health("ok"),
        _ready,
        DaemonMetrics(lambda: {"outcomes": {}, "retries": 0, "rate_limit_waits": 0}),
        console=console_app(seeded, settings, ConsoleCredentials(token="t0k")),
    )
    await listener.start("127.0.0.1", 0)
    try:
        async with TestClient(TestServer(web.Application())) as probe:
            base = f"http://127.0.0.1:{listener.port}"
            session = probe.session
            assert (await session.get(f"{base}/healthz")).status == 200
            assert (await session.get(f"{base}/metrics")).status == 200
            denied = await session.get(f"{base}/console/", allow_redirects=False)
            assert denied.status == 303
            page = await session.get(f"{base}/console/", headers={"Authorization": "Bearer t0k"})
            assert page.status == 200 and APP_KEY not in await page.text()
    finally:
        await listener.stop()


async def _ready() -> Health:
    return Health("ok")


def test_a_daemon_console_off_loopback_needs_credentials(database_url: str) -> None:
    def exposed(**overrides: object) -> Settings:
        return make_settings(
            "http://127.0.0.1:9", database_url, sync_http_listen="0.0.0.0:9477", **overrides
        )

    with pytest.raises(
        ConfigError, match=r"SYNC_HTTP_LISTEN: the console would listen on 0\.0\.0\.0"
    ):
        console_check(exposed())
    console_check(exposed(sync_console=False))
    console_check(exposed(sync_console_token="t"))
    console_check(make_settings("http://127.0.0.1:9", database_url))  # loopback


async def test_runs_around_a_customers_attempts(seeded: MirrorStore, settings: Settings) -> None:
    now = await seeded.console.now()
    found = await seeded.console.customer(2, now, settings.sync_max_staleness)
    attempt = found["sync_last_attempt_at"]
    for run in found["runs"]:
        assert run["started_at"] <= attempt + timedelta(seconds=1)


async def test_pushes_show_on_the_overview_and_on_their_customer_page(
    seeded: MirrorStore, open_client: TestClient
) -> None:
    named = (
        '{"msgId":"m-77","type":"edit_qw_customer","noise":-9,"content":{"customerId":10000000}}'
    )
    hostile = '{"msgId":"m-78","type":"<b>odd</b>","noise":1,"content":{"customerId":"10000000"}}'
    await seeded.push.insert([parse_message(named), parse_message(hostile)], "host-a:101")
    await seeded.push.count_rejections({Rejection.BAD_SIGN.value: (3, "sign does not match")})
    await seeded.push.process_pending(100)
    overview = await (await open_client.get("/console/")).text()
    assert 'id="panel-push"' in overview
    assert "bad_sign" in overview and "2 received" in overview
    page = await (await open_client.get("/console/customers/1")).text()
    assert "m-77" in page and "m-78" in page
    assert "<b>odd</b>" not in page and "&lt;b&gt;odd&lt;/b&gt;" in page


async def test_a_paused_customer_says_so_and_who_paused_it(
    seeded: MirrorStore, open_client: TestClient
) -> None:
    assert await seeded.controls.set_paused(1, True, "<i>ops</i>")
    page = await (await open_client.get("/console/customers/1")).text()
    assert '<span class="state muted">paused</span>' in page
    assert "&lt;i&gt;ops&lt;/i&gt;" in page and "<i>ops</i>" not in page
