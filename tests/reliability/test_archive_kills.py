"""Crash consistency of the archive: SIGKILL a real `tanma-sync archive` at random instants
while it downloads (many of the files are slow), again and again, into a directory and into
S3; then let one run finish.

Whatever the instant: no object under a content key is partial (each hashes to its name), and
after the finishing run every allowed file is archived with its true hash, each content stored
exactly once. Temporaries of killed downloads may remain under tmp/; nothing reads them.
"""

from __future__ import annotations

import random
import time
import uuid
from pathlib import Path

import pytest

from sync.sim import SimDataset
from sync.sim.files import FileShapes
from tests.archive_support import check_layout, expected_files, mirror_state, prepare
from tests.cli_support import Cli, Kill, run_and_kill
from tests.s3_server import S3Server
from tests.waiting import until_sync

KILLS = 8
CLAIM_TTL_S = 1.0
CHUNK_S = 0.3  # the simulator's pause before each 64 KiB chunk of a slow file
# Half the files are slow and most of those span two chunks or more (0.6 s or longer), so a
# run killed within KILL_WINDOW_S of its start can finish only the fast and the one-chunk ones.
SHAPES_SLOW = FileShapes(min_bytes=20_000, max_bytes=300_000, slow=0.5, duplicate=0.1, seed=9)
KILL_WINDOW_S = 2 * CHUNK_S


def _kill_loop(cli: Cli, rng: random.Random) -> list[Kill]:
    kills = []
    for _ in range(KILLS):
        # Timed from `archive_started`, not from the process's start: start-up takes as long
        # as the machine's load makes it, and would otherwise eat into the window.
        kill = run_and_kill(
            cli, ("archive",), rng.uniform(0.0, KILL_WINDOW_S), from_event="archive_started"
        )
        assert "Traceback" not in kill.err, kill.err
        kills.append(kill)
        # A killed run's claims hold its files until they lapse; waiting that out leaves the
        # next run every slow file still to do, not only those no earlier run had reached.
        time.sleep(CLAIM_TTL_S)
    return kills


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
        slow_file_chunk_s=CHUNK_S,
    )
    env = {
        "SYNC_ARCHIVE_CLAIM_TTL": f"{CLAIM_TTL_S}s",
        "SYNC_ARCHIVE_MAX_BYTES": "10000000",
        "SYNC_LOG_LEVEL": "info",  # run_and_kill times each kill from `archive_started`
    }
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

    kills = _kill_loop(cli, rng)
    # Every kill lands while files are still downloading: the slow files outlast the window.
    missed = [(k.code, round(k.after_s, 2), k.err[-600:]) for k in kills if not k.landed]
    assert not missed, f"{len(missed)} of {KILLS} runs ended before their kill: {missed}"
    check_layout(keys(), read)  # after the kills: nothing partial under a content key

    _finish(cli, database_url)
    rows = mirror_state(database_url)
    for file_id, want in expected.items():
        assert rows[file_id].content_sha256 == want.sha256, file_id
    digests = check_layout(keys(), read)
    assert digests == {e.sha256 for e in expected.values()}
    assert len(keys()) == len(digests)  # each content once
