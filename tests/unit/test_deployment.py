"""The deployment files: the compose file's shape everywhere, `docker compose config` where a
docker client with the compose plugin exists, and the settings the container needs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

PROJECT = Path(__file__).resolve().parents[2]
COMPOSE = PROJECT / "docker-compose.yml"


def compose_problem() -> str | None:
    if shutil.which("docker") is None:
        return "no docker client on this machine"
    probe = subprocess.run(
        ["docker", "compose", "version"], capture_output=True, text=True, check=False
    )
    if probe.returncode != 0:
        detail = (probe.stderr or probe.stdout).strip().splitlines()
        return f"docker has no compose plugin here ({detail[0] if detail else probe.returncode})"
    return None


def test_docker_compose_accepts_the_file(tmp_path: Path) -> None:
    problem = compose_problem()
    if problem:
        pytest.skip(f"`docker compose config` not checked: {problem}")
    done = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE), "config", "--quiet"],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_the_compose_file_wires_postgres_migration_and_daemon() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    assert set(services) == {"postgres", "migrate", "tanma-sync"}
    migrate, worker = services["migrate"], services["tanma-sync"]
    assert migrate["command"] == ["db", "upgrade"]
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert worker["command"] == ["--no-migrate", "daemon"]
    assert worker["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert "/healthz" in " ".join(worker["healthcheck"]["test"])
    assert worker["environment"]["SYNC_HTTP_LISTEN"].endswith(":9477")
    # A stop must leave the daemon its whole graceful shutdown (SYNC_SHUTDOWN_TIMEOUT=30s).
    assert int(worker["stop_grace_period"].rstrip("s")) > 30
    for service in (migrate, worker):
        assert service["env_file"][0]["required"] is False  # works before .env exists


def test_the_image_runs_the_daemon_and_exposes_its_listener() -> None:
    dockerfile = (PROJECT / "Dockerfile").read_text()
    assert 'CMD ["daemon"]' in dockerfile and "EXPOSE 9477" in dockerfile
    assert "USER tanma" in dockerfile  # not root
