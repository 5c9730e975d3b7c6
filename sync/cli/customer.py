"""``tanma-sync customer …``: acting on one customer. ``show`` prints everything the mirror
holds about it; ``sync`` and ``reconcile`` run a pass of it alone; ``pause``/``resume`` keep
passes and sweeps off it; ``reset`` puts its cursor back to a point, and takes back what
``show --format json`` printed. Every change is an audit row (who, when, before, after)."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from sync.cli import app as shell
from sync.cli.passes import no_such_customer
from sync.config.settings import Settings
from sync.domain.customer_state import (
    StateDocumentError,
    cursor_document,
    read_state_document,
    reset_cursor,
)
from sync.domain.customers import CustomerKey
from sync.domain.errors import UsageError
from sync.domain.exits import ExitCode
from sync.domain.pager import CustomerCursor, PassMode
from sync.mirror.leases import LeaseFence
from sync.mirror.store import MirrorStore
from sync.mirror.writer_lock import sqlite_writer_lock

customer_app = typer.Typer(
    help="Act on one customer: show, sync, pause, resume, reset, reconcile.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

IdArgument = Annotated[
    str, typer.Argument(metavar="ID", help="The customer's customer_id or external_user_id.")
]
ByOption = Annotated[
    str | None,
    typer.Option("--by", help="Who does this, for the audit row (default: the OS user)."),
]
WaitOption = Annotated[
    bool,
    typer.Option(
        "--wait", help="On SQLite, wait for a pass or daemon writing the mirror instead of exit 1."
    ),
]
# How often a reset looks again for a customer another worker is syncing (PostgreSQL).
_HELD_POLL_S = 1.0


def _actor(given: str | None) -> str:
    if given:
        return given[:128]
    try:
        return getpass.getuser()[:128]
    except (KeyError, OSError):
        return "unknown"


async def _one(store: MirrorStore, selector: str) -> CustomerKey:
    found = await store.customers.keys([selector])
    if not found:
        raise UsageError(no_such_customer([selector]))
    return found[0]


@customer_app.command("show")
def show(
    customer: IdArgument,
    output_format: Annotated[
        str, typer.Option("--format", metavar="FORMAT", help="table or json.")
    ] = "table",
) -> None:
    """Everything about one customer: identity, pause and hold, cursor, files, last errors,
    archive state, recent rejected records and audit rows."""
    if output_format not in ("table", "json"):
        shell.err.print(f"error: --format {output_format!r}: write table or json", markup=False)
        raise typer.Exit(ExitCode.USAGE)

    async def body(settings: Settings) -> int:
        async with shell._store(settings, read_only=True) as store:
            key = await _one(store, customer)
            document = await store.controls.document(key.ref)
        if output_format == "json":
            shell._write_stdout(json.dumps(document, ensure_ascii=False, indent=2) + "\n")
        else:
            _print_document(document)
        return ExitCode.OK

    shell._execute(body)


def _print_document(document: dict[str, Any]) -> None:
    identity = document["customer"]
    label = identity["customer_id"] or identity["external_user_id"]
    table = Table("", "", show_header=False, title=f"customer {label}", box=None)
    for section in ("customer", "control", "cursor", "sync", "files", "archive"):
        for name, value in document[section].items():
            table.add_row(f"{section}.{name}", "" if value is None else str(value))
    shell.out.print(table)
    for section in ("rejected", "audit"):
        for row in document[section]:
            shell.out.print(
                f"{section}: " + ", ".join(f"{k}={v}" for k, v in row.items()), markup=False
            )


@customer_app.command("sync")
def sync_now(customer: IdArgument, wait: WaitOption = False) -> None:
    """Sync this customer now (an incremental pass), under the daemons' leases on PostgreSQL
    and the writer lock on SQLite."""
    shell._execute(lambda s: _pass(s, customer, PassMode.INCREMENTAL, wait=wait))


@customer_app.command("reconcile")
def reconcile(
    customer: IdArgument,
    allow_mass_delete: Annotated[
        bool,
        typer.Option(
            "--allow-mass-delete",
            help="Mark what the reconcile did not see as deleted, however many (clears a hold).",
        ),
    ] = False,
    by: ByOption = None,
    wait: WaitOption = False,
) -> None:
    """A full reconcile of this customer: re-read its whole list and mark the records gone
    upstream as deleted, within the mass-delete guard unless --allow-mass-delete."""

    async def body(settings: Settings) -> int:
        before: dict[str, Any] | None = None
        if allow_mass_delete:
            async with shell._store(settings) as store:
                before = await store.controls.document((await _one(store, customer)).ref)
        code = await _pass(
            settings, customer, PassMode.FULL, wait=wait, allow_mass_delete=allow_mass_delete
        )
        if before is not None:
            async with shell._store(settings) as store:
                ref = (await _one(store, customer)).ref
                await store.controls.record(ref, "reconcile_mass_delete", _actor(by), before)
        return code

    shell._execute(body)


async def _pass(
    settings: Settings,
    customer: str,
    mode: PassMode,
    *,
    wait: bool,
    allow_mass_delete: bool = False,
) -> int:
    async with shell._store(settings, read_only=True) as store:
        key = await _one(store, customer)
        if key.ref in await store.controls.paused_refs():
            raise UsageError(
                f"customer {key.label} is paused: `tanma-sync customer resume {customer}` first"
            )
    return await shell._sync(
        settings, mode, [customer], wait=wait, allow_mass_delete=allow_mass_delete
    )


@customer_app.command("pause")
def pause(customer: IdArgument, by: ByOption = None) -> None:
    """Keep passes and the daemons' sweeps off this customer until `customer resume`."""
    _set_paused(customer, True, by)


@customer_app.command("resume")
def resume(customer: IdArgument, by: ByOption = None) -> None:
    """Let passes and sweeps sync this customer again."""
    _set_paused(customer, False, by)


def _set_paused(customer: str, paused: bool, by: str | None) -> None:
    async def body(settings: Settings) -> int:
        async with shell._store(settings) as store:
            key = await _one(store, customer)
            changed = await store.controls.set_paused(key.ref, paused, _actor(by))
        word = "paused" if paused else "resumed"
        shell.out.print(
            f"customer {key.label} {word}"
            if changed
            else f"customer {key.label} was already {'paused' if paused else 'not paused'}",
            markup=False,
        )
        return ExitCode.OK

    shell._execute(body)


@customer_app.command("reset")
def reset(
    customer: IdArgument,
    to: Annotated[
        int | None,
        typer.Option(
            "--to",
            metavar="LASTID",
            min=0,
            help="Re-read everything above this record id (default: the whole list).",
        ),
    ] = None,
    from_json: Annotated[
        str | None,
        typer.Option(
            "--from-json",
            metavar="FILE",
            help="Put back the cursor (and pause) of a `customer show --format json` document; "
            "- reads it from stdin.",
        ),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    by: ByOption = None,
    wait: WaitOption = False,
) -> None:
    """Put the customer's cursor back, so its next pass re-reads from there. Prints the state
    first and asks before changing anything (unless --yes); records an audit row."""
    if to is not None and from_json is not None:
        shell.err.print("error: give --to or --from-json, not both", markup=False)
        raise typer.Exit(ExitCode.USAGE)
    if not yes and (from_json == "-" or not sys.stdin.isatty()):
        shell.err.print(
            "error: reset asks for confirmation: run it at a terminal, or pass --yes",
            markup=False,
        )
        raise typer.Exit(ExitCode.USAGE)
    document = _read_document(from_json) if from_json is not None else None

    async def body(settings: Settings) -> int:
        lock = sqlite_writer_lock(settings.sync_database_url, "customer reset", wait=wait)
        async with lock, shell._store(settings) as store:
            key = await _one(store, customer)
            before = await store.controls.document(key.ref)
            current = _cursor_of(before)
            paused: bool | None = None
            try:
                if document is not None:
                    restored = read_state_document(document, key.customer_id, key.external_user_id)
                    cursor, paused = restored.cursor, restored.paused
                else:
                    cursor = reset_cursor(current, to)
            except StateDocumentError as exc:
                raise UsageError(str(exc)) from None
            shell.out.print(f"customer {key.label}, cursor now:", markup=False)
            shell.out.print(json.dumps(before["cursor"], indent=2), markup=False)
            shell.out.print("after the reset:", markup=False)
            shown = {**cursor_document(cursor), **({} if paused is None else {"paused": paused})}
            shell.out.print(json.dumps(shown, indent=2), markup=False)
            if not yes and not typer.confirm("reset it?", default=False):
                shell.out.print("not reset", markup=False)
                return ExitCode.OK
            async with _customer_lease(settings, store, key) as fence:
                await store.controls.reset(key.ref, cursor, _actor(by), paused=paused, fence=fence)
        shell.out.print(f"customer {key.label} reset; its next pass re-reads from there")
        return ExitCode.OK

    shell._execute(body)


def _read_document(source: str) -> object:
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except OSError as exc:
        shell.err.print(f"error: cannot read {source}: {exc.strerror}", markup=False)
        raise typer.Exit(ExitCode.FATAL) from None
    except UnicodeDecodeError:
        shell.err.print(f"error: {source}: not UTF-8 text", markup=False)
        raise typer.Exit(ExitCode.USAGE) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        where = "stdin" if source == "-" else source
        shell.err.print(f"error: {where}: not JSON ({exc.msg}, line {exc.lineno})", markup=False)
        raise typer.Exit(ExitCode.USAGE) from None


def _cursor_of(document: dict[str, Any]) -> CustomerCursor:
    identity = document["customer"]
    return read_state_document(
        document, identity["customer_id"], identity["external_user_id"]
    ).cursor


@contextlib.asynccontextmanager
async def _customer_lease(
    settings: Settings, store: MirrorStore, key: CustomerKey
) -> AsyncIterator[LeaseFence | None]:
    """On PostgreSQL, the customer's lease, taken as the daemons take it (waiting while one of
    them syncs it), and a fence that checks it inside the reset's transaction. SQLite has one
    writer, whose lock the caller holds."""
    if not store.dialect.postgres:
        yield None
        return
    from sync.daemon.membership import pass_worker_id
    from sync.mirror.fleet import FleetStore

    fleet = FleetStore(store.engine)
    worker_id = pass_worker_id("reset")
    ttl = settings.sync_lease_ttl
    await fleet.ensure_schedule_rows()
    told = False
    while not await fleet.claim_chosen(worker_id, [key.ref], ttl):
        if not told:
            shell.err.print(
                f"waiting: customer {key.label} is being synced by another worker", markup=False
            )
            told = True
        await asyncio.sleep(_HELD_POLL_S)
    try:
        yield LeaseFence(worker_id, key.ref, ttl)
    finally:
        await fleet.release(worker_id, [key.ref])
