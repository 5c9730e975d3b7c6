"""The ``tanma-sync`` command line: a thin shell over the engine, the store and the simulator.

Exit status: 0 all done; 3 partial (customers failed or records rejected); 1 fatal
(settings, credentials, database, the API unreachable, the SQLite mirror held by another
writer); 2 usage; 130 stopped by SIGINT or SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

from sync.cli.logs import configure_logging
from sync.cli.passes import describe_report, no_such_customer, stop_on_sigterm, sync_pass
from sync.config.settings import Settings, load_settings, misspelled_settings
from sync.domain.customers import unknown_selectors
from sync.domain.customers_file import CustomerRow, CustomersFileError, read_customers
from sync.domain.errors import ConfigError, SyncError, UsageError
from sync.domain.exits import ExitCode
from sync.domain.pager import PassMode
from sync.mirror import database as db
from sync.mirror import listings, reports
from sync.mirror.demo_mark import FileKind, create_demo_database, demo_file_kind
from sync.mirror.store import MirrorStore, open_store
from sync.mirror.writer_lock import sqlite_writer_lock

# Plain (click-style) help: typer's rich panels print a type such as <bool> beside every flag,
# as if the flag took a value.
app = typer.Typer(
    help="Mirror Tanmarket (探马 SCRM) customer files into SQLite or PostgreSQL.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)
db_app = typer.Typer(
    help="The mirror database's schema.", no_args_is_help=True, rich_markup_mode=None
)
customers_app = typer.Typer(
    help="The customers whose files are mirrored.", no_args_is_help=True, rich_markup_mode=None
)
push_app = typer.Typer(
    help="Tanmarket's message push: registering the receiver, and its inbox.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(db_app, name="db")
app.add_typer(customers_app, name="customers")
app.add_typer(push_app, name="push")

# Off a terminal rich would squeeze tables into 80 columns; a pipe or a file gets full rows.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, highlight=False, soft_wrap=True)

T = TypeVar("T")
# Rows a listing shows at a terminal unless --limit says otherwise; a pipe gets every row.
TERMINAL_LIMIT = 50


class _Options:
    migrate = True


@app.callback()
def _main(
    no_migrate: Annotated[
        bool, typer.Option("--no-migrate", help="Do not apply pending migrations on start.")
    ] = False,
) -> None:
    _Options.migrate = not no_migrate


def _execute(body: Callable[[Settings], Coroutine[Any, Any, int]], **overrides: Any) -> None:
    """Load settings, run ``body``, and turn every failure into one line and an exit status."""
    try:
        settings = load_settings(**overrides)
        for warning in misspelled_settings(os.environ):
            err.print(warning, markup=False)
        configure_logging(
            settings.sync_log_format,
            settings.sync_log_level,
            secrets=[
                settings.tanma_app_key.get_secret_value(),
                settings.sync_archive_s3_secret_access_key.get_secret_value(),
                settings.sync_console_token.get_secret_value(),
                settings.sync_console_password.get_secret_value(),
            ],
        )
        code: int = asyncio.run(body(settings))
    except UsageError as exc:
        err.print(f"error: {exc}", markup=False)
        code = ExitCode.USAGE
    except SyncError as exc:
        err.print(f"error: {exc}", markup=False)
        code = ExitCode.FATAL
    except SQLAlchemyError as exc:
        err.print(f"error: database: {db.describe_db_error(exc)}", markup=False)
        code = ExitCode.FATAL
    except OSError as exc:
        err.print(f"error: {exc}", markup=False)
        code = ExitCode.FATAL
    except KeyboardInterrupt:
        err.print("interrupted", markup=False)
        code = ExitCode.INTERRUPTED
    raise typer.Exit(code)


def _store(
    settings: Settings, *, read_only: bool = False
) -> AbstractAsyncContextManager[MirrorStore]:
    return open_store(settings, migrate=_Options.migrate, read_only=read_only)


def _limit(given: int | None, fmt: reports.OutputFormat) -> int | None:
    """Rows to show: ``--limit`` (0 for all), else TERMINAL_LIMIT for a table at a terminal."""
    if given is not None:
        return given or None
    return TERMINAL_LIMIT if fmt is reports.OutputFormat.TABLE and sys.stdout.isatty() else None


def _shown(shown: int, total: int, noun: str) -> str:
    """The total line under a table: ``25 customers``, or ``50 of 20,005 customers shown``."""
    if shown >= total:
        return f"{total:,} {noun}"
    return f"{shown:,} of {total:,} {noun} shown (--limit 0 for all; --format csv for a file)"


def _print_rows(
    listing: reports.Tabular, rows: list[dict[str, Any]], fmt: reports.OutputFormat
) -> None:
    if fmt is reports.OutputFormat.TABLE:
        out.print(reports.to_table(listing, rows, out.width))
    elif fmt is reports.OutputFormat.JSON:
        _write_stdout(reports.to_json(listing, rows))
    else:
        _write_stdout(reports.to_csv(listing, rows, for_excel=fmt is reports.OutputFormat.EXCEL))


def _usage(check: Callable[[], T]) -> T:
    """``check()``, with a usage mistake it reports turned into one line and exit status 2."""
    try:
        return check()
    except reports.ReportUsageError as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(ExitCode.USAGE) from None


LimitOption = Annotated[
    int | None,
    typer.Option(
        metavar="N",
        min=0,
        help=f"Show at most N rows (0: all); default {TERMINAL_LIMIT} in a terminal, else all.",
        show_default=False,
    ),
]
FormatOption = Annotated[
    str | None,
    typer.Option(
        "--format",
        metavar="FORMAT",
        help="table, csv, json, or excel (CSV with a UTF-8 byte-order mark, for "
        "double-clicking in Excel); default: table in a terminal, csv otherwise.",
        show_default=False,
    ),
]


# -- db ------------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply pending migrations (creates the tables on a new database)."""

    async def body(settings: Settings) -> int:
        engine = db.create_engine(
            settings.sync_database_url, sqlite_busy_timeout=settings.sync_sqlite_busy_timeout
        )
        try:
            before, after = await db.upgrade(engine)
        finally:
            await engine.dispose()
        if before == after:
            out.print(f"database is up to date (revision {after})")
        else:
            out.print(f"database upgraded: {before or 'empty'} -> {after}")
        return ExitCode.OK

    _execute(body)


# -- customers -----------------------------------------------------------------------------


@customers_app.command("import")
def customers_import(
    path: Annotated[Path, typer.Argument(help="CSV with a header, or JSON Lines.")],
) -> None:
    """Add or update customers from a file; importing the same file twice changes nothing."""

    async def body(settings: Settings) -> int:
        started = time.perf_counter()
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
        try:
            parsed = read_customers(data, path.name)
        except CustomersFileError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        for note in parsed.notes:
            err.print(f"{path}: {note}", markup=False)
        async with _store(settings) as store:
            counts = await store.customers.import_rows(parsed.rows)
        skipped = sorted([*parsed.problems, *counts.conflicts], key=lambda p: p.line)
        for problem in skipped:
            err.print(f"{path}: {problem} (line skipped)", markup=False)
        out.print(
            f"{counts.added} added, {counts.updated} updated, {counts.unchanged} unchanged, "
            f"{_plural(len(skipped), 'line')} skipped in {time.perf_counter() - started:.2f}s"
        )
        return ExitCode.PARTIAL if skipped else ExitCode.OK

    _execute(body)


def _plural(n: int, noun: str) -> str:
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


@customers_app.command("add")
def customers_add(
    customer_id: Annotated[int | None, typer.Option(help="Tanmarket customer id.")] = None,
    external_user_id: Annotated[str | None, typer.Option(help="WeCom external contact id.")] = None,
    user_id: Annotated[str | None, typer.Option(help="WeCom userId of the sales person.")] = None,
    sales_id: Annotated[int | None, typer.Option(help="Tanmarket sales id.")] = None,
) -> None:
    """Add (or update) one customer."""
    if customer_id is None and external_user_id is None:
        err.print("error: give --customer-id or --external-user-id (or both)")
        raise typer.Exit(ExitCode.USAGE)
    row = CustomerRow(customer_id, user_id, external_user_id, sales_id)

    async def body(settings: Settings) -> int:
        async with _store(settings) as store:
            counts = await store.customers.import_rows([row])
        if counts.conflicts:
            err.print(f"not added: {counts.conflicts[0]}", markup=False)
            return ExitCode.PARTIAL
        out.print("added" if counts.added else "updated" if counts.updated else "unchanged")
        return ExitCode.OK

    _execute(body)


@customers_app.command("list")
def customers_list(limit: LimitOption = None, output_format: FormatOption = None) -> None:
    """List the customers, the ids each request sends for them, and their live files."""
    fmt = _usage(lambda: reports.parse_format(output_format, sys.stdout.isatty()))
    shown = _limit(limit, fmt)

    async def body(settings: Settings) -> int:
        async with _store(settings, read_only=True) as store:
            rows, total = await store.reads.customers_page(shown)
        _print_rows(listings.CUSTOMERS, rows, fmt)
        if fmt is reports.OutputFormat.TABLE:
            out.print(_shown(len(rows), total, "customers"), markup=False)
        return ExitCode.OK

    _execute(body)


@customers_app.command("discover")
def customers_discover(
    full: Annotated[
        bool,
        typer.Option("--full", help="Re-read every customer; mark those no longer listed as gone."),
    ] = False,
) -> None:
    """Find customers through Tanmarket's customer search: those created since the newest one
    held (minus SYNC_DISCOVERY_LOOKBACK), or with --full all of them."""
    from sync.cli.discovery import describe_discovery, discover_customers, discovery_exit_code

    async def body(settings: Settings) -> int:
        async with _store(settings) as store:
            report = await discover_customers(settings, store, full=full)
        for line in describe_discovery(report):
            out.print(line, markup=False)
        return discovery_exit_code(report)

    _execute(body)


# -- push ----------------------------------------------------------------------------------


@push_app.command("register")
def push_register(
    url: Annotated[str, typer.Argument(help="The public https address Tanmarket pushes to.")],
    types: Annotated[
        list[str] | None,
        typer.Option(
            "--types",
            metavar="TYPE[,TYPE]",
            help="Push types to subscribe to (repeatable or comma-separated); default: every "
            "type that names a customer.",
        ),
    ] = None,
) -> None:
    """Register URL with Tanmarket (POST /api/v2/push-register); a `register` push follows."""
    from sync.cli import push

    async def body(settings: Settings) -> int:
        address, subscription = push.check_address(url), push.subscription(types)
        lines = await push.register(settings, address, subscription)
        for line in lines:
            out.print(line, markup=False)
        return ExitCode.OK

    _execute(body)


@push_app.command("status")
def push_status() -> None:
    """The push inbox: received, processed, rejected by reason, lag to the customer's sync."""
    from sync.cli import push

    async def body(settings: Settings) -> int:
        async with _store(settings, read_only=True) as store:
            lines = await push.status_lines(store)
        for line in lines:
            out.print(line, markup=False)
        return ExitCode.OK

    _execute(body)


# -- sync ----------------------------------------------------------------------------------

CustomerOption = Annotated[
    list[str] | None,
    typer.Option(
        "--customer",
        metavar="ID",
        help="Only this customer (customer_id or external_user_id); repeatable.",
    ),
]


WaitOption = Annotated[
    bool,
    typer.Option(
        "--wait",
        help="On SQLite, wait for another pass or daemon writing the mirror to end, instead of "
        "exiting 1.",
    ),
]


@app.command()
def backfill(
    full: Annotated[
        bool,
        typer.Option("--full", help="Re-read everything; mark records gone upstream as deleted."),
    ] = False,
    customer: CustomerOption = None,
    wait: WaitOption = False,
) -> None:
    """Walk every customer's whole file list (resumes an interrupted walk)."""
    mode = PassMode.FULL if full else PassMode.BACKFILL
    _execute(lambda s: _sync(s, mode, customer or [], wait=wait))


@app.command()
def run(customer: CustomerOption = None, wait: WaitOption = False) -> None:
    """Incremental pass: fetch what is new since the last pass (one request per quiet customer)."""
    _execute(lambda s: _sync(s, PassMode.INCREMENTAL, customer or [], wait=wait))


@app.command()
def daemon(
    burst: Annotated[
        bool,
        typer.Option("--burst", help="Sync the customers due now, then exit (no schedule)."),
    ] = False,
) -> None:
    """Keep the mirror fresh: scheduled incremental sweeps, periodic full reconciles, leases
    shared with other daemons on PostgreSQL, /healthz and /metrics. Stops cleanly on SIGTERM."""
    from sync.daemon.daemon import (
        serve,  # APScheduler and prometheus-client load only for the daemon
    )

    def announce(line: str) -> None:
        out.print(line, markup=False)

    _execute(lambda s: serve(s, migrate=_Options.migrate, burst=burst, announce=announce))


async def _sync(
    settings: Settings,
    mode: PassMode,
    selectors: list[str],
    *,
    wait: bool,
    allow_mass_delete: bool = False,
) -> int:
    def waiting(holder: str) -> None:
        err.print(f"waiting: the mirror is being written by {holder}", markup=False)

    # SIGTERM (cron, systemd, Kubernetes) stops a pass as Ctrl-C does.
    with stop_on_sigterm():
        lock = sqlite_writer_lock(
            settings.sync_database_url, mode.value, wait=wait, on_wait=waiting
        )
        async with lock, _store(settings) as store:
            report = await sync_pass(
                settings, store, mode, selectors, allow_mass_delete=allow_mass_delete
            )
    out.print(describe_report(report), markup=False)
    if report.unreachable is not None:
        err.print(f"error: {report.unreachable}", markup=False)
        return ExitCode.FATAL
    if report.customers == 0:
        err.print(
            "no customers yet: find them with `tanma-sync customers discover` "
            "(or add them with `tanma-sync customers import PATH`)"
        )
    for failure in report.failures[:20]:
        err.print(f"  failed: {failure}", markup=False)
    if len(report.failures) > 20:
        err.print(f"  … and {len(report.failures) - 20} more (see `tanma-sync status`)")
    return ExitCode.PARTIAL if report.status == "partial" else ExitCode.OK


# -- status --------------------------------------------------------------------------------


@app.command()
def status(
    limit: Annotated[
        int,
        typer.Option(metavar="N", min=0, help="Show at most N customers, problems first (0: all)."),
    ] = TERMINAL_LIMIT,
    runs: Annotated[int, typer.Option(metavar="N", min=0, help="Show N recent runs.")] = 5,
    customer: Annotated[
        list[str] | None,
        typer.Option(
            "--customer",
            metavar="ID",
            help="Everything about this customer (customer_id or external_user_id), the "
            "whole last error included; repeatable.",
        ),
    ] = None,
) -> None:
    """Per-customer sync state, problems first (failing, stale, incomplete, never_synced, then
    ok: the words of `report sync_health`), and the last runs."""

    async def body(settings: Settings) -> int:
        max_staleness = int(settings.sync_max_staleness)
        async with _store(settings, read_only=True) as store:
            if customer:
                found = await store.customers.keys(customer)
                missing = unknown_selectors(customer, found)
                if missing:
                    raise UsageError(no_such_customer(missing))
                refs = [c.ref for c in found]
                detail = await store.reads.customer_status(max_staleness, None, refs)
                for row in detail:
                    _print_detail(row)
                return ExitCode.OK
            rows = await store.reads.customer_status(max_staleness, limit or None)
            states = await store.reads.state_counts(max_staleness)
            recent = await store.runs.recent(runs)
            totals = await store.reads.totals()
            never_any_file = await store.reads.never_any_file()
            coverage = await store.archive.coverage() if settings.archive_enabled else None
            stored = await store.archive.stored_objects() if settings.archive_enabled else {}
        out.print(reports.to_table(listings.STATUS, rows, out.width))
        customers = sum(states.values())
        by_state = ", ".join(
            f"{states[s.value]:,} {s.value}" for s in reports.HealthState if s.value in states
        )
        shown = f"; {len(rows):,} shown (--limit 0 for all)" if len(rows) < customers else ""
        out.print(
            f"{customers:,} customers" + (f": {by_state}" if by_state else "") + shown,
            markup=False,
        )
        out.print(reports.to_table(listings.RUNS, recent, out.width))
        out.print(
            f"{totals['customers']:,} customers, {totals['files']:,} files mirrored, "
            f"{totals['deleted']:,} marked deleted, {totals['rejected']:,} rejected records "
            "set aside",
            markup=False,
        )
        if never_any_file:
            out.print(
                f"{never_any_file} customers have returned no files on any pass: an id Tanmarket "
                "does not know answers just so (check them with `report customers_without_files`)"
            )
        if coverage is not None:
            from sync.cli.archive import describe_coverage  # obstore loads only when archiving

            out.print(describe_coverage(coverage, stored), markup=False)
        return ExitCode.OK

    _execute(body)


def _print_detail(row: dict[str, Any]) -> None:
    table = Table("", "", show_header=False, title=f"customer {row['customer']}", box=None)
    for f in listings.STATUS_DETAIL.fields:
        table.add_row(f.title, reports.cell_text(f.kind, row[f.name]))
    out.print(table)


# -- console -------------------------------------------------------------------------------


@app.command()
def console(
    host: Annotated[
        str | None, typer.Option(help="Address to listen on (SYNC_CONSOLE_HOST).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (SYNC_CONSOLE_PORT).")] = None,
) -> None:
    """Serve the read-only operator console for this mirror until Ctrl-C (the daemon serves
    the same pages under /console/ on SYNC_HTTP_LISTEN)."""
    from sync.console.serve import console_credentials, serve_console

    async def body(settings: Settings) -> int:
        credentials = console_credentials(settings)
        async with _store(settings, read_only=True) as store:
            return await serve_console(
                settings, store, credentials, lambda line: out.print(line, markup=False)
            )

    overrides: dict[str, Any] = {}
    if host is not None:
        overrides["sync_console_host"] = host
    if port is not None:
        overrides["sync_console_port"] = port
    _execute(body, **overrides)


# -- archive -------------------------------------------------------------------------------


@app.command()
def archive(
    limit: Annotated[
        int | None, typer.Option(help="Archive at most this many files (newest first).")
    ] = None,
) -> None:
    """Download every mirrored file not archived yet into SYNC_ARCHIVE_URL, content-addressed
    (sha256/<2 hex>/<64 hex>). Exit 0 when all are archived, 3 when some failed (later runs
    try them again)."""

    from sync.cli.archive import archive_pass, describe_tally  # obstore, for this command only

    async def body(settings: Settings) -> int:
        started = time.monotonic()
        async with _store(settings) as store:
            tally = await archive_pass(settings, store, limit)
        out.print(describe_tally(tally, time.monotonic() - started), markup=False)
        return ExitCode.PARTIAL if tally.failures else ExitCode.OK

    _execute(body)


# -- report --------------------------------------------------------------------------------


@app.command()
def report(
    name: Annotated[
        str | None,
        typer.Argument(
            help=f"Which report (default {reports.DEFAULT_REPORT.name}): "
            f"{', '.join(reports.REPORT_NAMES)}.",
            show_default=False,
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            help="Only files created on or after this China-local date, YYYY-MM-DD "
            "(for the file reports).",
        ),
    ] = None,
    output_format: FormatOption = None,
    limit: LimitOption = None,
) -> None:
    """Print a reporting view of the mirror (docs/schema.md describes each). A terminal table
    shows the columns that fit; CSV and JSON carry every column."""

    def parse() -> tuple[reports.Report, Any, reports.OutputFormat]:
        chosen = reports.find_report(name)
        query = reports.report_query(
            chosen, reports.parse_since(since) if since is not None else None
        )
        return chosen, query, reports.parse_format(output_format, sys.stdout.isatty())

    chosen, query, fmt = _usage(parse)
    shown = _limit(limit, fmt)

    async def body(settings: Settings) -> int:
        async with _store(settings, read_only=True) as store:
            rows, total = await store.reads.report_page(chosen, query, shown)
        _print_rows(chosen, rows, fmt)
        if fmt is reports.OutputFormat.TABLE:
            out.print(_shown(len(rows), total, "rows"), markup=False)
        return ExitCode.OK

    _execute(body)


def _write_stdout(text: str) -> None:
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader stopped early (`| head`): not an error. Point stdout at /dev/null so the
        # interpreter's last flush at exit does not complain either.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


# -- simulator and demo --------------------------------------------------------------------


@app.command()
def sim(
    host: Annotated[str, typer.Option(help="Listen address (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Listen port (0 picks a free one).")] = 8765,
    customers: Annotated[int, typer.Option(help="Customers in the generated data set.")] = 200,
    mean_files: Annotated[float, typer.Option(help="Mean files per customer.")] = 20.0,
    seed: Annotated[int, typer.Option(help="Seed of the generated data set.")] = 1,
    poison_rate: Annotated[float, typer.Option(help="Share of malformed records.")] = 0.0,
    page_size_cap: Annotated[
        int, typer.Option(help="Most records the server returns per page.")
    ] = 100,
    latency_ms: Annotated[float, typer.Option(help="Added latency per request.")] = 0.0,
    rate_limit: Annotated[float | None, typer.Option(help="Requests/s before HTTP 429.")] = None,
    app_id: Annotated[str, typer.Option(help="The app id it accepts.")] = "demo-app",
    app_key: Annotated[
        str, typer.Option(help="The app key it verifies signatures with.")
    ] = "demo-key",
    fault: Annotated[
        list[str] | None,
        typer.Option(
            metavar="KIND=P",
            help="Inject a fault, KIND=PROBABILITY (repeatable); kinds: http500, html502, "
            "truncated, code1000, burst429, stall, reset.",
        ),
    ] = None,
    push_events: Annotated[
        str,
        typer.Option(
            help="Changes that send a message push to the registered address: record, "
            "customer (comma-separated; empty for none)."
        ),
    ] = "record,customer",
    push_corp_id: Annotated[
        str, typer.Option(help="Corp id of the push cipher (default: app id before '_').")
    ] = "",
    push_bad_sign_rate: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of pushes sent with a bad sign.")
    ] = 0.0,
    push_duplicate_rate: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of pushes sent twice (same msgId).")
    ] = 0.0,
    push_replay_rate: Annotated[
        float,
        typer.Option(min=0.0, max=1.0, help="Share of pushes replayed byte for byte after."),
    ] = 0.0,
) -> None:
    """Serve a simulated Tanmarket API with generated data (for trying things out).

    \b
    Besides the API endpoint it answers, on the same address:
      GET  /_sim/customers.csv     its customers, for `tanma-sync customers import`
      GET  /_sim/customers.jsonl   the same as JSON Lines
      GET  /_sim/stats             requests served, by outcome and per customer
      POST /_sim/reset-stats       zero those counters
      GET  /_sim/config            latency, page-size cap, rate limit, faults (never the key)
      POST /_sim/config            change them: a JSON object, e.g. {"latency_ms": 50}
      POST /_sim/advance           one simulated hour: new, late, changed and deleted files
                                   (JSON: new_rate, late_rate, delete_rate, update_rate,
                                   customers)
      GET  /_sim/expected-mirror   every record a complete mirror holds now
      POST /_sim/push              a new file for a customer, and its push to the address
                                   registered through /api/v2/push-register (JSON: customer
                                   index, id_as_string)
    """
    from sync.sim import FAULT_KINDS, SimConfig, SimDataset, Simulator

    faults: dict[str, Any] = {}
    for item in fault or []:
        kind, _, probability = item.partition("=")
        try:
            value = float(probability)
        except ValueError:
            value = -1.0
        if kind not in FAULT_KINDS or not 0.0 <= value <= 1.0:
            err.print(
                f"error: --fault {item!r}: write KIND=P with P from 0 to 1 and KIND one of "
                f"{', '.join(FAULT_KINDS)}",
                markup=False,
            )
            raise typer.Exit(ExitCode.USAGE)
        faults[f"fault_{kind}"] = value

    async def serve() -> None:
        dataset = SimDataset(
            seed=seed, customers=customers, mean_files=mean_files, poison_rate=poison_rate
        )
        config = SimConfig(
            app_id=app_id,
            app_key=app_key,
            page_size_cap=page_size_cap,
            latency_ms=latency_ms,
            rate_limit=rate_limit,
            push_events=push_events,
            push_corp_id=push_corp_id,
            push_bad_sign_rate=push_bad_sign_rate,
            push_duplicate_rate=push_duplicate_rate,
            push_replay_rate=push_replay_rate,
            **faults,
        )
        simulator = Simulator(dataset, config)
        base_url = await simulator.start(host, port)
        out.print(f"simulator listening on {base_url} ({customers} customers)")
        # The key is never printed, not even the simulator's own: people paste these lines.
        out.print(
            f"  TANMA_BASE_URL={base_url} TANMA_APP_ID={app_id} "
            "TANMA_APP_KEY=(the key given to --app-key)",
            markup=False,
        )
        out.print(f"  customers file: {base_url}/_sim/customers.csv   stats: {base_url}/_sim/stats")
        try:
            await asyncio.Event().wait()
        finally:
            await simulator.stop()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        err.print(f"error: cannot listen on {host}:{port}: {exc.strerror}", markup=False)
        raise typer.Exit(ExitCode.FATAL) from None


@app.command()
def demo(
    database: Annotated[
        Path, typer.Option(help="SQLite file to mirror into (recreated on every demo run).")
    ] = Path("tanma_demo.db"),
    customers: Annotated[int, typer.Option(help="Customers in the demo data set.")] = 300,
    force: Annotated[
        bool,
        typer.Option("--force", help="Recreate --database even if the demo did not make it."),
    ] = False,
) -> None:
    """Start the simulator, discover its customers, backfill, then run an incremental pass."""
    from sync.cli.demo import run_demo

    if demo_file_kind(database) is FileKind.OTHER and not force:
        err.print(
            f"error: {database} exists and was not made by `tanma-sync demo`, so it is left "
            "alone (choose another --database, or pass --force to replace it)",
            markup=False,
        )
        raise typer.Exit(ExitCode.FATAL)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    try:
        create_demo_database(database)
    except (OSError, sqlite3.Error) as exc:
        err.print(f"error: cannot create {database}: {exc}", markup=False)
        raise typer.Exit(ExitCode.FATAL) from None
    _execute(
        lambda s: run_demo(s, customers, out),
        sync_database_url=f"sqlite:///{database}",
        tanma_app_id="demo-app",
        tanma_app_key="demo-key",
        tanma_base_url="http://127.0.0.1",  # replaced by the simulator's address
        sync_rate_limit=2000,
        sync_concurrency=8,
    )


# `tanma-sync customer …` (sync/cli/customer.py) is built on this module's shell (_execute,
# _store, _sync), so it is imported once they exist.
from sync.cli.customer import customer_app  # noqa: E402

app.add_typer(customer_app, name="customer")


def main() -> None:
    try:
        app()
    except SystemExit:
        raise
    except KeyboardInterrupt:  # Ctrl-C before a command's own handling began
        print("interrupted", file=sys.stderr)
        sys.exit(ExitCode.INTERRUPTED)
    except Exception as exc:  # the last line of defence: one line, never a trace
        print(f"error: internal error ({type(exc).__name__}: {exc})", file=sys.stderr)
        sys.exit(ExitCode.FATAL)
