"""The measurements. Each one starts its own simulator process, runs the tool and its baselines
interleaved (A, B, A, B, ...) against fresh databases, and returns rows for the report."""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench import lean, raw, stages, tool
from bench.databases import asyncpg_dsn, fresh_database, sqlite_path
from bench.simproc import SimProcess
from sync.domain.discovery import DiscoveryWalk, Window

PAGE_SIZE = 100
UNLIMITED = 1_000_000.0  # SYNC_RATE_LIMIT for "the API is not the bottleneck"


@dataclass(frozen=True)
class Sizes:
    reps: int
    concurrency: int
    throughput_customers: int
    throughput_mean_files: float
    budget_customers: int
    budget_mean_files: float
    rate_limit: float
    latency_ms: float
    budget_concurrency: int
    memory_customers: tuple[int, ...]
    memory_mean_files: float
    dlt_customers: int
    import_customers: int
    # The run at the API's latency (sizes.latency_ms), on SQLite: dlt asks one page at a time,
    # so it is sized smaller to keep its time in bounds.
    dlt_latency_customers: int
    # Customers the discovery benchmark finds (a first discovery, then one with nothing new).
    discovery_customers: int
    # The archive: files of up to archive_file_bytes over a small data set; and the size of
    # the big files of the memory check.
    archive_customers: int = 40
    archive_mean_files: float = 10
    archive_file_bytes: int = 4_000_000
    archive_big_bytes: int = 100_000_000
    # The budget section's simulator at a raised scheduling priority with its data set frozen
    # out of the collector, so fewer of its arrival stamps are its own late wake-ups; it takes
    # CPU from the tool on a shared machine (BENCHMARKS.md, budget section).
    sim_raised_priority: bool = False
    # How long the push section's load generator sends (60 s in a full run).
    push_seconds: float = 60.0


# The brief's sizes: 300,000 records over 3,000 customers, a budget run of over 10,000
# requests, memory at 100,000 customers. About 25 minutes on the shared 2-core machine.
FULL = Sizes(
    reps=3,
    concurrency=8,
    throughput_customers=3_000,
    throughput_mean_files=100,
    budget_customers=10_000,
    budget_mean_files=20,
    rate_limit=200,
    latency_ms=50,
    budget_concurrency=32,
    memory_customers=(10_000, 100_000),
    memory_mean_files=10,
    dlt_customers=500,
    import_customers=100_000,
    dlt_latency_customers=150,
    discovery_customers=100_000,
)
QUICK = Sizes(
    reps=1,
    concurrency=8,
    throughput_customers=60,
    throughput_mean_files=20,
    budget_customers=300,
    budget_mean_files=20,
    rate_limit=200,
    latency_ms=50,
    budget_concurrency=32,
    memory_customers=(300, 1_000),
    memory_mean_files=10,
    dlt_customers=30,
    import_customers=2_000,
    dlt_latency_customers=10,
    discovery_customers=2_000,
    archive_customers=6,
    archive_mean_files=5,
    archive_file_bytes=200_000,
    archive_big_bytes=20_000_000,
)


@dataclass(frozen=True)
class Row:
    """One line of the report."""

    section: str
    what: str
    value: float
    unit: str
    note: str = ""
    target: str = ""
    met: bool | None = None  # None: no target on this line


Log = Callable[[str], None]


def median(values: list[float]) -> float:
    return statistics.median(values)


def _spread(values: list[float], digits: int = 0) -> str:
    return f"n={len(values)}, range {min(values):,.{digits}f}–{max(values):,.{digits}f}"


def _prepare(sim: SimProcess, url: str, csv: bytes, *, concurrency: int, rate: float) -> dict:
    env = tool.tool_env(sim.base_url, url, concurrency=concurrency, rate_limit=rate)
    tool.import_customers(csv, env)  # also creates the schema (migrations)
    return env


async def _raw_pass(backend: str, url: str, base_url: str, concurrency: int) -> raw.WalkCount:
    if backend == "sqlite":
        sink = raw.SqliteSink(sqlite_path(url))
        try:
            return await raw.walk(
                base_url,
                sink.customers(),
                concurrency=concurrency,
                page_size=PAGE_SIZE,
                sink=sink,
            )
        finally:
            sink.close()
    pg = await raw.PostgresSink.open(asyncpg_dsn(url), concurrency)
    try:
        customers = await pg.customers()
        return await raw.walk(
            base_url, customers, concurrency=concurrency, page_size=PAGE_SIZE, sink=pg
        )
    finally:
        await pg.close()


async def _write_only(
    backend: str, url: str, pages: list[tuple[int, bytes]], concurrency: int
) -> float:
    if backend == "sqlite":
        sink = raw.SqliteSink(sqlite_path(url))
        try:
            return await raw.write_pages(pages, sink, concurrency=1)
        finally:
            sink.close()
    pg = await raw.PostgresSink.open(asyncpg_dsn(url), concurrency)
    try:
        return await raw.write_pages(pages, pg, concurrency=concurrency)
    finally:
        await pg.close()


def simulator_ceiling(sizes: Sizes, log: Log) -> list[Row]:
    """Requests/s an empty client loop gets from the simulator, with pages pre-built (as the
    throughput runs use it) and encoded per request (how tests use it)."""
    rows = []
    for prebuilt in (True, False):
        with SimProcess(
            customers=sizes.throughput_customers,
            mean_files=sizes.throughput_mean_files,
            prebuilt_pages=prebuilt,
        ) as sim:
            customers = _sim_customers(sim)
            rates = []
            for attempt in range(sizes.reps + 1):
                count = asyncio.run(
                    raw.walk(
                        sim.base_url,
                        customers,
                        concurrency=sizes.concurrency,
                        page_size=PAGE_SIZE,
                        sink=None,
                    )
                )
                if attempt:  # the first walk warms the page cache
                    rates.append(count.requests / count.seconds)
            label = "pre-built pages" if prebuilt else "encoded per request"
            log(f"simulator ({label}): {median(rates):,.0f} requests/s")
            rows.append(
                Row(
                    "1. engine throughput",
                    f"simulator ceiling, {label} (empty client loop)",
                    median(rates),
                    "requests/s",
                    f"{count.records / count.requests:.0f} records/request; {_spread(rates)}",
                )
            )
    return rows


def _sim_customers(sim: SimProcess) -> list[raw.Customer]:
    lines = sim.customers_csv().decode().splitlines()[1:]
    return [(i + 1, int(line.split(",")[0])) for i, line in enumerate(lines)]


def throughput(sizes: Sizes, backend: str, log: Log) -> list[Row]:
    """Backfill records/s of the tool, the raw pipeline and the write path alone."""
    tool_rates: list[float] = []
    raw_rates: list[float] = []
    write_rates: list[float] = []
    lean_rates: list[float] = []
    tool_cpu: list[float] = []
    raw_cpu: list[float] = []
    stage_runs: list[stages.StageCpu] = []
    records = 0
    with SimProcess(
        customers=sizes.throughput_customers, mean_files=sizes.throughput_mean_files
    ) as sim:
        csv = sim.customers_csv()
        pages = asyncio.run(
            raw.prefetch(
                sim.base_url,
                _sim_customers(sim),
                concurrency=sizes.concurrency,
                page_size=PAGE_SIZE,
            )
        )
        for rep in range(sizes.reps):
            with fresh_database(backend) as url:
                env = _prepare(sim, url, csv, concurrency=sizes.concurrency, rate=UNLIMITED)
                # The same start-up (interpreter, imports, settings, schema check) without the
                # pass, taken off the backfill's CPU time.
                startup = tool.run_cli(["db", "upgrade"], env).check().cpu_s
                result = tool.sync_pass("backfill", env)
                tool_rates.append(result.records_per_s)
                records = result.records
                tool_cpu.append((result.cpu_s - startup) * 1e6 / records)
            with fresh_database(backend) as url:
                _prepare(sim, url, csv, concurrency=sizes.concurrency, rate=UNLIMITED)
                cpu_started = time.process_time()
                count = asyncio.run(_raw_pass(backend, url, sim.base_url, sizes.concurrency))
                raw_cpu.append((time.process_time() - cpu_started) * 1e6 / count.records)
                if count.records != records:
                    raise RuntimeError(f"raw pipeline saw {count.records}, tool {records}")
                raw_rates.append(count.records / count.seconds)
            with fresh_database(backend) as url:
                _prepare(sim, url, csv, concurrency=sizes.concurrency, rate=UNLIMITED)
                counted = lean.lean_pass(backend, url, sim.base_url, PAGE_SIZE)
                if counted.records != records:
                    raise RuntimeError(f"lean loop saw {counted.records}, tool {records}")
                lean_rates.append(counted.records / counted.seconds)
            with fresh_database(backend) as url:
                env = _prepare(sim, url, csv, concurrency=sizes.concurrency, rate=UNLIMITED)
                stage_runs.append(asyncio.run(stages.stage_cpu(tool.settings_of(env))))
            with fresh_database(backend) as url:
                _prepare(sim, url, csv, concurrency=sizes.concurrency, rate=UNLIMITED)
                seconds = asyncio.run(_write_only(backend, url, pages, sizes.concurrency))
                write_rates.append(records / seconds)
            log(
                f"{backend} rep {rep + 1}: tool {tool_rates[-1]:,.0f}, raw pipeline "
                f"{raw_rates[-1]:,.0f}, write path alone {write_rates[-1]:,.0f}, lean loop "
                f"{lean_rates[-1]:,.0f} records/s"
            )
    ratio = median(tool_rates) / median(raw_rates)
    section = "1. engine throughput"
    where = f"{backend}, {records:,} records, {sizes.throughput_customers:,} customers"
    return [
        Row(section, f"tanma-sync backfill ({where})", median(tool_rates), "records/s",
            _spread(tool_rates)),
        Row(section, f"raw pipeline, aiohttp + orjson + plain driver ({backend})",
            median(raw_rates), "records/s", _spread(raw_rates)),
        Row(section, f"write path alone, pre-fetched pages ({backend})", median(write_rates),
            "records/s", _spread(write_rates)),
        Row(section, f"tool / raw pipeline ({backend})", ratio, "×", "", "≥ 0.80", ratio >= 0.8),
        Row(section, f"lean loop: requests, one thread, one upsert per page ({backend})",
            median(lean_rates), "records/s", _spread(lean_rates)),
        Row(section, f"tool / lean loop ({backend})", median(tool_rates) / median(lean_rates),
            "×"),
        Row("1b. CPU per record", f"tanma-sync backfill, whole pipeline ({backend})",
            median(tool_cpu), "µs", "child process CPU (user + system) less its start-up "
            f"(a `db upgrade`); {_spread(tool_cpu)}"),
        Row("1b. CPU per record", f"raw pipeline, whole ({backend})", median(raw_cpu), "µs",
            f"this process's CPU; {_spread(raw_cpu)}"),
        *(Row("1b. CPU per record", f"tanma-sync stage: {name} ({backend})", median(values),
              "µs", f"the tool's own code in this process, process CPU; {_spread(values, 1)}")
          for name, values in (("fetch", [run.fetch_us for run in stage_runs]),
                               ("parse", [run.parse_us for run in stage_runs]),
                               ("write", [run.write_us for run in stage_runs]))),
    ]  # fmt: skip


def budget_and_incremental(sizes: Sizes, log: Log, backend: str = "sqlite") -> list[Row]:
    """Requests/s against the client's rate limit while the API is slow and limited, then the
    cost of a run in which nothing changed."""
    use: list[float] = []
    backfill_requests: list[float] = []
    per_customer: list[float] = []
    wall_ratio: list[float] = []
    over_limit = credited = 0
    with SimProcess(
        customers=sizes.budget_customers,
        mean_files=sizes.budget_mean_files,
        latency_ms=sizes.latency_ms,
        rate_limit=sizes.rate_limit,
        rate_burst=5,
        raised_priority=sizes.sim_raised_priority,
    ) as sim:
        csv = sim.customers_csv()
        for rep in range(sizes.reps):
            with fresh_database(backend) as url:
                env = _prepare(
                    sim, url, csv, concurrency=sizes.budget_concurrency, rate=sizes.rate_limit
                )
                sim.reset_stats()
                backfill = tool.sync_pass("backfill", env)
                stats = sim.stats()
                over_limit += stats["over_limit"]
                credited += stats["stall_credited"]
                backfill_requests.append(backfill.requests)
                use.append(backfill.requests_per_s / sizes.rate_limit)
                sim.reset_stats()
                quiet = tool.sync_pass("run", env)
                stats = sim.stats()
                over_limit += stats["over_limit"]
                credited += stats["stall_credited"]
                per_customer.append(stats["requests_total"] / sizes.budget_customers)
                wall_ratio.append(quiet.pass_s / (sizes.budget_customers / sizes.rate_limit))
            log(
                f"budget {backend} rep {rep + 1}: backfill {backfill.requests} requests at "
                f"{backfill.requests_per_s:,.1f}/s = {use[-1]:.3f} of the limit; run: "
                f"{per_customer[-1]:.2f} requests/customer in {quiet.pass_s:.1f}s"
            )
    limit = f"{sizes.rate_limit:g} requests/s"
    return [
        Row("2. API budget use",
            f"backfill requests/s ÷ SYNC_RATE_LIMIT ({limit}, {sizes.latency_ms:g} ms latency, "
            f"{int(median(backfill_requests)):,} requests, {backend})", median(use), "of the limit",
            f"n={len(use)}", "≥ 0.97", median(use) >= 0.97),
        Row("2. API budget use",
            f"requests over the simulator's {limit} bucket (burst 5, {backend})", over_limit,
            "requests",
            f"as it counts them, every rep; {credited} more admitted on its own loop's lateness",
            "0", over_limit == 0),
        Row("3. incremental cost",
            f"requests per unchanged customer (`run` over {sizes.budget_customers:,}, {backend})",
            median(per_customer), "requests", f"n={len(per_customer)}", "= 1.00",
            abs(median(per_customer) - 1.0) < 0.005),
        Row("3. incremental cost", f"`run` wall time ÷ (customers ÷ rate limit) ({backend})",
            median(wall_ratio), "×", f"floor {sizes.budget_customers / sizes.rate_limit:.0f}s"),
    ]  # fmt: skip


def memory(sizes: Sizes, log: Log) -> list[Row]:
    """Peak RSS of `customers import` and of `backfill` at two sizes (SQLite)."""
    rows = []
    for customers in sizes.memory_customers:
        with (
            SimProcess(customers=customers, mean_files=sizes.memory_mean_files) as sim,
            fresh_database("sqlite") as url,
        ):
            env = tool.tool_env(
                sim.base_url, url, concurrency=sizes.concurrency, rate_limit=UNLIMITED
            )
            imported = tool.import_customers(sim.customers_csv(), env)
            backfill = tool.sync_pass("backfill", env)
        log(
            f"memory at {customers:,} customers: import {imported.peak_rss_mb:.0f} MB in "
            f"{imported.wall_s:.1f}s, backfill {backfill.peak_rss_mb:.0f} MB "
            f"({backfill.records:,} records at {backfill.records_per_s:,.0f}/s)"
        )
        big = customers == max(sizes.memory_customers)
        rows += [
            Row("4. memory", f"peak RSS, `customers import` of {customers:,} customers",
                imported.peak_rss_mb, "MB", f"{imported.wall_s:.1f}s"),
            Row("4. memory",
                f"peak RSS, backfill of {customers:,} customers ({backfill.records:,} records)",
                backfill.peak_rss_mb, "MB", f"{backfill.records_per_s:,.0f} records/s",
                "≤ 200 MB" if big else "", backfill.peak_rss_mb <= 200 if big else None),
        ]  # fmt: skip
    return rows


def discovery(sizes: Sizes, backend: str, log: Log) -> list[Row]:
    """`customers discover` of every customer (the default cap of 10,000, so the createTime
    range is split), then again with nothing new; requests, seconds and peak RSS. The tool's
    own time is the child's CPU time (user + system) less its start-up (a `db upgrade`), and
    the simulator's serving time is an empty client loop over the same search windows."""
    customers = sizes.discovery_customers
    with (
        SimProcess(customers=customers, mean_files=0) as sim,
        fresh_database(backend) as url,
    ):
        env = tool.tool_env(sim.base_url, url, concurrency=sizes.concurrency, rate_limit=UNLIMITED)
        startup = tool.run_cli(["db", "upgrade"], env).check().cpu_s
        first = tool.discover(env)
        sim.reset_stats()
        quiet = tool.discover(env)
        past_cap = int(sim.stats().get("search_past_cap", 0))
        serving = asyncio.run(raw.search_walk(sim.base_url, _discovery_walk(env)))
    own = max(0.0, first.cpu_s - startup)
    log(
        f"discovery of {customers:,} customers ({backend}): {first.requests} requests, "
        f"{first.seconds:.1f}s, tool CPU {own:.2f}s (start-up {startup:.2f}s less), "
        f"{first.peak_rss_mb:.0f} MB; simulator alone {serving.seconds:.1f}s for "
        f"{serving.requests} requests; nothing new: {quiet.requests} requests; "
        f"{past_cap} past the cap"
    )
    label = f"{customers:,} customers, {backend}"
    return [
        Row("5. discovery", f"requests, first discovery of {label}", first.requests, "requests",
            f"{first.windows_split} windows split, floor {customers / PAGE_SIZE:,.0f}"),
        Row("5. discovery", f"wall time, first discovery of {label}", first.seconds, "s",
            f"{customers / first.seconds:,.0f} customers/s"),
        Row("5. discovery", f"tool's own time (CPU), first discovery of {label}", own, "s",
            f"user + system less start-up ({startup:.2f}s); waited "
            f"{max(0.0, first.seconds - own):.1f}s", "< 5 s", own < 5),
        Row("5. discovery", f"simulator serving the same windows ({label})", serving.seconds,
            "s", f"empty client loop, {serving.requests} requests, one at a time"),
        Row("5. discovery", f"peak RSS, first discovery of {label}", first.peak_rss_mb, "MB"),
        Row("5. discovery", f"requests, discovery with nothing new ({backend})", quiet.requests,
            "requests", "", "≤ 2", quiet.requests <= 2),
    ]  # fmt: skip


def _discovery_walk(env: dict[str, str]) -> DiscoveryWalk:
    """The walk a first `customers discover` with these settings plans (an empty mirror, so
    from SYNC_DISCOVERY_SINCE to an hour past now)."""
    settings = tool.settings_of(env)
    end = datetime.now(UTC) + timedelta(hours=1)
    root = Window(int(settings.discovery_since.timestamp()), int(end.timestamp()))
    return DiscoveryWalk.plan(
        root,
        full=False,
        page_size=settings.sync_discovery_page_size,
        max_results=settings.tanma_search_max_results,
        max_rewalks=settings.sync_discovery_max_rewalks,
    )


def dlt_available() -> str | None:
    """None when dlt can be imported, else why not."""
    probe = subprocess.run(
        [sys.executable, "-c", "import dlt, dlt.sources.rest_api"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode == 0:
        return None
    last = (probe.stderr.strip().splitlines() or ["unknown error"])[-1]
    return f"dlt is not importable ({last}); install the extra: pip install -e '.[bench]'"


def against_dlt(
    sizes: Sizes, backend: str, log: Log, *, latency_ms: float = 0.0, customers: int = 0
) -> list[Row]:
    """The same backfill with tanma-sync and with a dlt REST API pipeline, interleaved.

    With ``latency_ms`` the simulator answers as slowly as a real API would; neither side is
    rate limited, so what counts is how each keeps requests in flight."""
    customers = customers or sizes.dlt_customers
    tool_rates: list[float] = []
    dlt_rates: list[float] = []
    records = 0
    with SimProcess(
        customers=customers, mean_files=sizes.throughput_mean_files, latency_ms=latency_ms
    ) as sim:
        csv = sim.customers_csv()
        with tempfile.TemporaryDirectory(prefix="tanma_bench_dlt_") as folder:
            csv_path = Path(folder) / "customers.csv"
            csv_path.write_bytes(csv)
            for rep in range(sizes.reps):
                with fresh_database(backend) as url:
                    env = _prepare(sim, url, csv, concurrency=sizes.concurrency, rate=UNLIMITED)
                    result = tool.sync_pass("backfill", env)
                    tool_rates.append(result.records_per_s)
                    records = result.records
                with fresh_database(backend) as url:
                    done = subprocess.run(  # noqa: S603 - our own interpreter and module
                        [sys.executable, "-m", "bench.dlt_pipeline", sim.base_url, url,
                         str(csv_path)],
                        capture_output=True, text=True, check=False,
                    )  # fmt: skip
                    if done.returncode != 0:
                        raise RuntimeError(f"the dlt pipeline failed: {done.stderr[-3000:]}")
                    loaded = json.loads(done.stdout.strip().splitlines()[-1])
                    if loaded["records"] != records:
                        raise RuntimeError(f"dlt loaded {loaded['records']}, tool {records}")
                    dlt_rates.append(loaded["records"] / loaded["seconds"])
                log(
                    f"dlt {backend} {latency_ms:g} ms rep {rep + 1}: tool "
                    f"{tool_rates[-1]:,.0f}, dlt {dlt_rates[-1]:,.0f} records/s"
                )
    ratio = median(tool_rates) / median(dlt_rates)
    api = f"API latency {latency_ms:g} ms" if latency_ms else "no API latency"
    where = f"{backend}, {api}, {records:,} records, {customers:,} customers"
    return [
        Row("5. against dlt", f"tanma-sync backfill ({where})", median(tool_rates), "records/s",
            _spread(tool_rates)),
        Row("5. against dlt", f"dlt rest_api pipeline, merge on id ({backend}, {api})",
            median(dlt_rates), "records/s", _spread(dlt_rates)),
        Row("5. against dlt", f"tanma-sync / dlt ({backend}, {api})", ratio, "×", "", "≥ 5",
            ratio >= 5),
    ]  # fmt: skip


def customers_csv(customers: int) -> bytes:
    """A customers file as a CRM export gives it: every column filled, ids of the API's size."""
    lines = ["customer_id,user_id,external_user_id,sales_id"]
    lines += [
        f"{460_000_000_000_000 + n * 7_919},sales{n % 400:03d},wm{n:030d},"
        f"{350_000_000_000_000 + n % 400}"
        for n in range(customers)
    ]
    return ("\n".join(lines) + "\n").encode()


def customers_import(sizes: Sizes, backend: str, log: Log) -> list[Row]:
    """`customers import` of a large file into an empty mirror, then the same file again (all
    unchanged), beside a plain-driver bulk INSERT of the same rows into the same table."""
    customers = sizes.import_customers
    csv = customers_csv(customers)
    first: list[float] = []
    again: list[float] = []
    walls: list[float] = []
    plain: list[float] = []
    for rep in range(sizes.reps):
        with fresh_database(backend) as url:
            env = tool.tool_env("http://127.0.0.1:9", url, concurrency=1, rate_limit=UNLIMITED)
            tool.run_cli(["db", "upgrade"], env).check()
            run = tool.import_customers(csv, env)
            first.append(tool.import_seconds(run))
            walls.append(run.wall_s)
            again.append(tool.import_seconds(tool.import_customers(csv, env)))
        with fresh_database(backend) as url:
            tool.run_cli(["db", "upgrade"], tool.tool_env("http://127.0.0.1:9", url,
                         concurrency=1, rate_limit=UNLIMITED)).check()  # fmt: skip
            plain.append(asyncio.run(raw.insert_customers(backend, url, csv)))
        log(
            f"import {backend} rep {rep + 1}: {first[-1]:.2f}s (wall {walls[-1]:.2f}s), "
            f"again {again[-1]:.2f}s, plain INSERT {plain[-1]:.2f}s"
        )
    section = "6. customers import"
    return [
        Row(section, f"`customers import` of {customers:,} new customers, tool's own time "
            f"({backend})", median(first), "s", f"wall {median(walls):.2f}s incl. start-up; "
            f"{_spread(first, 2)}", "< 5 s", median(first) < 5),
        Row(section, f"the same file again, all unchanged ({backend})", median(again), "s",
            _spread(again, 2)),
        Row(section, f"plain driver bulk INSERT of the same rows, no checks ({backend})",
            median(plain), "s", _spread(plain, 2)),
    ]  # fmt: skip
