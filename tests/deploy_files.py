"""What the files under deploy/ name: the metrics their queries use, and promtool when the
machine has it (.ci/run installs it and sets TANMA_REQUIRE_PROMTOOL=1, so CI cannot pass
without it)."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
DASHBOARD = DEPLOY / "grafana" / "tanma-sync.json"
RULES = DEPLOY / "prometheus" / "alerts.yml"
RULE_TESTS = DEPLOY / "prometheus" / "alerts.test.yml"
UNIT = DEPLOY / "systemd" / "tanma-sync.service"

_METRIC = re.compile(r"\btanma_sync_[a-z0-9_]+")


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"]]


def dashboard_queries() -> list[str]:
    return [
        target["expr"] for panel in dashboard()["panels"] for target in panel.get("targets", [])
    ]


def named_metrics() -> set[str]:
    """Every tanma_sync_* series a dashboard query or an alert rule reads."""
    texts = dashboard_queries() + [rule["expr"] for rule in rules()]
    return {name for text in texts for name in _METRIC.findall(text)}


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("TANMA_REQUIRE_PROMTOOL") == "1":
            pytest.fail("promtool is not installed (TANMA_REQUIRE_PROMTOOL=1)")
        pytest.skip("promtool is not installed")
    return found
