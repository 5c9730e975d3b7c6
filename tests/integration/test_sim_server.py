"""The simulated endpoint over real loopback HTTP, driven by a real aiohttp client."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import urllib.request
from collections.abc import AsyncIterator
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from sync.api.signing import encode_body, sign, signed_headers
from sync.sim import ENDPOINT, FAULT_KINDS, SimConfig, SimDataset, SimThread, Simulator

APP_ID, APP_KEY = "demo-app", "demo-key"


def _now_ms(offset_s: float = 0) -> int:
    return int((time.time() + offset_s) * 1000)


class Reply:
    def __init__(self, status: int, headers: Any, raw: bytes) -> None:
        self.status = status
        self.headers = headers
        self.raw = raw

    def json(self) -> Any:
        return json.loads(self.raw)


async def _post(
    session: aiohttp.ClientSession,
    sim: Simulator,
    payload: dict[str, Any],
    *,
    app_key: str = APP_KEY,
    now_ms: int | None = None,
    timeout_s: float = 10,
) -> Reply:
    body = encode_body(payload)
    headers = signed_headers(APP_ID, app_key, body, _now_ms() if now_ms is None else now_ms)
    async with session.post(
        sim.endpoint_url,
        data=body,
        headers=headers,
        timeout=aiohttp.ClientTimeout(total=timeout_s),
    ) as response:
        return Reply(response.status, response.headers, await response.read())


def _heaviest(ds: SimDataset) -> int:
    return max(range(ds.customer_count), key=ds.base_file_count)


@pytest_asyncio.fixture
async def dataset() -> SimDataset:
    return SimDataset(seed=3, customers=40)


@pytest_asyncio.fixture
async def sim(dataset: SimDataset) -> AsyncIterator[Simulator]:
    simulator = Simulator(dataset, SimConfig(stall_s=0.5))
    await simulator.start()
    yield simulator
    await simulator.stop()


@pytest_asyncio.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


# ----- serving pages ---------------------------------------------------------------------------


async def test_pages_join_to_the_visible_records(
    sim: Simulator, session: aiohttp.ClientSession, dataset: SimDataset
) -> None:
    index = _heaviest(dataset)
    customer = dataset.customer(index)
    expected = dataset.visible_records(index)
    assert len(expected) > 60
    seen: list[dict[str, Any]] = []
    last_id = None
    while True:
        payload: dict[str, Any] = {"customerId": customer.customer_id, "pageSize": 25}
        if last_id is not None:
            payload["lastId"] = last_id
        reply = await _post(session, sim, payload)
        assert reply.status == 200
        assert reply.headers["Content-Type"] == "application/json; charset=utf-8"
        body = reply.json()
        assert body["code"] == 0
        assert body["message"] == "success"
        data = body["data"]
        assert data["totalCount"] == len(expected)
        assert data["totalPage"] == -(-len(expected) // 25)
        assert data["pageNo"] == 0
        assert data["pageSize"] == 25
        seen.extend(data["result"])
        if len(data["result"]) < 25:
            break
        last_id = data["result"][-1]["id"]
    assert seen == expected
    assert sim.stats.outcomes["ok"] == sim.stats.requests_total
    assert sim.stats.per_customer[customer.customer_id] == sim.stats.requests_total
    assert sim.stats.records_served == len(expected)


async def test_text_is_sent_as_utf8_not_escaped(
    sim: Simulator, session: aiohttp.ClientSession, dataset: SimDataset
) -> None:
    customer = dataset.customer(_heaviest(dataset))
    reply = await _post(session, sim, {"customerId": customer.customer_id, "pageSize": 100})
    assert "\\u" not in reply.raw.decode()
    assert any(not r["authorName"].isascii() for r in reply.json()["data"]["result"])


async def test_page_size_is_capped_defaulted_and_echoed(
    sim: Simulator, session: aiohttp.ClientSession, dataset: SimDataset
) -> None:
    customer = dataset.customer(_heaviest(dataset))
    sim.configure(page_size_cap=50)
    data = (await _post(session, sim, {"customerId": customer.customer_id, "pageSize": 500})).json()
    assert data["data"]["pageSize"] == 50
    assert len(data["data"]["result"]) == 50
    data = (await _post(session, sim, {"customerId": customer.customer_id})).json()
    assert data["data"]["pageSize"] == 30
    assert len(data["data"]["result"]) == 30
    data = (await _post(session, sim, {"customerId": customer.customer_id, "pageSize": 0})).json()
    assert data["data"]["pageSize"] == 1


async def test_customer_by_external_id_and_unknown_customer(
    sim: Simulator, session: aiohttp.ClientSession, dataset: SimDataset
) -> None:
    index = _heaviest(dataset)
    customer = dataset.customer(index)
    reply = await _post(session, sim, {"externalUserId": customer.external_user_id})
    assert _first_ids(reply) == [r["id"] for r in dataset.visible_records(index)[:30]]
    for payload in ({"customerId": 123456789}, {"externalUserId": "wm" + "0" * 30}):
        body = (await _post(session, sim, payload)).json()
        assert body["code"] == 0
        assert body["data"]["result"] == []
        assert body["data"]["totalCount"] == 0
    assert sim.stats.unknown_customers == 2


def _first_ids(reply: Reply) -> list[int]:
    return [r["id"] for r in reply.json()["data"]["result"]]


# ----- request checks --------------------------------------------------------------------------


async def test_a_wrong_sign_or_app_is_code_1002(
    sim: Simulator, session: aiohttp.ClientSession, dataset: SimDataset
) -> None:
    payload = {"customerId": dataset.customer(0).customer_id}
    reply = await _post(session, sim, payload, app_key="wrong-key")
    assert reply.status == 200
    assert reply.json() == {
        "code": 1002,
        "message": "签名校验失败 (sign check failed)",
        "data": None,
    }
    # Signing one serialisation and sending another must fail too: the sign covers raw bytes.
    body = encode_body(payload)
    headers = signed_headers(APP_ID, APP_KEY, body, _now_ms())
    async with session.post(
        sim.endpoint_url, data=json.dumps(payload, indent=1).encode(), headers=headers
    ) as response:
        assert (await response.json())["code"] == 1002
    other_app = dict(headers, appId="someone-else")
    async with session.post(sim.endpoint_url, data=body, headers=other_app) as response:
        assert (await response.json())["code"] == 1002
    no_sign = {k: v for k, v in headers.items() if k != "sign"}
    async with session.post(sim.endpoint_url, data=body, headers=no_sign) as response:
        assert (await response.json())["code"] == 1002
    odd_sign = dict(headers, sign="é" * 64)
    async with session.post(sim.endpoint_url, data=body, headers=odd_sign) as response:
        assert (await response.json())["code"] == 1002
    assert sim.stats.outcomes["sign_error_1002"] == 5


async def test_a_stale_timestamp_is_code_1003_and_date_shows_server_time(
    sim: Simulator, session: aiohttp.ClientSession, dataset: SimDataset
) -> None:
    payload = {"customerId": dataset.customer(0).customer_id}
    stale = await _post(session, sim, payload, now_ms=_now_ms(-301))
    assert stale.json()["code"] == 1003
    sim.configure(clock_offset_s=3600)
    skewed = await _post(session, sim, payload)
    assert skewed.json()["code"] == 1003
    server_time = parsedate_to_datetime(skewed.headers["Date"]).timestamp()
    assert abs(server_time - (time.time() + 3600)) < 5
    corrected = await _post(session, sim, payload, now_ms=_now_ms(3600))
    assert corrected.json()["code"] == 0
    assert sim.stats.outcomes["time_error_1003"] == 2


async def test_a_timestamp_that_is_not_a_number_is_code_1003(
    sim: Simulator, session: aiohttp.ClientSession
) -> None:
    body = encode_body({"customerId": 1})
    # Correctly signed, so only the timestamp's form can be what the server objects to.
    headers = signed_headers(APP_ID, APP_KEY, body, 0)
    headers["timestamp"] = "1.7e12"
    headers["sign"] = sign(APP_ID, "1.7e12", body, APP_KEY)
    async with session.post(sim.endpoint_url, data=body, headers=headers) as response:
        assert (await response.json())["code"] == 1003


async def test_bad_bodies_are_code_1000_and_other_methods_405(
    sim: Simulator, session: aiohttp.ClientSession
) -> None:
    for raw in (b"{not json", b"[1, 2]", "中文".encode("gbk")):
        async with session.post(sim.endpoint_url, data=raw) as response:
            assert (await response.json()) == {
                "code": 1000,
                "message": "bad request body",
                "data": None,
            }
    for payload in ({"pageSize": 10}, {"customerId": 1, "lastId": "x"}, {"customerId": []}):
        reply = await _post(session, sim, payload)
        assert reply.json()["code"] == 1000
    async with session.get(sim.endpoint_url) as response:
        assert response.status == 405
    assert sim.stats.outcomes["bad_request_1000"] == 6
    assert sim.stats.outcomes["http405"] == 1


# ----- rate limits, latency, overlaps ----------------------------------------------------------


async def test_rate_limit_answers_429_and_counts_over_limit(
    sim: Simulator, session: aiohttp.ClientSession, dataset: SimDataset
) -> None:
    sim.configure(rate_limit=2.0, rate_burst=2)
    payload = {"customerId": dataset.customer(0).customer_id}
    statuses = []
    for _ in range(6):
        reply = await _post(session, sim, payload)
        statuses.append(reply.status)
        if reply.status == 429:
            assert reply.headers["Retry-After"] == "1"
    assert statuses[:2] == [200, 200]
    assert statuses.count(429) >= 3
    assert sim.stats.over_limit == statuses.count(429)
    assert sim.stats.outcomes["http429"] == statuses.count(429)
    await asyncio.sleep(0.6)
    assert (await _post(session, sim, payload)).status == 200


async def test_overlapping_requests_for_one_customer_are_counted(
    sim: Simulator, session: aiohttp.ClientSession, dataset: SimDataset
) -> None:
    sim.configure(latency_ms=300)
    one, two = dataset.customer(1).customer_id, dataset.customer(2).customer_id
    started = time.monotonic()
    await asyncio.gather(
        _post(session, sim, {"customerId": one}),
        _post(session, sim, {"customerId": two}),
    )
    assert time.monotonic() - started >= 0.3
    assert sim.stats.overlaps == 0
    assert sim.stats.max_concurrency == 2
    await asyncio.gather(*(_post(session, sim, {"customerId": one}) for _ in range(2)))
    assert sim.stats.overlaps == 1
    assert sim.stats.overlap_customers == {one}
    assert sim.stats.as_dict()["overlap_customers"] == [str(one)]


# ----- faults ----------------------------------------------------------------------------------


async def _observe(
    sim: Simulator, session: aiohttp.ClientSession, payload: dict[str, Any], kind: str
) -> None:
    if kind == "stall":
        started = time.monotonic()
        with pytest.raises(asyncio.TimeoutError):
            await _post(session, sim, payload, timeout_s=0.2)
        assert time.monotonic() - started < 0.45
        return
    if kind == "reset":
        with pytest.raises(aiohttp.ClientConnectionError):
            await _post(session, sim, payload)
        return
    reply = await _post(session, sim, payload)
    if kind == "http500":
        assert reply.status == 500
    elif kind == "html502":
        assert reply.status == 502
        assert reply.headers["Content-Type"].startswith("text/html")
        assert b"<html>" in reply.raw
    elif kind == "truncated":
        assert reply.status == 200
        assert reply.raw.startswith(b'{"code":0')
        with pytest.raises(ValueError):
            json.loads(reply.raw)
    elif kind == "code1000":
        assert reply.json() == {"code": 1000, "message": "系统错误", "data": None}
    elif kind == "burst429":
        assert reply.status == 429
        assert reply.headers["Retry-After"] in {"0", "1"}
    else:
        raise AssertionError(kind)


@pytest.mark.parametrize("kind", FAULT_KINDS)
async def test_each_fault_kind_is_observable(
    sim: Simulator, session: aiohttp.ClientSession, dataset: SimDataset, kind: str
) -> None:
    sim.configure(**{f"fault_{kind}": 1.0})
    payload = {"customerId": dataset.customer(_heaviest(dataset)).customer_id}
    await _observe(sim, session, payload, kind)
    assert sim.stats.outcomes[kind] == 1
    assert sim.stats.as_dict()["outcomes"][kind] == 1


async def test_faults_on_one_page_stop_after_the_cap(
    sim: Simulator, session: aiohttp.ClientSession, dataset: SimDataset
) -> None:
    sim.configure(fault_http500=1.0, max_faults_per_customer_page=3)
    payload = {"customerId": dataset.customer(_heaviest(dataset)).customer_id}
    statuses = [(await _post(session, sim, payload)).status for _ in range(5)]
    assert statuses == [500, 500, 500, 200, 500]
    other_page = dict(payload, lastId=10**15)
    assert (await _post(session, sim, other_page)).status == 500


async def test_a_429_burst_hits_the_following_requests(
    sim: Simulator, session: aiohttp.ClientSession, dataset: SimDataset
) -> None:
    sim.configure(fault_burst429=1.0, burst429_length=2)
    payload = {"customerId": dataset.customer(0).customer_id}
    assert (await _post(session, sim, payload)).status == 429
    sim.configure(fault_burst429=0.0)
    statuses = [(await _post(session, sim, payload)).status for _ in range(3)]
    assert statuses == [429, 429, 200]
    assert sim.stats.outcomes["burst429"] == 3
    assert sim.stats.over_limit == 0


async def test_stop_does_not_wait_for_a_stall(dataset: SimDataset) -> None:
    simulator = Simulator(dataset, SimConfig(fault_stall=1.0, stall_s=30))
    await simulator.start()
    async with aiohttp.ClientSession() as client:
        request = asyncio.ensure_future(_post(client, simulator, {"customerId": 1}))
        await asyncio.sleep(0.2)
        started = time.monotonic()
        await simulator.stop()
        assert time.monotonic() - started < 2
        await asyncio.wait_for(asyncio.gather(request, return_exceptions=True), 5)


# ----- admin -----------------------------------------------------------------------------------


async def test_admin_endpoints(
    sim: Simulator, session: aiohttp.ClientSession, dataset: SimDataset
) -> None:
    base = sim.base_url
    await _post(session, sim, {"customerId": dataset.customer(0).customer_id})
    async with session.get(f"{base}/_sim/stats") as response:
        stats = await response.json()
    assert stats["requests_total"] == 1
    assert stats["outcomes"] == {"ok": 1}
    assert stats["generation"] == 0

    async with session.post(f"{base}/_sim/reset-stats") as response:
        assert response.status == 200
    assert sim.stats.requests_total == 0

    before = dataset.expected_mirror()
    async with session.post(f"{base}/_sim/advance", json={"new_rate": 1.0}) as response:
        assert (await response.json()) == {"generation": 1}
    assert len(dataset.expected_mirror()) > len(before)
    async with session.post(f"{base}/_sim/advance", json={"bogus": 1}) as response:
        assert response.status == 400

    async with session.post(
        f"{base}/_sim/config", json={"latency_ms": 5, "fault_code1000": 0.5, "rate_limit": None}
    ) as response:
        assert response.status == 200
        assert (await response.json())["latency_ms"] == 5
    assert sim.config.latency_ms == 5
    assert sim.config.fault_code1000 == 0.5
    for bad in ({"nope": 1}, {"latency_ms": "fast"}, {"app_id": None}):
        async with session.post(f"{base}/_sim/config", json=bad) as response:
            assert response.status == 400

    async with session.get(f"{base}/_sim/customers.csv") as response:
        text = await response.text()
    assert text.splitlines()[0] == "customer_id,user_id,external_user_id,sales_id"
    assert len(text.splitlines()) == dataset.customer_count + 1
    async with session.get(f"{base}/_sim/customers.jsonl") as response:
        lines = (await response.text()).splitlines()
    assert json.loads(lines[0])["customer_id"] == dataset.customer(0).customer_id
    async with session.get(f"{base}/_sim/expected-mirror") as response:
        mirror = await response.json()
    assert {r["id"] for r in mirror["records"]} == set(dataset.expected_mirror())
    assert sim.stats.requests_total == 0  # admin calls are not counted


# ----- the thread runner -----------------------------------------------------------------------


def test_sim_thread_serves_and_runs_calls_on_its_loop() -> None:
    dataset = SimDataset(seed=4, customers=5)
    customer = dataset.customer(0)
    with SimThread(dataset, SimConfig(app_id="a", app_key="k")) as thread:
        assert thread.base_url.startswith("http://127.0.0.1:")
        body = encode_body({"customerId": customer.customer_id})
        request = urllib.request.Request(
            thread.base_url + ENDPOINT,
            data=body,
            headers=signed_headers("a", "k", body, _now_ms()),
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            reply = json.loads(response.read())
        assert reply["data"]["totalCount"] == len(dataset.visible_records(0))
        assert thread.call(dataset.advance, new_rate=1.0) == 1
        assert thread.call(thread.sim.configure, latency_ms=1).latency_ms == 1
        assert thread.call(thread.sim.stats.as_dict)["requests_total"] == 1
        assert thread.call(thread.sim.stop) is None
    with pytest.raises(RuntimeError):
        thread.call(dataset.advance)


def test_sim_thread_reports_a_failed_start() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with (
            pytest.raises(RuntimeError, match="failed to start"),
            SimThread(SimDataset(customers=1), port=port),
        ):
            pass
