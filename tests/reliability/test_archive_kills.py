"""Crash consistency of the archive: SIGKILL a real `tanma-sync archive` at random instants
while it downloads (many of the files are slow), again and again, into a directory and into
S3; then let one run finish.

Whatever the instant: no object under a content key is partial (each hashes to its name), and
after the finishing run every allowed file is archived with its true hash, each content stored
exactly once. Temporaries of killed downloads may remain under tmp/; nothing reads them.
"""

from __future__ import annotations

import random
import uuid
from pathlib import Path

import pytest

from sync.sim import SimDataset
from sync.sim.files import FileShapes
from tests.archive_support import check_layout, expected_files, mirror_state, prepare
from tests.cli_support import Cli, run_and_kill
from tests.s3_server import S3Server
from tests.waiting import until_sync

KILLS = 8
SHAPES_SLOW = FileShapes(min_bytes=20_000, max_bytes=300_000, slow=0.5, duplicate=0.1, seed=9)


def _kill_loop(cli: Cli, rng: random.Random) -> int:
    landed = 0
    for _ in range(KILLS):
        kill = run_and_kill(cli, ("archive",), rng.uniform(0.3, 2.5), from_pass=False)
        assert "Traceback" not in kill.err, kill.err
        landed += kill.landed
    return landed


def _finish(cli: Cli, database_url: str) -> None:
    # The killed runs' claims expire after SYNC_ARCHIVE_CLAIM_TTL; until then a run skips
    # those files, so run again until every file is archived.
    def all_archived() -> bool:
        result = cli("archive")
        assert result.code in (0, 3), result.both
        return all(row.content_sha256 for row in mirror_state(database_url).values())

    until_sync(all_archived, 120, "every file archived after the kills")


@pytest.mark.timeout(600)
@pytest.mark.parametrize("where", ["directory", "s3"])
def test_sigkill_during_downloads_leaves_no_half_object(
    cli: Cli,
    sim_factory,
    database_url: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    rng: random.Random,
    where: str,
) -> None:
    sim = sim_factory(
        SimDataset(seed=13, customers=8, mean_files=10, files=SHAPES_SLOW),
        slow_file_chunk_s=0.3,
    )
    env = {"SYNC_ARCHIVE_CLAIM_TTL": "1s", "SYNC_ARCHIVE_MAX_BYTES": "10000000"}
    # Every kill lands while files are still downloading: the slow files outlast the runs.
    if where == "s3":
        s3: S3Server = request.getfixturevalue("s3")
        prefix = f"kills-{uuid.uuid4().hex[:8]}"
        env |= s3.env(prefix)
        keys = lambda: s3.keys(prefix, "sha256")  # noqa: E731
        read = lambda key: s3.read(prefix, key)  # noqa: E731
    else:
        root = tmp_path / "archive"
        env["SYNC_ARCHIVE_URL"] = f"file://{root}"
        keys = lambda: [  # noqa: E731
            str(p.relative_to(root)) for p in (root / "sha256").rglob("*") if p.is_file()
        ]
        read = lambda key: (root / key).read_bytes()  # noqa: E731
    prepare(cli, sim, tmp_path, env["SYNC_ARCHIVE_URL"], **env)
    expected = expected_files(database_url, SHAPES_SLOW)

    landed = _kill_loop(cli, rng)
    assert landed >= KILLS // 2, f"only {landed} of {KILLS} kills landed mid-run"
    check_layout(keys(), read)  # after the kills: nothing partial under a content key

    _finish(cli, database_url)
    rows = mirror_state(database_url)
    for file_id, want in expected.items():
        assert rows[file_id].content_sha256 == want.sha256, file_id
    digests = check_layout(keys(), read)
    assert digests == {e.sha256 for e in expected.values()}
    assert len(keys()) == len(digests)  # each content once
