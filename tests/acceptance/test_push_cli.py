"""`push register` against the simulator, whose confirmation push reaches a running daemon, and
`push status` reading the inbox (both databases)."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path
from typing import Any

from sync.sim import SimDataset
from tests.cli_support import Cli
from tests.waiting import until_sync


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_register_then_the_confirmation_push_shows_in_status(
    cli: Cli, sim_factory: Any, tmp_path: Path
) -> None:
    sim = sim_factory(SimDataset(seed=3, customers=2, mean_files=1))
    cli.env["TANMA_BASE_URL"] = sim.base_url
    port = _free_port()
    env = {
        "SYNC_PUSH_LISTEN": f"127.0.0.1:{port}",
        "SYNC_HTTP_LISTEN": "off",
        "SYNC_SCHEDULE": "1h",
        "SYNC_POLL_MAX_INTERVAL": "2h",
        "SYNC_MAX_STALENESS": "3h",
        "SYNC_FULL_SCHEDULE": "off",
    }
    with (tmp_path / "daemon.log").open("wb") as log:
        daemon = subprocess.Popen(
            cli.command("daemon"),
            cwd=cli.cwd,
            env={**cli.env, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        until_sync(
            lambda: (tmp_path / "daemon.log").read_text().count("push_receiver_listening") > 0,
            60,
            "the receiver to listen",
        )
        bad = cli("push", "register", "ftp://example.com")
        assert bad.code == 2 and "must start with https://" in bad.err
        done = cli(
            "push",
            "register",
            f"http://127.0.0.1:{port}/tanmarket/push",
            "--types",
            "tag_info,new_qw_customer",
        )
        assert done.code == 0, done.both
        assert "registered" in done.out and "register` push" in done.out
        assert "not https" in done.out

        def confirmed() -> bool:
            shown = cli("push", "status", **env)
            return shown.code == 0 and "register 1" in shown.out

        until_sync(confirmed, 60, "the confirmation push in the inbox")
        shown = cli("push", "status")
        assert "rejected: none" in shown.out
        assert "pushes received 1" in shown.out
    finally:
        daemon.terminate()
        assert daemon.wait(30) == 0
