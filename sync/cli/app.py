"""The ``tanma-sync`` command line: a thin shell over the engine, the store and the simulator.

Exit status: 0 all done; 3 partial (customers failed or records rejected); 1 fatal
(settings, credentials, database); 2 usage.
"""

from __future__ import annotations

import asyncio
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
from sync.cli.passes import describe_report, sync_pass
from sync.config.settings import Settings, load_settings
from sync.domain.chinatime import format_china_time
from sync.domain.customers import customer_label
from sync.domain.customers_file import CustomerRow, CustomersFileError, parse_customers
from sync.domain.errors import ConfigError, SyncError
from sync.domain.exits import ExitCode
from sync.domain.pager import CustomerCursor, PassMode
from sync.mirror import database as db
from sync.mirror import reports
from sync.mirror.store import MirrorStore, open_store

app = typer.Typer(
    help="Mirror Tanmarket (探马 SCRM) customer files into SQLite or PostgreSQL.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
db_app = typer.Typer(help="The mirror database's schema.", no_args_is_help=True)
customers_app = typer.Typer(help="The customers whose files are mirrored.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(customers_app, name="customers")

# Off a terminal rich would squeeze tables into 80 columns; a pipe or a file gets full rows.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, highlight=False, soft_wrap=True)

T = TypeVar("T")


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
        configure_logging(
            settings.sync_log_format,
            settings.sync_log_level,
            secrets=[
                settings.tanma_app_key.get_secret_value(),
                settings.sync_archive_s3_secret_access_key.get_secret_value(),
            ],
        )
        code: int = asyncio.run(body(settings))
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


def _store(settings: Settings) -> AbstractAsyncContextManager[MirrorStore]:
    return open_store(settings, migrate=_Options.migrate)


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
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
        try:
            rows, problems = parse_customers(data, path.name)
        except CustomersFileError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        async with _store(settings) as store:
            counts = await store.customers.import_rows(rows)
        skipped = sorted([*problems, *counts.conflicts], key=lambda p: p.line)
        for problem in skipped:
            err.print(f"{path}: {problem} (line skipped)", markup=False)
        out.print(
            f"{counts.added} added, {counts.updated} updated, {counts.unchanged} unchanged, "
            f"{len(skipped)} lines skipped"
        )
        return ExitCode.PARTIAL if skipped else ExitCode.OK

    _execute(body)


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
def customers_list() -> None:
    """List the customers and the ids each request sends for them."""

    async def body(settings: Settings) -> int:
        async with _store(settings) as store:
            rows = await store.customers.keys()
        table = Table("customer_id", "external_user_id", "user_id", "sales_id")
        for c in rows:
            table.add_row(
                *(
                    str(v) if v is not None else ""
                    for v in (c.customer_id, c.external_user_id, c.user_id, c.sales_id)
                )
            )
        out.print(table)
        out.print(f"{len(rows)} customers")
        return ExitCode.OK

    _execute(body)


# -- sync ----------------------------------------------------------------------------------

CustomerOption = Annotated[
    list[str] | None,
    typer.Option(
        "--customer", help="Only this customer (customer_id or external_user_id); repeatable."
    ),
]


@app.command()
def backfill(
    full: Annotated[
        bool,
        typer.Option("--full", help="Re-read everything; mark records gone upstream as deleted."),
    ] = False,
    customer: CustomerOption = None,
) -> None:
    """Walk every customer's whole file list (resumes an interrupted walk)."""
    _execute(lambda s: _sync(s, PassMode.FULL if full else PassMode.BACKFILL, customer or []))


@app.command()
def run(customer: CustomerOption = None) -> None:
    """Incremental pass: fetch what is new since the last pass (one request per quiet customer)."""
    _execute(lambda s: _sync(s, PassMode.INCREMENTAL, customer or []))


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

    _execute(lambda s: serve(s, migrate=_Options.migrate, burst=burst))


async def _sync(settings: Settings, mode: PassMode, selectors: list[str]) -> int:
    async with _store(settings) as store:
        report = await sync_pass(settings, store, mode, selectors)
    out.print(describe_report(report), markup=False)
    if report.customers == 0:
        err.print("no customers yet: add them with `tanma-sync customers import PATH`")
    for failure in report.failures[:20]:
        err.print(f"  failed: {failure}", markup=False)
    if len(report.failures) > 20:
        err.print(f"  … and {len(report.failures) - 20} more (see `tanma-sync status`)")
    return ExitCode.PARTIAL if report.status == "partial" else ExitCode.OK


# -- status --------------------------------------------------------------------------------


@app.command()
def status(
    limit: Annotated[int, typer.Option(help="Show at most this many customers.")] = 50,
    runs: Annotated[int, typer.Option(help="Show this many recent runs.")] = 5,
) -> None:
    """Per-customer sync state and the last runs."""

    async def body(settings: Settings) -> int:
        async with _store(settings) as store:
            customers = await store.reads.customer_status(limit)
            recent = await store.runs.recent(runs)
            totals = await store.reads.totals()
            coverage = await store.archive.coverage() if settings.archive_enabled else None
            stored = await store.archive.stored_objects() if settings.archive_enabled else {}
        table = Table(
            "customer",
            "files",
            "newest file (UTC+8)",
            "state",
            "last success",
            "last error",
            title="customers",
        )
        for row in customers:
            in_pass = CustomerCursor(pass_started_at=row["pass_started_at"]).in_pass
            state = (
                "syncing (resumes)"
                if in_pass
                else "complete"
                if row["high_water_id"]
                else "never synced"
                if not row["last_success_at"]
                else "complete (empty)"
            )
            table.add_row(
                customer_label(row["customer_id"], row["external_user_id"]),
                str(row["files"]),
                format_china_time(row["newest"]),
                state,
                format_china_time(row["last_success_at"]),
                (row["last_error"] or "")[:60],
            )
        out.print(table)
        run_table = Table(
            "run",
            "mode",
            "status",
            "started (UTC+8)",
            "customers ok/failed",
            "new",
            "updated",
            "rejected",
            "deleted",
            "requests",
            title="recent runs",
        )
        for r in recent:
            run_table.add_row(
                str(r["id"]),
                r["mode"],
                r["status"],
                format_china_time(r["started_at"]),
                f"{r['customers_ok']}/{r['customers_failed']}",
                str(r["records_inserted"]),
                str(r["records_updated"]),
                str(r["records_rejected"]),
                str(r["records_deleted"]),
                str(r["requests"]),
            )
        out.print(run_table)
        out.print(
            f"{totals['customers']} customers, {totals['files']} files mirrored, "
            f"{totals['deleted']} marked deleted, {totals['rejected']} rejected records set aside"
        )
        if coverage is not None:
            from sync.cli.archive import describe_coverage  # obstore loads only when archiving

            out.print(describe_coverage(coverage, stored), markup=False)
        return ExitCode.OK

    _execute(body)


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
    output_format: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="table, csv, json, or excel (CSV with a UTF-8 byte-order mark, for "
            "double-clicking in Excel); default: table in a terminal, csv otherwise.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Print a reporting view of the mirror (docs/schema.md describes each)."""
    try:
        chosen = reports.find_report(name)
        query = reports.report_query(
            chosen, reports.parse_since(since) if since is not None else None
        )
        fmt = reports.parse_format(output_format, sys.stdout.isatty())
    except reports.ReportUsageError as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(ExitCode.USAGE) from None

    async def body(settings: Settings) -> int:
        async with _store(settings) as store:
            rows = reports.ordered(chosen, await store.reads.report_rows(query))
        if fmt is reports.OutputFormat.TABLE:
            out.print(reports.to_table(chosen, rows))
            out.print(f"{len(rows)} rows")
        elif fmt is reports.OutputFormat.JSON:
            _write_stdout(reports.to_json(chosen, rows))
        else:
            for_excel = fmt is reports.OutputFormat.EXCEL
            _write_stdout(reports.to_csv(chosen, rows, for_excel=for_excel))
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
            help="Inject a fault, KIND=PROBABILITY (repeatable); kinds: http500, html502, "
            "truncated, code1000, burst429, stall, reset."
        ),
    ] = None,
) -> None:
    """Serve a simulated Tanmarket API with generated data (for trying things out)."""
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
            **faults,
        )
        simulator = Simulator(dataset, config)
        base_url = await simulator.start(host, port)
        out.print(f"simulator listening on {base_url} ({customers} customers)")
        out.print(
            f"  TANMA_BASE_URL={base_url} TANMA_APP_ID={app_id} TANMA_APP_KEY=<the --app-key>"
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
    database: Annotated[Path, typer.Option(help="SQLite file to mirror into (recreated).")] = Path(
        "tanma_demo.db"
    ),
    customers: Annotated[int, typer.Option(help="Customers in the demo data set.")] = 300,
) -> None:
    """Start the simulator, import its customers, backfill, then run an incremental pass."""
    from sync.cli.demo import run_demo

    for suffix in ("", "-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    _execute(
        lambda s: run_demo(s, customers, out),
        sync_database_url=f"sqlite:///{database}",
        tanma_app_id="demo-app",
        tanma_app_key="demo-key",
        tanma_base_url="http://127.0.0.1",  # replaced by the simulator's address
        sync_rate_limit=2000,
        sync_concurrency=8,
    )


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
