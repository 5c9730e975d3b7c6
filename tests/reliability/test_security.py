"""Security: the app key stays secret everywhere, TLS is verified, oversized answers are refused,
SQL never carries record data as literals, and the settings file is never committed."""

from __future__ import annotations

import contextlib
import gzip
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import event, text

from sync.api.client import LIST_FILES_PATH, TanmaClient
from sync.cli.passes import sync_pass
from sync.domain.customers import CustomerKey
from sync.domain.errors import CustomerError, FatalError
from sync.domain.pager import PassMode
from sync.mirror.store import MirrorStore
from sync.sim import SimConfig, SimDataset, Simulator
from tests.cli_support import PROJECT, Cli, Result
from tests.helpers import (
    APP_ID,
    APP_KEY,
    assert_mirror_equals,
    dump_database_sync,
    fetch_mirror,
    fetch_mirror_sync,
    make_settings,
)
from tests.reliability.figures import Figures
from tests.reliability.servers import AppThread, Certificate, make_ca, make_server_cert
from tests.reliability.support import import_customers

# ----- the app key ----------------------------------------------------------------------------


def leaks(secret: str, places: dict[str, str]) -> list[str]:
    """The places whose text holds ``secret``."""
    return sorted(name for name, content in places.items() if secret in content)


def _outputs(results: dict[str, Result]) -> dict[str, str]:
    places = {}
    for name, result in results.items():
        places[f"{name} stdout"] = result.out
        places[f"{name} stderr"] = result.err
    return places


def test_the_app_key_is_in_no_output_log_error_or_row(
    cli: Cli, sim_factory, database_url: str, tmp_path: Path, figures: Figures, case_name: str
) -> None:
    """A clean run, a run through every fault, a run with the key also sent as a header, debug
    logs throughout, and a run whose key the server rejects: the key in use is in none of the
    outputs, log lines, error lines, `status` tables or database rows."""
    dataset = SimDataset(seed=61, customers=8, mean_files=10, poison_rate=0.1)
    sim = sim_factory(
        dataset,
        fault_http500=0.08,
        fault_html502=0.05,
        fault_truncated=0.05,
        fault_code1000=0.05,
        fault_reset=0.03,
        fault_burst429=0.01,  # each burst costs up to a second of Retry-After
        fault_seed=3,
    )
    cli.env |= {"TANMA_BASE_URL": sim.base_url, "SYNC_LOG_LEVEL": "debug", "SYNC_PAGE_SIZE": "4"}
    (tmp_path / "customers.csv").write_text(dataset.customers_csv(), "utf-8")
    results = {
        "import": cli("customers", "import", str(tmp_path / "customers.csv")),
        "backfill with faults": cli("backfill", TANMA_SEND_APP_KEY_HEADER="true"),
        "run": cli("run"),
        "status": cli("status"),
        "customers list": cli("customers", "list", "--format", "table"),
    }
    assert results["backfill with faults"].code in (0, 3), results["backfill with faults"].both
    assert "retrying" in results["backfill with faults"].err  # faults were met and logged
    wrong_key = "wrong-key-7f3a9c2e51d8b604"
    results["rejected key"] = cli("backfill", TANMA_APP_KEY=wrong_key)
    assert results["rejected key"].code == 1 and "1002" in results["rejected key"].err
    results["status after"] = cli("status")

    places = _outputs(results)
    places["database"] = dump_database_sync(database_url)
    assert "customer_files" in places["database"] and "sync_runs" in places["database"]
    figures.add(
        case_name, key_scan_places=len(places), key_scan_chars=sum(map(len, places.values()))
    )
    assert leaks(APP_KEY, places) == []
    assert leaks(wrong_key, places) == []


def test_the_key_scan_finds_a_planted_key(
    cli: Cli, sim_factory, database_url: str, figures: Figures, case_name: str
) -> None:
    """The scan above can fail: the key planted in a row and in a log line is found."""
    cli.env["SYNC_LOG_LEVEL"] = "debug"
    planted = cli("customers", "add", "--customer-id", "77", "--external-user-id", APP_KEY)
    assert planted.code == 0
    places = _outputs({"add": planted, "list": cli("customers", "list", "--format", "table")})
    places["database"] = dump_database_sync(database_url)
    found = leaks(APP_KEY, places)
    figures.add(case_name, key_scan_planted_found=len(found))
    assert "database" in found and "list stdout" in found


# ----- TLS ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Certificate]:
    """Two unrelated CAs; a server certificate for 127.0.0.1 from each, and one from the first
    CA for another name."""
    directory = tmp_path_factory.mktemp("tls")
    first, second = make_ca(directory, "first"), make_ca(directory, "second")
    return {
        "first_ca": first,
        "second_ca": second,
        "server": make_server_cert(directory, first, "server", "IP:127.0.0.1"),
        "other_server": make_server_cert(directory, second, "other", "IP:127.0.0.1"),
        "wrong_name": make_server_cert(directory, first, "elsewhere", "DNS:elsewhere.invalid"),
    }


@contextlib.contextmanager
def https_sim(dataset: SimDataset, certificate: Certificate) -> Iterator[str]:
    simulator = Simulator(dataset, SimConfig(app_id=APP_ID, app_key=APP_KEY))
    with AppThread(simulator.make_app(), certificate.server_context()) as server:
        yield server.base_url


async def _fetch_one(base_url: str, tmp_path: Path, **settings: Any) -> None:
    config = make_settings(base_url, f"sqlite:///{tmp_path / 'unused.db'}", **settings)
    async with TanmaClient(config) as client:
        await client.list_files(CustomerKey(1, 1, None, None, None), None, 10)


async def test_tls_is_verified_by_default(certificates, tmp_path: Path) -> None:
    with https_sim(SimDataset(seed=62, customers=1), certificates["server"]) as url:
        with pytest.raises(FatalError, match=r"not trusted.*TANMA_CA_BUNDLE"):
            await _fetch_one(url, tmp_path)
        # Trusting some other CA does not help either.
        with pytest.raises(FatalError, match="not trusted"):
            await _fetch_one(url, tmp_path, tanma_ca_bundle=certificates["second_ca"].cert)


async def test_tls_checks_the_host_name(certificates, tmp_path: Path) -> None:
    with (
        https_sim(SimDataset(seed=63, customers=1), certificates["wrong_name"]) as url,
        pytest.raises(FatalError, match="not trusted"),
    ):
        await _fetch_one(url, tmp_path, tanma_ca_bundle=certificates["first_ca"].cert)


def test_the_ca_bundle_adds_to_the_system_trust_store(certificates, tmp_path: Path) -> None:
    """TANMA_CA_BUNDLE adds to the system's trust store, as .env.example says, never replaces
    it. Here the "system" store is the first CA, named by SSL_CERT_FILE
    (which OpenSSL's default paths honour), and the bundle is the second CA: a server signed by
    either is trusted. Run in a child process so SSL_CERT_FILE is read fresh."""
    probe = (
        "import asyncio, sys; from pathlib import Path;"
        "from tests.reliability.test_security import _fetch_one;"
        "asyncio.run(_fetch_one(sys.argv[1], Path(sys.argv[2]), tanma_ca_bundle=sys.argv[3]))"
    )
    for server in ("server", "other_server"):
        with https_sim(SimDataset(seed=64, customers=1), certificates[server]) as url:
            done = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    probe,
                    url,
                    str(tmp_path),
                    str(certificates["second_ca"].cert),
                ],
                cwd=PROJECT,
                env={
                    "PATH": "/usr/bin:/bin",
                    "PYTHONPATH": str(PROJECT),
                    "SSL_CERT_FILE": str(certificates["first_ca"].cert),
                },
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert done.returncode == 0, (server, done.stderr[-2000:])


def test_tls_through_the_cli(
    cli: Cli, certificates, database_url: str, tmp_path: Path, figures: Figures, case_name: str
) -> None:
    """As a user sees it: refused with one line that says what to do; accepted, and the mirror
    complete, once TANMA_CA_BUNDLE names the CA."""
    dataset = SimDataset(seed=65, customers=5, mean_files=8)
    (tmp_path / "customers.csv").write_text(dataset.customers_csv(), "utf-8")
    with https_sim(dataset, certificates["server"]) as url:
        cli.env["TANMA_BASE_URL"] = url
        assert cli("customers", "import", str(tmp_path / "customers.csv")).code == 0
        refused = cli("backfill")
        assert refused.code == 1, refused.both
        assert "Traceback" not in refused.both
        last = refused.err.strip().splitlines()[-1]
        assert "not trusted" in last and "TANMA_CA_BUNDLE" in last, last
        accepted = cli("backfill", TANMA_CA_BUNDLE=str(certificates["first_ca"].cert))
        assert accepted.code == 0, accepted.both
    assert_mirror_equals(fetch_mirror_sync(database_url), dataset.expected_mirror())
    figures.add(case_name, tls_refused_untrusted=1)


# ----- oversized answers ----------------------------------------------------------------------

LIMIT = 1024 * 1024


async def _with_length(request: web.Request) -> web.StreamResponse:
    await request.read()
    return web.Response(body=b" " * (LIMIT + 1), content_type="application/json")


async def _chunked(request: web.Request) -> web.StreamResponse:
    await request.read()
    response = web.StreamResponse()
    response.enable_chunked_encoding()
    await response.prepare(request)
    with contextlib.suppress(ConnectionError):  # the client hangs up once it has seen enough
        for _ in range(64):
            await response.write(b" " * 65536)
        await response.write_eof()
    return response


_BOMB = gzip.compress(b'{"code":0,"data":{"result":[' + b" " * (64 * LIMIT) + b"]}}", 9)


async def _gzip_bomb(request: web.Request) -> web.StreamResponse:
    await request.read()
    return web.Response(
        body=_BOMB, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}
    )


@pytest.mark.parametrize(
    "handler", [_with_length, _chunked, _gzip_bomb], ids=["content-length", "chunked", "gzip"]
)
async def test_an_answer_above_the_size_limit_is_refused(handler, tmp_path: Path) -> None:
    """Announced (Content-Length), streamed (chunked, no length) or compressed (a 64 MiB body in
    a 64 KiB gzip): refused once past SYNC_MAX_RESPONSE_BYTES, as an error for that customer."""
    app = web.Application()
    app.router.add_post(LIST_FILES_PATH, handler)
    with AppThread(app) as server, pytest.raises(CustomerError, match="SYNC_MAX_RESPONSE_BYTES"):
        await _fetch_one(
            server.base_url, tmp_path, sync_max_response_bytes=LIMIT, sync_max_attempts=1
        )


# ----- bound parameters -----------------------------------------------------------------------


def _record_values(dataset: SimDataset) -> set[str]:
    """Text that would show a record's data written into SQL: ids, names, urls, people."""
    values: set[str] = set()
    for record in dataset.expected_mirror().values():
        for key in ("id", "customerId", "fileName", "authorName", "followContent", "createTime"):
            value = record.get(key)
            if value is not None and len(str(value)) >= 6:
                values.add(str(value))
    return values


def literal_leaks(statements: list[str], values: set[str]) -> list[str]:
    return sorted({v for v in values for s in statements if v in s})


async def test_every_statement_binds_its_parameters(
    store: MirrorStore,
    database_url: str,
    sim_factory,
    figures: Figures,
    case_name: str,
) -> None:
    """Every SQL statement of a full sync (backfill, incremental, full reconcile) is captured as
    the driver receives it: no record value appears in the SQL text, so none can inject."""
    dataset = SimDataset(seed=66, customers=12, mean_files=15, poison_rate=0.05)
    sim = sim_factory(dataset)
    statements: list[str] = []

    def capture(conn, cursor, statement, parameters, context, executemany) -> None:
        statements.append(statement)

    event.listen(store.engine.sync_engine, "before_cursor_execute", capture)
    try:
        await import_customers(store, dataset)
        settings = make_settings(sim.base_url, database_url, sync_page_size=6)
        for mode in (PassMode.BACKFILL, PassMode.INCREMENTAL, PassMode.FULL):
            await sync_pass(settings, store, mode)
        assert_mirror_equals(await fetch_mirror(store.engine), dataset.expected_mirror())
        values = _record_values(dataset)
        found = literal_leaks(statements, values)
        figures.add(
            case_name, sql_statements_checked=len(statements), sql_values_checked=len(values)
        )
        assert found == [], found[:5]

        # The check can fail: a statement that writes a record's name into its text is caught.
        name = next(v for v in values if not v.isdigit())
        async with store.engine.connect() as conn:
            await conn.execute(text(f"SELECT '{name.replace(chr(39), chr(39) * 2)}'"))
        assert literal_leaks(statements, values) == [name]
    finally:
        event.remove(store.engine.sync_engine, "before_cursor_execute", capture)


# ----- the settings file ----------------------------------------------------------------------


def test_the_settings_file_and_the_figures_are_never_committed() -> None:
    for path in (".env", "tests/reliability/figures/last-run.json"):
        done = subprocess.run(
            ["git", "check-ignore", "--no-index", "-q", path], cwd=PROJECT, check=False
        )
        assert done.returncode == 0, f"{path} is not git-ignored"
    tracked = subprocess.run(
        ["git", "ls-files", "--error-unmatch", ".env"],
        cwd=PROJECT,
        capture_output=True,
        check=False,
    )
    assert tracked.returncode != 0, ".env is committed"
