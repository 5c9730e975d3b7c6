"""CI can never pass on SQLite alone: without PostgreSQL its half of the suite is skipped with
the reason, and TANMA_REQUIRE_POSTGRES=1 (set by .ci/run) turns that skip into a failure."""

from __future__ import annotations

import subprocess
import sys

from tests.cli_support import PROJECT, clean_env

# A port nothing listens on: PostgreSQL "not reachable".
NOWHERE = "postgresql://postgres@127.0.0.1:9/postgres"
ONE_PG_TEST = (
    "tests/integration/test_migrations.py::test_upgrade_is_idempotent_and_downgrade_clears"
)


def run_pytest(**env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"{ONE_PG_TEST}[postgresql]"],
        cwd=PROJECT,
        env=clean_env() | {"TANMA_TEST_PG_URL": NOWHERE} | env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_without_postgres_the_half_is_skipped_with_the_reason() -> None:
    result = run_pytest(TANMA_REQUIRE_POSTGRES="")
    assert result.returncode == 0, result.stdout
    assert "1 skipped" in result.stdout
    assert "PostgreSQL not reachable at " + NOWHERE in result.stdout


def test_when_required_a_missing_postgres_fails_the_run() -> None:
    result = run_pytest(TANMA_REQUIRE_POSTGRES="1")
    assert result.returncode == 1, result.stdout
    assert "1 error" in result.stdout and "TANMA_REQUIRE_POSTGRES is set" in result.stdout
