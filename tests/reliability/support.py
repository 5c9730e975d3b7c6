"""Small pieces the reliability tests share."""

from __future__ import annotations

from sync.domain.customers_file import parse_customers
from sync.mirror.store import MirrorStore
from sync.sim import SimDataset


async def import_customers(store: MirrorStore, dataset: SimDataset) -> int:
    """Every customer of the data set, through the same parser the CLI uses."""
    rows, problems = parse_customers(dataset.customers_csv().encode(), "customers.csv")
    assert not problems, problems
    counts = await store.customers.import_rows(rows)
    return counts.added
