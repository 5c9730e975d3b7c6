"""``tanma-sync console`` as a person runs it: serves the pages until SIGTERM (exit 0), and
refuses to listen off loopback without credentials."""

from __future__ import annotations

import re
import signal
import subprocess
import urllib.request
from pathlib import Path

from tests.cli_support import Cli
from tests.helpers import APP_KEY
from tests.waiting import until_sync


def test_console_serves_the_mirror_until_sigterm(cli: Cli, tmp_path: Path) -> None:
    assert cli("customers", "add", "--customer-id", "4242").code == 0
    log_path = tmp_path / "console.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            cli.command("console", "--port", "0"),
            cwd=cli.cwd,
            env=cli.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        until_sync(lambda: "console on http" in log_path.read_text(), 60, "the console to listen")
        found = re.search(r"console on (http://\S+/console/)", log_path.read_text())
        assert found, log_path.read_text()
        with urllib.request.urlopen(found.group(1) + "customers", timeout=30) as response:
            page = response.read().decode()
        assert ">4242<" in page and APP_KEY not in page
        with urllib.request.urlopen(found.group(1).removesuffix("console/"), timeout=30) as root:
            assert root.url.endswith("/console/")
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=30)
    assert code == 0, log_path.read_text()


def test_console_off_loopback_without_credentials_is_refused(cli: Cli) -> None:
    result = cli("console", "--host", "0.0.0.0", "--port", "0")
    assert result.code == 1
    assert "SYNC_CONSOLE_HOST: the console would listen on 0.0.0.0" in result.err
    assert "Traceback" not in result.both
