"""The simulator's fault policy keeps its promise: after ``cap`` faults in a row on one page the
page is served, whatever mix of faults is drawn, 429 bursts included. The fault soak's retry
bound (at most ``cap`` failed attempts per page) rests on this."""

from __future__ import annotations

from collections import Counter

from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from sync.api.client import TanmaClient
from sync.domain.customers import CustomerKey
from sync.domain.errors import TransientError
from sync.sim import FAULT_KINDS, FaultPolicy, SimDataset
from tests.helpers import make_settings
from tests.reliability.conftest import SEED, Scale
from tests.reliability.figures import Figures


async def test_a_429_burst_counts_towards_the_cap_of_the_page_it_hits(
    sim_factory, tmp_path
) -> None:
    """Burst 429s count towards the fault cap of the page they hit, like every other fault: under
    a cap of three, the fourth attempt at a page is always served, however often it is asked."""
    dataset = SimDataset(seed=51, customers=1, mean_files=5)
    sim = sim_factory(
        dataset, fault_burst429=1.0, burst429_length=3, max_faults_per_customer_page=3
    )
    settings = make_settings(
        sim.base_url, f"sqlite:///{tmp_path / 'unused.db'}", sync_max_attempts=1
    )
    key = CustomerKey(1, dataset.customer(0).customer_id, None, None, None)
    answers = []
    async with TanmaClient(settings) as client:
        for _ in range(12):
            try:
                await client.list_files(key, None, 10)
                answers.append("page")
            except TransientError:
                answers.append("429")
    assert answers == (["429"] * 3 + ["page"]) * 3


def test_no_page_sees_more_faults_in_a_row_than_the_cap(
    scale: Scale, figures: Figures, case_name: str
) -> None:
    examples = 0

    @seed(SEED)
    @settings(
        max_examples=scale.property_examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(
        st.dictionaries(st.sampled_from(FAULT_KINDS), st.floats(0, 1)),
        st.integers(1, 6),
        st.integers(0, 6),
        st.integers(0, 2**32),
        st.lists(st.integers(0, 3), min_size=1, max_size=300),
    )
    def check(
        weights: dict[str, float], cap: int, burst: int, fault_seed: int, pages: list[int]
    ) -> None:
        nonlocal examples
        examples += 1
        total = sum(weights.values())
        probabilities = {k: v / total for k, v in weights.items()} if total > 1 else weights
        policy = FaultPolicy(probabilities, seed=fault_seed, cap=cap, burst_length=burst)
        streak: Counter[int] = Counter()
        for page in pages:
            fault = policy.choose(page)
            if fault is None:
                streak[page] = 0
                continue
            assert fault in FAULT_KINDS
            streak[page] += 1
            assert streak[page] <= cap, (page, streak[page], cap)

    check()
    figures.add(case_name, inputs_generated=examples)
