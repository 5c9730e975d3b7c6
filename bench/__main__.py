"""``python -m bench``: measure tanma-sync against its baselines and write BENCHMARKS.md.

``--quick`` runs every section at small sizes (a CI smoke test: nothing is asserted about the
figures, it only has to run). See BENCHMARKS.md for what each section measures.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from bench import archive, push, sections
from bench.databases import postgres_problem, postgres_version
from bench.report import console_table, markdown, write_benchmarks
from bench.sections import FULL, QUICK, Row

SECTIONS = (
    "ceiling",
    "throughput",
    "budget",
    "memory",
    "discovery",
    "dlt",
    "import",
    "archive",
    "push",
)
ROOT = Path(__file__).resolve().parent.parent


def _args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, one repetition")
    parser.add_argument("--only", action="append", choices=SECTIONS, help="run only these")
    parser.add_argument("--reps", type=int, help="repetitions per measurement (median taken)")
    parser.add_argument("--concurrency", type=int, help="SYNC_CONCURRENCY of throughput runs")
    parser.add_argument("--customers", type=int, help="customers of the throughput runs")
    parser.add_argument("--mean-files", type=float, help="mean files per throughput customer")
    parser.add_argument("--budget-customers", type=int, help="customers of the budget runs")
    parser.add_argument("--rate-limit", type=float, help="SYNC_RATE_LIMIT of the budget runs")
    parser.add_argument("--latency-ms", type=float, help="simulated latency of the budget runs")
    parser.add_argument(
        "--budget-backend",
        choices=("sqlite", "postgresql"),
        default="sqlite",
        help="database of the budget and incremental runs",
    )
    parser.add_argument(
        "--memory-customers", type=int, nargs="+", help="customer counts of the memory runs"
    )
    parser.add_argument("--dlt-customers", type=int, help="customers of the dlt comparison")
    parser.add_argument("--import-customers", type=int, help="customers of the import runs")
    parser.add_argument("--discovery-customers", type=int, help="customers of the discovery runs")
    parser.add_argument(
        "--sim-raised-priority",
        action="store_true",
        help="run the budget section's simulator at a raised priority, its data set frozen "
        "out of the garbage collector",
    )
    parser.add_argument("--push-seconds", type=float, help="how long the push load is sent")
    parser.add_argument(
        "--push-backend",
        choices=("sqlite", "postgresql"),
        action="append",
        help="run the push section on these databases only (default: both)",
    )
    parser.add_argument(
        "--push-budget",
        choices=("default", "unlimited"),
        action="append",
        help="run the push section under these rate budgets only (default: both)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        help="write the results into this file (default: BENCHMARKS.md for a full run, "
        "nothing for --quick or --only)",
    )
    return parser.parse_args(argv)


def _sizes(args: argparse.Namespace) -> sections.Sizes:
    sizes = QUICK if args.quick else FULL
    overrides = {
        "reps": args.reps,
        "concurrency": args.concurrency,
        "throughput_customers": args.customers,
        "throughput_mean_files": args.mean_files,
        "budget_customers": args.budget_customers,
        "rate_limit": args.rate_limit,
        "latency_ms": args.latency_ms,
        "memory_customers": tuple(args.memory_customers) if args.memory_customers else None,
        "dlt_customers": args.dlt_customers,
        "import_customers": args.import_customers,
        "discovery_customers": args.discovery_customers,
        "sim_raised_priority": True if args.sim_raised_priority else None,
        "push_seconds": args.push_seconds,
    }
    return dataclasses.replace(sizes, **{k: v for k, v in overrides.items() if v is not None})


def main(argv: list[str]) -> int:
    args = _args(argv)
    sizes = _sizes(args)
    chosen = args.only or list(SECTIONS)
    started = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:7.1f}s] {message}", flush=True)

    problem = postgres_problem()
    backends = ["sqlite"] if problem else ["sqlite", "postgresql"]
    notes: list[str] = []
    if problem:
        notes.append(f"- PostgreSQL skipped: {problem}")
        log(notes[-1])
    else:
        notes.append(f"- PostgreSQL {postgres_version()} on 127.0.0.1 (same machine)")
    rows: list[Row] = []
    if "ceiling" in chosen:
        rows += sections.simulator_ceiling(sizes, log)
    if "throughput" in chosen:
        for backend in backends:
            rows += sections.throughput(sizes, backend, log)
    if "budget" in chosen:
        rows += sections.budget_and_incremental(sizes, log, args.budget_backend)
    if "memory" in chosen:
        rows += sections.memory(sizes, log)
    if "discovery" in chosen:
        for backend in backends:
            rows += sections.discovery(sizes, backend, log)
    if "dlt" in chosen:
        missing = sections.dlt_available()
        if missing:
            notes.append(f"- dlt comparison skipped: {missing}")
            log(notes[-1])
        else:
            for backend in backends:
                rows += sections.against_dlt(sizes, backend, log)
            rows += sections.against_dlt(
                sizes,
                "sqlite",
                log,
                latency_ms=sizes.latency_ms,
                customers=sizes.dlt_latency_customers,
            )
    if "import" in chosen:
        for backend in backends:
            rows += sections.customers_import(sizes, backend, log)
    if "archive" in chosen:
        rows += archive.archive_throughput(sizes, log)
        rows += archive.archive_memory(sizes, log)
    if "push" in chosen:
        for backend in [b for b in backends if b in (args.push_backend or backends)]:
            for budget in args.push_budget or push.BUDGETS:
                rows += push.push_load(sizes, backend, budget, log, quick=args.quick)
    elapsed = time.perf_counter() - started
    notes.append(
        f"- Sizes: {sizes}; medians of {sizes.reps} run(s), tool and baselines interleaved "
        f"in the same run; took {elapsed / 60:.1f} min"
    )
    print()
    print(console_table(rows))
    # Only a full run (every section, full sizes) replaces the published figures by default.
    full = not args.quick and not args.only
    output = args.output or (ROOT / "BENCHMARKS.md" if full else None)
    if output is not None:
        command = "python -m bench " + " ".join(argv) if argv else "python -m bench"
        write_benchmarks(output, markdown(rows, command.strip(), notes))
        print(f"\nwritten: {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
