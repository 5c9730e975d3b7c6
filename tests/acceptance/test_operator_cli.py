"""Operator ergonomics through the real CLI: database URLs and misspelled settings, listings
sized for 20,000 customers, customers files as people make them, and the help text."""

from __future__ import annotations

import csv
import io
import json
import re
import signal
import subprocess
import urllib.request
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from sync.cli.app import TERMINAL_LIMIT
from sync.mirror import listings, reports
from sync.sim import SimDataset
from tests.cli_support import Cli, Result, clean_env
from tests.helpers import APP_KEY
from tests.waiting import until_sync


def no_trace(result: Result) -> None:
    assert "Traceback" not in result.both and "internal error" not in result.both, result.both
    assert APP_KEY not in result.both, "the app key leaked"


def one_error_line(result: Result, *expected: str) -> str:
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.err
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def write_customers(cli: Cli, dataset: SimDataset) -> Path:
    path = cli.cwd / "customers.csv"
    path.write_text(dataset.customers_csv(), encoding="utf-8")
    return path


@pytest.fixture
def synced(cli: Cli, sim_factory) -> tuple[Cli, SimDataset]:
    """A mirror of 30 customers: all synced, then one failing, one never synced."""
    dataset = SimDataset(seed=41, customers=30, mean_files=6)
    sim = sim_factory(dataset)
    cli.env["TANMA_BASE_URL"] = sim.base_url
    assert cli("customers", "import", str(write_customers(cli, dataset))).code == 0
    assert cli("backfill").code == 0
    failing = str(dataset.customer(7).customer_id)
    dead = cli("run", "--customer", failing, TANMA_BASE_URL="http://127.0.0.1:9",
               SYNC_MAX_ATTEMPTS="1")  # fmt: skip
    assert dead.code == 3, dead.both
    assert cli("customers", "add", "--external-user-id", "wm-not-yet").code == 0
    return cli, dataset


# -- settings and URLs ----------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("command", [("status",), ("report",), ("customers", "list")])
def test_read_only_commands_create_no_mirror(cli: Cli, tmp_path: Path, command) -> None:
    missing = cli(*command, SYNC_DATABASE_URL="sqlite:///tanma_mirror.db")
    assert missing.code == 1, missing.both
    one_error_line(missing, "no mirror at", str(tmp_path / "tanma_mirror.db"))
    deep = cli(*command, SYNC_DATABASE_URL=f"sqlite:///{tmp_path}/no/such/dir/x.db")
    assert deep.code == 1
    one_error_line(deep, "no mirror at")
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "something was created"
    no_trace(missing)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_impossible_sqlite_urls_are_one_line(cli: Cli, tmp_path: Path) -> None:
    empty = cli("status", SYNC_DATABASE_URL="sqlite:///")
    assert empty.code == 1
    one_error_line(empty, "SYNC_DATABASE_URL", "names no file")
    in_memory = cli(
        "customers", "add", "--customer-id", "1", SYNC_DATABASE_URL="sqlite:///:memory:"
    )
    assert in_memory.code == 1
    one_error_line(in_memory, "SYNC_DATABASE_URL", "names no file")
    (tmp_path / "a-file").write_text("not a directory")
    under_a_file = cli("customers", "add", "--customer-id", "1",
                       SYNC_DATABASE_URL=f"sqlite:///{tmp_path}/a-file/x.db")  # fmt: skip
    assert under_a_file.code == 1
    one_error_line(under_a_file, "SYNC_DATABASE_URL", "a-file")
    a_directory = cli("customers", "add", "--customer-id", "1",
                      SYNC_DATABASE_URL=f"sqlite:///{tmp_path}")  # fmt: skip
    assert a_directory.code == 1
    one_error_line(a_directory, "is a directory")
    for result in (empty, in_memory, under_a_file, a_directory):
        no_trace(result)


@pytest.mark.parametrize("backend", ["postgresql"])
def test_postgres_scheme_is_accepted(cli: Cli, database_url: str) -> None:
    short = str(make_url(database_url).set(drivername="postgres"))
    assert short.startswith("postgres://")
    cli.env["SYNC_DATABASE_URL"] = short
    added = cli("customers", "add", "--customer-id", "5")
    assert added.code == 0, added.both
    listed = cli("customers", "list", "--format", "json")
    assert listed.code == 0, listed.both
    assert [r["customer_id"] for r in json.loads(listed.out)] == [5]


@pytest.mark.parametrize("backend", ["sqlite"])
def test_misspelled_settings_are_named_with_the_closest_setting(cli: Cli) -> None:
    (cli.cwd / ".env").write_text("SYNC_PAGESIZE=50\nSYNC_RATE_LIMT=5\n", encoding="utf-8")
    result = cli("customers", "add", "--customer-id", "1", SYNC_CONCURENCY="3",
                 TANMA_TEST_PG_URL="postgresql://x", TANMA_WHATEVER="1")  # fmt: skip
    assert result.code == 0, result.both
    assert result.out.strip() == "added"
    warnings = sorted(result.err.strip().splitlines())
    assert warnings == [
        "warning: SYNC_CONCURENCY in the environment is not a tanma-sync setting; "
        "did you mean SYNC_CONCURRENCY?",
        "warning: SYNC_PAGESIZE in .env is not a tanma-sync setting; did you mean SYNC_PAGE_SIZE?",
        "warning: SYNC_RATE_LIMT in .env is not a tanma-sync setting; "
        "did you mean SYNC_RATE_LIMIT?",
        "warning: TANMA_WHATEVER in the environment is not a tanma-sync setting (see .env.example)",
    ]


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_dotenv_that_is_not_utf8_is_one_line(cli: Cli) -> None:
    (cli.cwd / ".env").write_bytes("TANMA_APP_ID=张三\n".encode("gbk"))
    result = cli("customers", "list")
    assert result.code == 1
    one_error_line(result, ".env", "UTF-8")
    no_trace(result)


# -- customers list, status, report ---------------------------------------------------------


def test_customers_list_limits_formats_and_counts_files(synced, database_url: str) -> None:
    cli, dataset = synced
    as_json = cli("customers", "list", "--format", "json")
    assert as_json.code == 0 and as_json.err == "", as_json.both
    rows = json.loads(as_json.out)
    assert [list(r) for r in rows[:1]] == [[f.name for f in listings.CUSTOMERS.fields]]
    assert len(rows) == 31
    expected = dataset.expected_mirror().values()
    for row in rows:
        if row["customer_id"] is None:
            assert row["files"] == 0  # never synced
            continue
        mine = [r for r in expected if int(r["customerId"]) == row["customer_id"]]
        assert row["files"] == len(mine), row

    as_csv = cli("customers", "list", "--limit", "3")  # a pipe: CSV, the limit as asked
    assert as_csv.code == 0
    parsed = list(csv.DictReader(io.StringIO(as_csv.out)))
    assert [int(r["files"]) for r in parsed] == [r["files"] for r in rows[:3]]

    terminal = cli.in_terminal("customers", "list")
    assert terminal.code == 0, terminal.err
    assert terminal.out.strip().splitlines()[-1].startswith("31 customers")
    limited = cli.in_terminal("customers", "list", "--limit", "5")
    assert "5 of 31 customers shown" in limited.out
    assert cli("customers", "list", "--format", "xml").code == 2
    for result in (as_json, as_csv, terminal, limited):
        no_trace(result)


def test_status_puts_problems_first_in_the_health_views_words(synced) -> None:
    cli, dataset = synced
    failing = str(dataset.customer(7).customer_id)
    shown = cli("status", "--limit", "4")
    assert shown.code == 0, shown.both
    table = [line for line in shown.out.splitlines() if line.startswith("│")]
    states = [cell.strip() for cell in (line.split("│")[2] for line in table[:4])]
    assert states == ["failing", "never_synced", "ok", "ok"]
    assert failing in table[0] and "ext:wm-not-yet" in table[1]
    assert "31 customers: 1 failing, 1 never_synced, 29 ok; 4 shown" in shown.out

    health = json.loads(cli("report", "sync_health", "--format", "json").out)
    words = {r["state"] for r in health}
    assert words == {"failing", "never_synced", "ok"}
    assert words <= {s.value for s in reports.HealthState}

    # stale: ok, but the last success is older than SYNC_MAX_STALENESS (1 s: once a second
    # has passed since the backfill, every ok customer is stale)
    until_sync(
        lambda: "1 failing, 29 stale, 1 never_synced" in cli("status", SYNC_MAX_STALENESS="1s").out,
        60,
        "the synced customers to turn stale",
    )
    stale = cli("status", "--limit", "0", SYNC_MAX_STALENESS="1s")
    assert "1 failing, 29 stale, 1 never_synced" in stale.out and "shown" not in stale.out

    detail = cli("status", "--customer", failing)
    assert detail.code == 0, detail.both
    error = next(r["last_error"] for r in health if str(r["customer_id"]) == failing)
    assert len(error) > 20 and " ".join(error.split()) in " ".join(detail.out.split())
    unknown = cli("status", "--customer", "999")
    assert unknown.code == 2
    one_error_line(unknown, "no such customer: 999")
    for result in (shown, stale, detail, unknown):
        no_trace(result)


def test_report_files_fits_the_terminal_and_csv_has_everything(synced) -> None:
    cli, _ = synced
    everything = cli("report", "files", "--format", "csv")
    assert everything.code == 0
    rows = list(csv.DictReader(io.StringIO(everything.out)))
    assert list(rows[0]) == [f.name for f in reports.FILES.fields]
    for columns in (120, 160):
        shown = cli.in_terminal("report", "files", columns=columns)
        assert shown.code == 0, shown.err
        lines = shown.out.rstrip("\n").splitlines()
        assert all(len(line) <= columns for line in lines), "a line is wider than the terminal"
        body = [line for line in lines if line.startswith("│")]
        assert len(body) == TERMINAL_LIMIT, "each file is one line, and the limit holds"
        assert f"{len(body)} of {len(rows):,} rows shown" in lines[-1]
        ids = [line.split("│")[1].strip() for line in body]
        assert ids == [r["id"] for r in rows[: len(ids)]], "an id was cut or folded"
    limited = cli("report", "files", "--limit", "7", "--format", "json")
    assert [r["id"] for r in json.loads(limited.out)] == [int(r["id"]) for r in rows[:7]]


# -- customers files ------------------------------------------------------------------------


def test_customers_files_as_people_make_them(cli: Cli, tmp_path: Path) -> None:
    gbk = tmp_path / "gbk.csv"
    gbk.write_bytes("customerId;userId;备注\n11;张三;大客户\n12;李四;\n".encode("gbk"))
    result = cli("customers", "import", str(gbk))
    assert result.code == 0, result.both
    assert result.out.startswith("2 added, 0 updated, 0 unchanged, 0 lines skipped in ")
    notes = result.err.strip().splitlines()
    assert len(notes) == 3, notes
    assert any("GBK/GB18030" in n for n in notes)
    assert any("semicolons" in n for n in notes)
    assert any("'备注'" in n and "ignored" in n for n in notes)

    tabs = tmp_path / "tabs.tsv"
    tabs.write_text(
        "externalUserId\tcustomer_id\tsalesId\tnotes\nwm-13\t13\t130\tx\nwm-11\t11\t\t\n",
        encoding="utf-8",
    )
    second = cli("customers", "import", str(tabs))
    assert second.code == 0, second.both
    assert second.out.startswith("1 added, 1 updated, 0 unchanged")
    listed = json.loads(cli("customers", "list", "--format", "json").out)
    assert [(r["customer_id"], r["external_user_id"], r["user_id"], r["sales_id"])
            for r in listed] == [
        (11, "wm-11", "张三", None), (12, None, "李四", None), (13, "wm-13", None, 130)
    ]  # fmt: skip

    garbled = tmp_path / "latin.csv"
    garbled.write_bytes("customer_id,user_id\n1,é\n".encode() + b"2,\xe9\xff\n")
    bad = cli("customers", "import", str(garbled))
    assert bad.code == 1
    one_error_line(bad, "line 3", "not UTF-8", "CSV UTF-8")
    short = tmp_path / "short.csv"
    short.write_text("customer_id,user_id\n21\n", encoding="utf-8")
    plural = cli("customers", "import", str(short))
    assert plural.code == 3 and "line 2: 1 field, the header has 2" in plural.err
    assert "1 line skipped" in plural.out
    for r in (result, second, bad, plural):
        no_trace(r)


def test_bulk_import_keeps_identity_checks_with_line_numbers(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    lines = ["customer_id,external_user_id"] + [f"{n},wm-{n}" for n in range(1, 2001)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    first = cli("customers", "import", str(path))
    assert first.code == 0 and first.out.startswith("2000 added"), first.both
    clashing = [
        "customer_id,external_user_id,user_id",
        "5,wm-6,",  # 2: wm-6 is customer 6's
        "3001,,",  # 3: added
        "3001,wm-3001,",  # 4: completes line 3's customer
        ",wm-3001,again",  # 5: updates it once more
        "3002,wm-7,",  # 6: wm-7 is customer 7's
        "8,wm-8,same",  # 7: updates customer 8
    ]
    path.write_text("\n".join(clashing) + "\n", encoding="utf-8")
    second = cli("customers", "import", str(path))
    assert second.code == 3, second.both
    assert second.out.startswith("1 added, 3 updated, 0 unchanged, 2 lines skipped")
    assert "line 2: external_user_id wm-6 belongs to customer_id 6, not 5" in second.err
    assert "line 6: external_user_id wm-7 belongs to customer_id 7, not 3002" in second.err
    rows = list(csv.DictReader(io.StringIO(cli("customers", "list").out)))
    by_id = {r["customer_id"]: r for r in rows}
    assert len(rows) == 2001
    assert by_id["3001"]["external_user_id"] == "wm-3001" and by_id["3001"]["user_id"] == "again"
    assert by_id["8"]["user_id"] == "same" and by_id["5"]["external_user_id"] == "wm-5"
    again = cli("customers", "import", str(path))
    assert again.out.startswith("0 added, 0 updated, 4 unchanged, 2 lines skipped")


# -- help polish ----------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite"])
def test_help_shows_no_type_noise(cli: Cli) -> None:
    for command in (("backfill",), ("run",), ("status",), ("customers", "list"), ("sim",),
                    ("report",), ("daemon",), ()):  # fmt: skip
        shown = cli(*command, "--help")
        assert shown.code == 0, shown.both
        assert "<bool>" not in shown.out and "<list[str]>" not in shown.out, shown.out
    assert "--customer ID" in cli("backfill", "--help").out
    sim_help = cli("sim", "--help").out
    for endpoint in ("/_sim/customers.csv", "/_sim/stats", "/_sim/config", "/_sim/advance",
                     "/_sim/reset-stats", "/_sim/expected-mirror"):  # fmt: skip
        assert endpoint in sim_help


@pytest.mark.parametrize("backend", ["sqlite"])
def test_missing_credentials_are_named_in_good_grammar(cli: Cli) -> None:
    both = cli("run", TANMA_APP_ID="", TANMA_APP_KEY="")
    assert both.code == 1
    one_error_line(both, "settings TANMA_APP_ID and TANMA_APP_KEY are not set")
    one = cli("run", TANMA_APP_KEY="")
    one_error_line(one, "setting TANMA_APP_KEY is not set")


def test_the_simulator_prints_no_key(tmp_path: Path) -> None:
    cli = Cli(cwd=tmp_path, env=clean_env())
    secret = "sim-secret-4b1d9e"
    process = cli.start("sim", "--port", "0", "--customers", "2", "--app-key", secret)
    try:
        assert process.stdout is not None
        shown = [process.stdout.readline() for _ in range(3)]
        url = re.search(r"http://127\.0\.0\.1:\d+", shown[0]).group(0)
        with urllib.request.urlopen(url + "/_sim/config", timeout=10) as response:
            config = response.read().decode()
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert "TANMA_APP_KEY=" in "".join(shown)
    assert secret not in "".join(shown) and secret not in config
    assert "page_size_cap" in config
