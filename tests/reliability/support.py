"""Small pieces the reliability tests share."""

from __future__ import annotations

from sync.customers_file import parse_customers
from sync.sim import SimDataset
from sync.store import MirrorStore


async def import_customers(store: MirrorStore, dataset: SimDataset) -> int:
    """Every customer of the data set, through the same parser the CLI uses."""
    rows, problems = parse_customers(dataset.customers_csv().encode(), "customers.csv")
    assert not problems, problems
    counts = await store.import_customers(rows)
    return counts.added
