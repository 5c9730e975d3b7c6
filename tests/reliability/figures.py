"""The figures a reliability run produces, collected while it runs and written as one JSON file
(tests/reliability/figures/last-run.json, git-ignored) that docs/reliability.md is written from.

Each test adds what it measured under its own name; counters of the same name add up across
tests and backends, so ``kills_landed`` is the run's total while ``per_test`` keeps the detail.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections import Counter
from pathlib import Path
from typing import Any

FIGURES_DIR = Path(__file__).resolve().parent / "figures"
FIGURES_FILE = FIGURES_DIR / "last-run.json"


class Figures:
    def __init__(self, seed: int, soak: bool) -> None:
        self.seed = seed
        self.soak = soak
        self.started = time.time()
        self.totals: Counter[str] = Counter()
        self.by_kind: dict[str, Counter[str]] = {}
        self.per_test: dict[str, dict[str, Any]] = {}
        self.outcomes: dict[str, dict[str, Any]] = {}

    def add(self, test: str, **counts: int) -> None:
        """Add counters (they sum across tests) and keep them under the test's name."""
        self.totals.update(counts)
        entry = self.per_test.setdefault(test, {})
        for name, value in counts.items():
            entry[name] = entry.get(name, 0) + value

    def add_kinds(self, table: str, test: str, counts: dict[str, int]) -> None:
        """Add a breakdown by kind (faults by kind, poison by kind …)."""
        self.by_kind.setdefault(table, Counter()).update(counts)
        entry = self.per_test.setdefault(test, {}).setdefault(table, {})
        for kind, value in counts.items():
            entry[kind] = entry.get(kind, 0) + value

    def note(self, test: str, **values: Any) -> None:
        """Facts that do not add up (a seed, a bound, a tolerance)."""
        self.per_test.setdefault(test, {}).update(values)

    def outcome(self, test: str, outcome: str, seconds: float) -> None:
        self.outcomes[test] = {"outcome": outcome, "seconds": round(seconds, 2)}

    def as_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "soak": self.soak,
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started)),
            "wall_seconds": round(time.time() - self.started, 1),
            "test_seconds": round(sum(o["seconds"] for o in self.outcomes.values()), 1),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}",
            "totals": dict(sorted(self.totals.items())),
            "by_kind": {k: dict(sorted(v.items())) for k, v in sorted(self.by_kind.items())},
            "tests": {
                name: {**self.outcomes.get(name, {}), **self.per_test.get(name, {})}
                for name in sorted(set(self.outcomes) | set(self.per_test))
            },
        }

    def write(self, path: Path = FIGURES_FILE) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.as_dict(), indent=2, ensure_ascii=False) + "\n", "utf-8")
        return path
