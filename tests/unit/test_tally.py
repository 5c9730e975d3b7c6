"""The tallies: one list of run counters, the columns of sync_runs of the same names."""

from __future__ import annotations

from sync.domain.tally import RECORD_ACTIONS, RUN_COUNTERS, PageCounts, RunStatus, RunTotals
from sync.mirror.models import SyncRun


def test_every_run_counter_is_a_sync_runs_column() -> None:
    columns = set(SyncRun.__table__.columns.keys())
    assert set(RUN_COUNTERS) <= columns, set(RUN_COUNTERS) - columns


def test_a_page_adds_to_the_run_under_the_record_counters() -> None:
    totals, customer = RunTotals(), PageCounts()
    page = PageCounts(inserted=3, updated=2, unchanged=1, rejected=4, deleted=5)
    totals.add_page(page)
    customer.add(page)
    customer.add(page)
    assert [getattr(totals, f"records_{a}") for a in RECORD_ACTIONS] == [3, 2, 1, 4, 5]
    assert customer == PageCounts(6, 4, 2, 8, 10)


def test_a_finished_pass_is_partial_when_anything_failed_or_was_set_aside() -> None:
    assert RunTotals().finished_status is RunStatus.OK
    assert RunTotals(customers_failed=1).finished_status is RunStatus.PARTIAL
    assert RunTotals(records_rejected=1).finished_status is RunStatus.PARTIAL
    assert RunStatus.OK.ran_to_its_end and RunStatus.PARTIAL.ran_to_its_end
    assert not RunStatus.INTERRUPTED.ran_to_its_end and not RunStatus.FAILED.ran_to_its_end


def test_a_customer_handed_back_unfinished_counts_as_neither_ok_nor_failed() -> None:
    totals = RunTotals()
    totals.add_customer(failed=False, finished=False)
    totals.add_customer(failed=True, finished=False)
    totals.add_customer(failed=False, finished=True)
    assert (totals.customers_ok, totals.customers_failed) == (1, 1)
