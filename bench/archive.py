"""The archive section: `tanma-sync archive` against a raw loop (aiohttp + SHA-256 + a plain
file write) over the same files from the same simulator, in one run; and the archive's peak
RSS with 1 MB files beside 100 MB files, which must stay flat (files are streamed)."""

from __future__ import annotations

import asyncio
import hashlib
import re
import sqlite3
import tempfile
import time
from pathlib import Path

import aiohttp

from bench import tool
from bench.databases import fresh_database
from bench.sections import UNLIMITED, Log, Row, Sizes, median
from bench.simproc import SimProcess

# describe_tally: "archive: N files archived (...), B bytes in S s = ..."
_SUMMARY = re.compile(r"archive: (\d+) files archived .*?, ([\d,]+) bytes in ([\d.]+)s")
CHUNK = 256 * 1024


def _archive_env(env: dict[str, str], root: Path, concurrency: int) -> dict[str, str]:
    return env | {
        "SYNC_ARCHIVE_URL": f"file://{root}",
        "SYNC_ARCHIVE_HOSTS": "127.0.0.1",
        "SYNC_ARCHIVE_CONCURRENCY": str(concurrency),
        "SYNC_ARCHIVE_RATE_LIMIT": str(UNLIMITED),
        "SYNC_ARCHIVE_MAX_BYTES": str(1 << 40),
    }


def _urls(database_url: str) -> list[str]:
    path = database_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        return [row[0] for row in conn.execute("SELECT file_url FROM customer_files")]


async def _raw_loop(urls: list[str], root: Path, concurrency: int) -> tuple[int, float]:
    """The baseline: what a hand-written downloader costs, with no checks and no database.
    ``root`` exists."""
    queue: asyncio.Queue[str] = asyncio.Queue()
    for url in urls:
        queue.put_nowait(url)
    total = 0

    async def worker(session: aiohttp.ClientSession, number: int) -> None:
        nonlocal total
        while not queue.empty():
            url = queue.get_nowait()
            digest = hashlib.sha256()
            target = root / f"{number}.part"
            async with session.get(url) as response:
                with target.open("wb") as out:
                    async for chunk in response.content.iter_chunked(CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
                        total += len(chunk)
            target.rename(root / digest.hexdigest())

    started = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(worker(session, n) for n in range(concurrency)))
    return total, time.perf_counter() - started


def _tool_archive(env: dict[str, str]) -> tuple[int, int, float, float]:
    run = tool.run_cli(["archive"], env).check()
    match = _SUMMARY.search(run.stdout)
    if match is None:
        raise RuntimeError(f"no summary in the output of `tanma-sync archive`: {run.stdout!r}")
    return (
        int(match.group(1)),
        int(match.group(2).replace(",", "")),
        float(match.group(3)),
        (run.peak_rss_mb),
    )


def archive_throughput(sizes: Sizes, log: Log) -> list[Row]:
    tool_mbps, tool_fps, raw_mbps, raw_fps = [], [], [], []
    files = 0
    with SimProcess(
        customers=sizes.archive_customers,
        mean_files=sizes.archive_mean_files,
        file_bytes=(sizes.archive_file_bytes // 4, sizes.archive_file_bytes),
    ) as sim:
        for _ in range(sizes.reps):
            with fresh_database("sqlite") as url, tempfile.TemporaryDirectory() as scratch:
                env = tool.tool_env(sim.base_url, url, concurrency=8, rate_limit=UNLIMITED)
                tool.import_customers(sim.customers_csv(), env)
                tool.sync_pass("backfill", env)
                archive_env = _archive_env(env, Path(scratch) / "tool", sizes.concurrency)
                files, volume, seconds, _ = _tool_archive(archive_env)
                tool_mbps.append(volume / seconds / 1e6)
                tool_fps.append(files / seconds)
                urls = _urls(url)
                (Path(scratch) / "raw").mkdir()
                raw_bytes, raw_s = asyncio.run(
                    _raw_loop(urls, Path(scratch) / "raw", sizes.concurrency)
                )
                raw_mbps.append(raw_bytes / raw_s / 1e6)
                raw_fps.append(len(urls) / raw_s)
    ratio = median(tool_mbps) / median(raw_mbps)
    log(
        f"archive: {median(tool_mbps):.0f} MB/s, {median(tool_fps):.0f} files/s; raw loop "
        f"{median(raw_mbps):.0f} MB/s, {median(raw_fps):.0f} files/s ({files} files)"
    )
    section = "6. archive"
    return [
        Row(section, f"`archive`, {files} files of ≤ {sizes.archive_file_bytes:,} B",
            median(tool_mbps), "MB/s", f"{median(tool_fps):,.0f} files/s"),
        Row(section, "raw loop (aiohttp + sha256 + file write), same files",
            median(raw_mbps), "MB/s", f"{median(raw_fps):,.0f} files/s"),
        Row(section, "`archive` / raw loop", ratio, "×", "bytes per second",
            "≥ 0.5", ratio >= 0.5),
    ]  # fmt: skip


def archive_memory(sizes: Sizes, log: Log) -> list[Row]:
    """Peak RSS of `archive` with small files and with big ones: equal within a margin."""
    peaks = {}
    for label, size, customers in (
        ("1 MB", 1_000_000, 4),
        (f"{sizes.archive_big_bytes // 1_000_000} MB", sizes.archive_big_bytes, 2),
    ):
        with (
            SimProcess(customers=customers, mean_files=2, file_bytes=(size, size)) as sim,
            fresh_database("sqlite") as url,
            tempfile.TemporaryDirectory() as scratch,
        ):
            env = tool.tool_env(sim.base_url, url, concurrency=8, rate_limit=UNLIMITED)
            tool.import_customers(sim.customers_csv(), env)
            tool.sync_pass("backfill", env)
            files, volume, _, peak = _tool_archive(_archive_env(env, Path(scratch), 4))
            peaks[label] = peak
            log(f"archive memory, {label} files: {files} files, {volume:,} B, peak {peak:.0f} MB")
    small, big = peaks.values()
    return [
        Row("6. archive", f"peak RSS of `archive`, {label} files", peak, "MB",
            "", "flat: ≤ 1 MB files + 64 MB" if i else "",
            (big <= small + 64) if i else None)
        for i, (label, peak) in enumerate(peaks.items())
    ]  # fmt: skip
