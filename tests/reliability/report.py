"""Render the figures of the last reliability run as the guarantees table of
docs/reliability.md.

    python -m tests.reliability.report            # print the table
    python -m tests.reliability.report --write    # replace the table in docs/reliability.md

The table sits between two marker comments in the document; everything else there is prose.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.reliability.figures import FIGURES_FILE

DOC = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"
START, END = "<!-- figures:start -->", "<!-- figures:end -->"

Figures = dict[str, Any]


def _per_backend(run: Figures, test: str, key: str) -> str:
    """``key`` of ``test`` as "sqlite N, postgresql M" (or the one value of a backend-free test)."""
    shown = []
    for name, values in sorted(run["tests"].items()):
        if name == test or name.startswith(f"{test}["):
            backend = name[len(test) :].strip("[]").split("-")[0] or "—"
            if key in values:
                shown.append(f"{backend} {values[key]}" if backend != "—" else str(values[key]))
    return ", ".join(shown) or "not run"


def _total(run: Figures, key: str) -> int:
    return int(run["totals"].get(key, 0))


def _kinds(run: Figures, table: str) -> str:
    counts = run["by_kind"].get(table, {})
    return ", ".join(f"{kind} {n}" for kind, n in counts.items()) or "none"


def _outcome(run: Figures, test: str) -> str:
    results = [
        values.get("outcome", "?")
        for name, values in run["tests"].items()
        if name == test or name.startswith(f"{test}[")
    ]
    if not results:
        return "not run"
    return "passed" if all(r == "passed" for r in results) else "/".join(sorted(set(results)))


def _daemon_outage(run: Figures) -> str:
    values = run["tests"].get("test_database_outage_while_the_lease_feed_works", {})
    if "daemon_warnings" not in values:
        return _outcome(run, "test_database_outage_while_the_lease_feed_works")
    return (
        f"{values['daemon_warnings']} warning/error lines ({values['daemon_warning_events']}); "
        + _outcome(run, "test_database_outage_while_the_lease_feed_works")
    )


def _lock_timeout(run: Figures) -> str:
    values = run["tests"].get("test_sqlite_held_past_the_busy_timeout_is_a_clear_error", {})
    if "waited_s" not in values:
        return ""
    return f" (gave up after {values['waited_s']} s, timeout {values['sqlite_busy_timeout_s']} s)"


# (guarantee, test module::name, what the last run measured)
Row = tuple[str, str, Callable[[Figures], str]]

ROWS: list[Row] = [
    (
        "A SIGKILL at any instant loses and duplicates nothing: after every kill each mirrored "
        "row is a true upstream record, once, and no record lies unmirrored deeper than the "
        "lookback below a high-water mark; one uninterrupted `run` then leaves the mirror exact "
        "and every customer settled (no open pass, mark = newest record, no error), and no "
        "run is left `running`: each killed process's run is closed as `abandoned`",
        "test_crash_kills.py::test_sigkill_at_random_instants_loses_and_duplicates_nothing",
        lambda r: (
            f"kills landed {_total(r, 'kills_landed')} ("
            + _per_backend(
                r, "test_sigkill_at_random_instants_loses_and_duplicates_nothing", "kills_landed"
            )
            + f"), {_total(r, 'kills_mid_pass')} of them mid-pass; by command: "
            f"{_kinds(r, 'kills_by_command')}; rows checked {_total(r, 'kill_rows_checked')}, "
            f"lost {_total(r, 'rows_lost')}, duplicated {_total(r, 'rows_duplicated')}, "
            f"wrong {_total(r, 'rows_wrong')}; runs closed as abandoned "
            f"{_total(r, 'runs_abandoned')}, left running {_total(r, 'runs_left_running')}"
        ),
    ),
    (
        "Every fault the simulator injects, all at once, loses nothing; retries stay within "
        "(SYNC_MAX_ATTEMPTS − 1) × pages and within the server's cap per page; the client sees "
        "each fault as what it is",
        "test_fault_soak.py::test_all_faults_at_once_lose_nothing_and_stay_in_bounds",
        lambda r: (
            f"faults injected {_total(r, 'faults_injected')} ({_kinds(r, 'faults_by_kind')}); "
            f"requests {_total(r, 'fault_requests')} for {_total(r, 'fault_pages')} pages; "
            f"retries {_total(r, 'retries')} (bound {_total(r, 'retry_bound')})"
        ),
    ),
    (
        "The rate limit holds at the server's door: zero requests above SYNC_RATE_LIMIT "
        "(10/s, a server bucket of SYNC_RATE_BURST + 1 = 4); the counter is live (a client paced "
        "at 3× the limit trips it)",
        "test_fault_soak.py (both tests)",
        lambda r: (
            f"over the limit: {_total(r, 'over_limit')}; when the limit is ignored: "
            + _per_backend(
                r,
                "test_the_over_limit_counter_sees_a_client_that_ignores_the_limit",
                "over_limit_when_ignored",
            )
        ),
    ),
    (
        "A clock 10 minutes off (either way) costs exactly one 1003 per run, corrected from the "
        "Date header, whatever the concurrency",
        "test_clock_skew.py",
        lambda r: (
            f"1003 answers {_total(r, 'clock_1003_answers')} in {_total(r, 'clock_runs')} runs; "
            "concurrent first requests: "
            + _outcome(r, "test_concurrent_first_requests_wait_for_the_clock")
        ),
    ),
    (
        "PostgreSQL connections killed mid-pass (pg_terminate_backend): customers fail or the "
        "run stops with one clear line; nothing corrupted; the next pass is exact",
        "test_database_faults.py::test_postgres_connections_killed_mid_pass",
        lambda r: (
            f"backends terminated {_total(r, 'pg_backends_terminated')}; first pass: "
            + _per_backend(r, "test_postgres_connections_killed_mid_pass", "first_pass")
        ),
    ),
    (
        "Every PostgreSQL connection killed at once as a page commits (a restart, a "
        "failover): the write is retried in place (`database_retry`), the pass ends ok with "
        "every customer synced and the mirror exact",
        "test_database_faults.py::test_postgres_connections_killed_once_mid_pass_cost_nothing",
        lambda r: (
            f"in-place retries {_total(r, 'db_retries')}; pass: "
            + _outcome(r, "test_postgres_connections_killed_once_mid_pass_cost_nothing")
        ),
    ),
    (
        "The database unreachable mid-pass until the CLI gives up (proxy cut, then restored): "
        "one line naming the database, no trace; the next backfill is exact",
        "test_database_faults.py::test_database_unreachable_mid_pass_through_the_cli",
        lambda r: (
            f"outages {_total(r, 'db_outages')}; exit status during the outage: "
            + _per_backend(
                r,
                "test_database_unreachable_mid_pass_through_the_cli",
                "exit_status_during_outage",
            )
        ),
    ),
    (
        "The daemon's database unreachable for 4.75 s (past a page write's retries), again and "
        "again, while its lease feed claims, finishes and hands back customers (PostgreSQL, "
        "proxy cut and restored): one line per event, no trace, no crash; the next sweep "
        "completes; no lease left held and no run left `running` when it stops",
        "test_daemon_database_outage.py",
        lambda r: f"outages {_total(r, 'daemon_db_outages')}; " + _daemon_outage(r),
    ),
    (
        "SQLite held by another writer (BEGIN EXCLUSIVE): the pass waits and completes; past "
        "SYNC_SQLITE_BUSY_TIMEOUT (2 s in CI, the default 30 s in soaks), one line saying the "
        "database is locked",
        "test_database_faults.py (two SQLite tests)",
        lambda r: (
            f"waited out {_total(r, 'sqlite_lock_waits')} lock(s); timeout case: "
            + _outcome(r, "test_sqlite_held_past_the_busy_timeout_is_a_clear_error")
            + _lock_timeout(r)
        ),
    ),
    (
        "Any record, response body or page sequence ends stored, set aside with a reason, or "
        "as an error for that customer; never an unhandled exception; the pager always moves "
        "down or stops; what the parser keeps fits both databases",
        "test_bad_input.py (4 hypothesis properties) and test_sim_faults.py",
        lambda r: (
            f"inputs generated {_total(r, 'inputs_generated')} (parser "
            + _per_backend(
                r, "test_the_record_parser_stores_or_rejects_every_input", "inputs_generated"
            )
            + ", classifier "
            + _per_backend(r, "test_the_response_classifier_answers_every_body", "inputs_generated")
            + ", pager "
            + _per_backend(
                r, "test_the_pager_moves_down_or_stops_on_any_server", "inputs_generated"
            )
            + ", pages into the database "
            + _per_backend(
                r, "test_hostile_pages_are_stored_or_set_aside_in_the_database", "inputs_generated"
            )
            + f" holding {_total(r, 'records_generated')} records, fault policy "
            + _per_backend(
                r, "test_no_page_sees_more_faults_in_a_row_than_the_cap", "inputs_generated"
            )
            + ")"
        ),
    ),
    (
        "Poison served by the simulator (every kind) through the engine: no customer fails, "
        "usable records mirrored exactly, the rest set aside once each",
        "test_bad_input.py::test_poison_served_by_the_simulator_through_the_engine",
        lambda r: (
            f"poison served {_total(r, 'poison_records_served')} ({_kinds(r, 'poison_by_kind')}); "
            f"set aside {_total(r, 'poison_set_aside')}; customers failed "
            f"{_total(r, 'poison_customers_failed')}"
        ),
    ),
    (
        "The app key is in no output, log line, error, `status` table or database row (clean, "
        "faulty and rejected-key runs); a planted key is found",
        "test_security.py::test_the_app_key_is_in_no_output_log_error_or_row, "
        "::test_the_key_scan_finds_a_planted_key",
        lambda r: (
            f"places scanned {_total(r, 'key_scan_places')} ({_total(r, 'key_scan_chars'):,} "
            f"characters), key found 0 times; planted key found in "
            f"{_total(r, 'key_scan_planted_found')} places"
        ),
    ),
    (
        "TLS is verified by default (self-signed server refused with a line naming "
        "TANMA_CA_BUNDLE; host name checked); TANMA_CA_BUNDLE adds to the system trust store",
        "test_security.py (4 TLS tests)",
        lambda r: (
            "refused untrusted: "
            + _outcome(r, "test_tls_is_verified_by_default")
            + "; host name: "
            + _outcome(r, "test_tls_checks_the_host_name")
            + "; bundle + system store: "
            + _outcome(r, "test_the_ca_bundle_adds_to_the_system_trust_store")
            + "; through the CLI: "
            + _outcome(r, "test_tls_through_the_cli")
        ),
    ),
    (
        "Answers above SYNC_MAX_RESPONSE_BYTES are refused: announced, chunked or gzip-bombed",
        "test_security.py::test_an_answer_above_the_size_limit_is_refused",
        lambda r: _outcome(r, "test_an_answer_above_the_size_limit_is_refused"),
    ),
    (
        "Every SQL statement binds its parameters: no record value appears in any statement "
        "text of a full sync (the check catches a planted literal)",
        "test_security.py::test_every_statement_binds_its_parameters",
        lambda r: (
            f"statements checked {_total(r, 'sql_statements_checked')} against "
            f"{_total(r, 'sql_values_checked')} record values; literals found 0"
        ),
    ),
    (
        "`.env` (and the figures file) are git-ignored and not tracked",
        "test_security.py::test_the_settings_file_and_the_figures_are_never_committed",
        lambda r: _outcome(r, "test_the_settings_file_and_the_figures_are_never_committed"),
    ),
]


def render(run: Figures) -> str:
    lines = [
        f"Last run: {run['started']}, seed {run['seed']} ("
        f"{'soak' if run['soak'] else 'CI size'}), {run['machine']}; "
        f"{run['test_seconds']} s of tests on both databases.",
        "",
        "| guarantee | checked by (tests/reliability/) | last run |",
        "|---|---|---|",
    ]
    for guarantee, test, measured in ROWS:
        lines.append(f"| {guarantee} | `{test}` | {measured(run)} |")
    lines += [
        "",
        f"Rows lost: **{_total(run, 'rows_lost')}**. Rows duplicated: "
        f"**{_total(run, 'rows_duplicated')}**. Tests: "
        f"{sum(v.get('outcome') == 'passed' for v in run['tests'].values())} passed, "
        f"{sum(v.get('outcome') == 'failed' for v in run['tests'].values())} failed, "
        f"{sum(v.get('outcome') == 'skipped' for v in run['tests'].values())} skipped.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--figures", type=Path, default=FIGURES_FILE)
    parser.add_argument("--write", action="store_true", help=f"replace the table in {DOC}")
    args = parser.parse_args(argv)
    if not args.figures.is_file():
        print(f"no figures at {args.figures}: run pytest tests/reliability first", file=sys.stderr)
        return 1
    table = render(json.loads(args.figures.read_text("utf-8")))
    if not args.write:
        print(table)
        return 0
    doc = DOC.read_text("utf-8")
    if START not in doc or END not in doc:
        print(f"{DOC} has no {START} … {END} markers", file=sys.stderr)
        return 1
    head, rest = doc.split(START, 1)
    tail = rest.split(END, 1)[1]
    DOC.write_text(f"{head}{START}\n{table}\n{END}{tail}", "utf-8")
    print(f"updated {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
