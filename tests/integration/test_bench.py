"""The benchmark harness stays runnable: the simulator's pre-built pages are served correctly,
and ``python -m bench --quick`` runs end to end at tiny sizes (no figure is asserted here;
speed goals live in bench/ and BENCHMARKS.md, never in tests)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from sync.api.signing import encode_body, signed_headers
from sync.sim import ENDPOINT, SimConfig, SimDataset, Simulator

APP_ID, APP_KEY = "bench-test", "bench-test-key"
ROOT = Path(__file__).resolve().parents[2]


async def _page(session: aiohttp.ClientSession, url: str, customer_id: int) -> bytes:
    body = encode_body({"customerId": customer_id, "pageSize": 100})
    headers = signed_headers(APP_ID, APP_KEY, body, int(time.time() * 1000))
    async with session.post(url + ENDPOINT, data=body, headers=headers) as response:
        assert response.status == 200
        return await response.read()


async def test_prebuilt_pages_are_the_encoded_pages_until_the_customer_changes() -> None:
    dataset = SimDataset(seed=4, customers=3, mean_files=5)
    customer = dataset.customer(1)
    plain = Simulator(dataset, SimConfig(app_id=APP_ID, app_key=APP_KEY))
    cached = Simulator(dataset, SimConfig(app_id=APP_ID, app_key=APP_KEY, prebuilt_pages=True))
    plain_url, cached_url = await plain.start(), await cached.start()
    try:
        async with aiohttp.ClientSession() as session:
            first = await _page(session, cached_url, customer.customer_id)
            assert first == await _page(session, plain_url, customer.customer_id)
            assert first == await _page(session, cached_url, customer.customer_id)
            added = dataset.add_record(1)
            changed = await _page(session, cached_url, customer.customer_id)
            assert changed == await _page(session, plain_url, customer.customer_id)
            assert json.loads(changed)["data"]["result"][0]["id"] == added["id"]
    finally:
        await plain.stop()
        await cached.stop()


def test_the_quick_benchmark_runs_end_to_end() -> None:
    pytest.importorskip(
        "orjson", reason="the bench extra is not installed (pip install -e '.[bench]')"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--quick",
            "--only=ceiling",
            "--only=throughput",
            "--only=budget",
            "--only=memory",
            "--customers=8",
            "--budget-customers=20",
            "--memory-customers",
            "10",
            "20",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for line in ("tool / raw pipeline (sqlite)", "requests per unchanged customer", "peak RSS"):
        assert line in done.stdout
