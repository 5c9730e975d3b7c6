"""`tanma-sync archive` through the real CLI, on both databases, into a directory."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from tests.acceptance.test_daemon_cli import start_daemon, stop
from tests.archive_support import (
    FAILED_AS,
    archive_dataset,
    check_layout,
    expected_files,
    expected_of,
    mirror_state,
    prepare,
)
from tests.cli_support import Cli
from tests.helpers import dump_database_sync
from tests.s3_server import SECRET_KEY
from tests.waiting import until_sync


def _keys(root: Path, under: str) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in (root / under).rglob("*") if p.is_file())


def test_archive_into_a_directory(cli: Cli, sim_factory, database_url: str, tmp_path: Path) -> None:
    sim = sim_factory(archive_dataset(), slow_file_chunk_s=0.01)
    root = tmp_path / "archive"
    prepare(cli, sim, tmp_path, f"file://{root}")
    expected = expected_files(database_url)
    kinds = {e.kind for e in expected.values()}
    assert {"ok", "missing", "outside", "oversized", "html", "duplicate"} <= kinds, kinds

    first = cli("archive")
    assert first.code == 3, first.both
    assert "Traceback" not in first.both

    rows = mirror_state(database_url)
    for file_id, want in expected.items():
        row = rows[file_id]
        if want.kind in FAILED_AS:
            assert row.content_sha256 is None, (file_id, want.kind)
        else:
            assert row.content_sha256 == want.sha256, (file_id, want.kind)
            assert row.archived_at is not None
    digests = check_layout(_keys(root, "sha256"), lambda key: (root / key).read_bytes())
    wanted = {e.sha256 for e in expected.values() if e.kind not in FAILED_AS}
    assert digests == wanted  # the duplicates are stored once
    assert _keys(root, "tmp") == []
    stats = sim.sim.stats.as_dict()
    assert stats["outside_hits"] == 0, "a refused host was connected to"

    dump = dump_database_sync(database_url)
    for reason in ("not_found", "too_large", "refused_host", "error_page"):
        assert reason in dump, reason
    status = cli("status")
    assert status.code == 0 and "archive:" in status.out
    report = cli("report", "archive_coverage", "--format", "json")
    assert report.code == 0, report.both
    coverage = json.loads(report.out)
    by_status = {}
    for row in coverage:
        by_status[row["status"]] = by_status.get(row["status"], 0) + row["files"]
    archived = sum(1 for e in expected.values() if e.kind not in FAILED_AS)
    assert by_status["archived"] == archived
    assert by_status["failed"] == len(expected) - archived

    # A second run downloads nothing that is archived; the missing files are now served.
    sim.sim.stats.reset()
    sim.call(sim.sim.configure, serve_missing_files=True)
    second = cli("archive")
    assert second.code == 3, second.both  # refused, oversized and HTML pages still fail
    served = sim.sim.stats.as_dict()["file_requests"]
    assert set(served) <= {"missing", "oversized", "html"}, served
    rows = mirror_state(database_url)
    for file_id, want in expected.items():
        if want.kind == "missing":
            assert rows[file_id].content_sha256 == want.sha256
    assert sim.sim.stats.as_dict()["outside_hits"] == 0


def test_archive_needs_its_setting(cli: Cli, tmp_path: Path) -> None:
    result = cli("archive")
    assert result.code == 1
    assert "SYNC_ARCHIVE_URL" in result.err and "Traceback" not in result.both
    bad = cli("archive", SYNC_ARCHIVE_URL="file://relative/dir")
    assert bad.code == 1 and "SYNC_ARCHIVE_URL" in bad.err
    hosts = cli("archive", SYNC_ARCHIVE_URL=f"file://{tmp_path}", SYNC_ARCHIVE_HOSTS="bad host!")
    assert hosts.code == 1 and "SYNC_ARCHIVE_HOSTS" in hosts.err


def test_archive_into_s3(cli: Cli, sim_factory, database_url: str, tmp_path: Path, s3) -> None:
    prefix = f"mirror-{uuid.uuid4().hex[:8]}"
    sim = sim_factory(archive_dataset(customers=4, mean_files=8), slow_file_chunk_s=0.01)
    prepare(cli, sim, tmp_path, s3.env(prefix)["SYNC_ARCHIVE_URL"], **s3.env(prefix))
    expected = expected_files(database_url)

    first = cli("archive")
    assert first.code == 3, first.both
    assert SECRET_KEY not in first.both
    rows = mirror_state(database_url)
    wanted = set()
    for file_id, want in expected.items():
        if want.kind not in FAILED_AS:
            assert rows[file_id].content_sha256 == want.sha256
            wanted.add(want.sha256)
    digests = check_layout(s3.keys(prefix, "sha256"), lambda key: s3.read(prefix, key))
    assert digests == wanted
    assert s3.keys(prefix, "tmp") == []
    assert sim.sim.stats.as_dict()["outside_hits"] == 0
    assert SECRET_KEY not in dump_database_sync(database_url)

    sim.sim.stats.reset()
    again = cli("archive")
    assert again.code == 3
    assert set(sim.sim.stats.as_dict()["file_requests"]) <= {"missing", "oversized", "html"}


def test_a_wrong_s3_key_is_one_line(cli: Cli, tmp_path: Path, s3) -> None:
    env = s3.env("wrong") | {"SYNC_ARCHIVE_S3_SECRET_ACCESS_KEY": "not-the-secret-0123456789"}
    result = cli("archive", **env)
    assert result.code == 1, result.both
    assert "archive store s3://" in result.err and "Traceback" not in result.both
    assert "not-the-secret-0123456789" not in result.both


def test_the_daemon_archives_behind_the_syncs(
    cli: Cli, sim_factory, database_url: str, tmp_path: Path
) -> None:
    """A daemon syncs the customers and archives their files as they arrive, newest first;
    new files that arrive later are archived too; SIGTERM stops it cleanly."""
    sim = sim_factory(archive_dataset(customers=4, mean_files=6), slow_file_chunk_s=0.01)
    root = tmp_path / "archive"
    cli.env.update(
        {
            "TANMA_BASE_URL": sim.base_url,
            "SYNC_ARCHIVE_URL": f"file://{root}",
            "SYNC_ARCHIVE_HOSTS": "127.0.0.1",
            "SYNC_ARCHIVE_MAX_BYTES": "200000",
            "SYNC_ARCHIVE_RATE_LIMIT": "2000",
            "SYNC_ARCHIVE_BACKOFF_BASE": "0.01",
            "SYNC_ARCHIVE_BACKOFF_MAX": "0.05",
            "SYNC_ARCHIVE_IDLE": "0.5s",
        }
    )
    csv_path = tmp_path / "customers.csv"
    csv_path.write_text(sim.sim.dataset.customers_csv(), encoding="utf-8")
    assert cli("customers", "import", str(csv_path)).code == 0
    daemon = start_daemon(cli, tmp_path, "archiver")
    try:

        def allowed_archived() -> bool:
            rows = mirror_state(database_url)
            if not rows:
                return False
            expected = expected_of(rows.values())
            return all(
                rows[i].content_sha256 == e.sha256
                for i, e in expected.items()
                if e.kind not in FAILED_AS
            )

        until_sync(allowed_archived, 120, "the daemon to archive the synced files")
        before = len(mirror_state(database_url))
        sim.call(sim.sim.dataset.advance, 1.0, 0.0, 0.0, 0.0)
        until_sync(
            lambda: len(mirror_state(database_url)) > before and allowed_archived(),
            120,
            "the daemon to archive files that arrived later",
        )
        dump = dump_database_sync(database_url)
        assert "not_found" in dump and "refused_host" in dump
        assert sim.sim.stats.as_dict()["outside_hits"] == 0
    finally:
        code, _ = stop(daemon, 30)
    assert code == 0, (tmp_path / "archiver.log").read_text()
    assert "Traceback" not in (tmp_path / "archiver.log").read_text()
