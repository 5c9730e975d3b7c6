"""The reliability suite: crashes, faults, skewed clocks, database outages, hostile input and
secrets, on SQLite and PostgreSQL, with figures.

Size: the default run is sized for CI (a few minutes on two cores). ``TANMA_SOAK=1`` in the
environment, or ``pytest tests/reliability --soak``, makes every part several times bigger for a
manual run. Randomness: one seed for the whole run, printed in the header and in the figures
file; ``TANMA_RELIABILITY_SEED=N`` repeats a run's choices (kill instants, commands, data sets,
fault draws, hypothesis examples). Kill instants land where the operating system's timing puts
them, so a repeat is the same plan, not the same interleaving.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import drop_database_url, new_database_url
from tests.reliability.figures import Figures

_SEED_ENV = "TANMA_RELIABILITY_SEED"


def _env_seed() -> int:
    given = os.environ.get(_SEED_ENV, "").strip()
    if given:
        if not given.isdecimal():
            raise pytest.UsageError(f"{_SEED_ENV} must be a non-negative integer, got {given!r}")
        return int(given)
    return random.SystemRandom().randrange(10**9)


SEED = _env_seed()


@dataclass(frozen=True)
class Scale:
    """How big each part of the suite is: CI size by default, much bigger in a soak."""

    soak: bool
    kills_per_backend: int  # landed SIGKILLs each database must survive
    kill_customers: int
    fault_customers: int
    fault_mean_files: float
    property_examples: int  # hypothesis examples per pure property
    store_examples: int  # hypothesis examples per database property (each one a transaction)
    poison_customers: int


CI = Scale(
    soak=False,
    kills_per_backend=25,
    kill_customers=40,
    fault_customers=24,
    fault_mean_files=12,
    property_examples=400,
    store_examples=120,
    poison_customers=40,
)
SOAK = Scale(
    soak=True,
    kills_per_backend=200,
    kill_customers=150,
    fault_customers=150,
    fault_mean_files=20,
    property_examples=5000,
    store_examples=1500,
    poison_customers=400,
)


def _soak_wanted(config: pytest.Config) -> bool:
    flag = os.environ.get("TANMA_SOAK", "").strip().lower() not in ("", "0", "false", "no")
    return flag or bool(config.getoption("--soak", default=False))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--soak",
        action="store_true",
        default=False,
        help="reliability suite: run the long soak instead of the CI size (same as TANMA_SOAK=1)",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if item.path.is_relative_to(here):
            item.add_marker(pytest.mark.reliability)


def pytest_report_header(config: pytest.Config) -> str:
    size = "soak" if _soak_wanted(config) else "CI size"
    return f"reliability: seed {SEED} ({size}); repeat with {_SEED_ENV}={SEED}"


_figures: Figures | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _figures
    _figures = Figures(SEED, _soak_wanted(config))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if _figures is None or "tests/reliability/" not in report.nodeid:
        return
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        _figures.outcome(report.nodeid.split("::", 1)[-1], report.outcome, report.duration)


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _figures is not None and _figures.outcomes:
        path = _figures.write()
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"reliability figures (seed {SEED}) written to {path}")


@pytest.fixture(scope="session")
def scale(pytestconfig: pytest.Config) -> Scale:
    return SOAK if _soak_wanted(pytestconfig) else CI


@pytest.fixture
def figures() -> Figures:
    assert _figures is not None
    return _figures


@pytest.fixture
def case_name(request: pytest.FixtureRequest) -> str:
    """The test's name with its backend, as the figures file keys it."""
    return request.node.name


@pytest.fixture
def rng(case_name: str) -> random.Random:
    """This test's own stream from the run's seed, so adding a test changes no other test."""
    return random.Random(f"{SEED}:{case_name}")


@pytest.fixture
def pg_url(tmp_path: Path) -> Iterator[str]:
    """A fresh PostgreSQL database of its own, for tests that only make sense there."""
    url = new_database_url("postgresql", tmp_path)
    yield url
    drop_database_url(url)
