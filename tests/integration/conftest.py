"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from sync.sim import SimConfig, SimDataset, Simulator
from tests.helpers import APP_ID, APP_KEY, StartSim


@pytest.fixture
async def start_sim() -> AsyncIterator[StartSim]:
    """Starts simulators on loopback ports for one test and stops them after it."""
    running: list[Simulator] = []

    async def start(dataset: SimDataset, **config: Any) -> tuple[Simulator, str]:
        simulator = Simulator(dataset, SimConfig(app_id=APP_ID, app_key=APP_KEY, **config))
        url = await simulator.start("127.0.0.1", 0)
        running.append(simulator)
        return simulator, url

    yield start
    for simulator in running:
        await simulator.stop()
