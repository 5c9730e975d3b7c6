"""What each layer loads: a command pays only for what it uses."""

from __future__ import annotations

import subprocess
import sys

import pytest


def loaded_after(statement: str, modules: list[str]) -> dict[str, bool]:
    probe = f"import sys; {statement}; print(*[m in sys.modules for m in {modules!r}])"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    return dict(zip(modules, (word == "True" for word in done.stdout.split()), strict=True))


@pytest.mark.parametrize(
    ("statement", "absent"),
    [
        # The HTTP client does not load the database layer.
        ("import sync.api.client", ["sqlalchemy", "sync.mirror.store"]),
        # Only the daemon loads the scheduler and the metrics library; settings parse no cron.
        (
            "import sync.cli.app; from sync.config.settings import load_settings; load_settings()",
            ["apscheduler", "prometheus_client", "sync.daemon.schedule"],
        ),
        # Only archiving loads the object-store library; the archive's rules load no I/O.
        ("import sync.cli.app", ["obstore", "sync.archive.runner"]),
        (
            "import sync.archive.policy, sync.archive.sizes, sync.archive.layout, "
            "sync.archive.bodies, sync.archive.outcomes, sync.archive.location",
            ["aiohttp", "obstore", "sqlalchemy", "sync.config.settings"],
        ),
        # The pure core loads no I/O library.
        (
            "import sync.domain.records, sync.domain.pager, sync.domain.ids",
            ["aiohttp", "sqlalchemy", "sync.config.settings"],
        ),
    ],
)
def test_a_layer_loads_only_what_it_needs(statement: str, absent: list[str]) -> None:
    loaded = loaded_after(statement, absent)
    assert not any(loaded.values()), f"{statement} loaded {[m for m, on in loaded.items() if on]}"
