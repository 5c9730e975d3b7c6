"""The HTTP proxy named by the environment (HTTP_PROXY / HTTPS_PROXY, NO_PROXY) carries the
API requests; it is looked up once per client, not per request (aiohttp's trust_env did that in
a worker thread every time)."""

from __future__ import annotations

import asyncio

import pytest

from sync.api.client import TanmaClient, proxy_from_environment
from sync.domain.customers import CustomerKey
from sync.sim import SimDataset
from tests.helpers import make_settings
from tests.reliability.tcp_proxy import TcpProxy

PROXY_VARIABLES = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy")


@pytest.fixture(autouse=True)
def clean_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


async def fetch_every_customer(base_url: str, tmp_path, dataset: SimDataset) -> int:
    settings = make_settings(base_url, f"sqlite:///{tmp_path / 'unused.db'}")
    keys = [
        CustomerKey(i, c.customer_id, None, None, None)
        for i, c in enumerate(dataset.iter_customers())
    ]
    async with TanmaClient(settings) as client:
        pages = await asyncio.gather(*(client.list_files(key, None, 50) for key in keys))
    return sum(len(page.items) for page in pages)


@pytest.mark.parametrize("exempt", [False, True], ids=["proxied", "no-proxy"])
async def test_requests_take_the_proxy_the_environment_names_unless_exempt(
    sim_factory, tmp_path, monkeypatch: pytest.MonkeyPatch, exempt: bool
) -> None:
    dataset = SimDataset(seed=61, customers=6, mean_files=4)
    sim = sim_factory(dataset)
    host, port = sim.base_url.removeprefix("http://").split(":")
    with TcpProxy(host, int(port)) as relay:
        monkeypatch.setenv("HTTP_PROXY", f"http://{relay.url_host_port}")
        if exempt:
            monkeypatch.setenv("NO_PROXY", host)
        fetched = await fetch_every_customer(sim.base_url, tmp_path, dataset)
        assert (relay.connections == 0) if exempt else (relay.connections >= 1)
    assert fetched == sum(len(dataset.visible_records(i)) for i in range(6))


def test_the_proxy_look_up_follows_the_scheme_and_keeps_credentials_out_of_the_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://user:secret@proxy.example:3128")
    proxy, auth = proxy_from_environment("https://open.tanmarket.example/api/v3/x")
    assert str(proxy) == "http://proxy.example:3128"
    assert auth is not None and (auth.login, auth.password) == ("user", "secret")
    assert proxy_from_environment("http://open.tanmarket.example/api") == (None, None)
