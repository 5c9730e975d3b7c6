"""The operations files parse, say what they must, and pass promtool's own checks."""

from __future__ import annotations

import configparser
import subprocess

from sync.config.settings import Settings
from sync.daemon.metrics import DaemonMetrics
from tests.deploy_files import (
    RULE_TESTS,
    RULES,
    UNIT,
    dashboard,
    named_metrics,
    promtool,
    rules,
)

ALERTS = {
    "TanmaSyncApiUnreachable",
    "TanmaSyncCredentialsRejected",
    "TanmaSyncStalenessOverBound",
    "TanmaSyncFailingCustomers",
    "TanmaSyncArchiveBacklog",
    "TanmaSyncPushReceiverSilent",
}


def _registry_families() -> list:
    metrics = DaemonMetrics(lambda: {"outcomes": {"ok": 1}, "retries": 0, "rate_limit_waits": 0})
    return list(metrics.registry.collect())


def test_the_alert_rules_cover_each_failure_an_operator_must_hear_of() -> None:
    loaded = rules()
    assert {rule["alert"] for rule in loaded} >= ALERTS
    for rule in loaded:
        assert rule["expr"].strip(), rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_promtool_accepts_the_rules_and_their_unit_tests_pass() -> None:
    tool = promtool()
    for args in (["check", "rules", str(RULES)], ["test", "rules", str(RULE_TESTS)]):
        done = subprocess.run(
            [tool, *args], capture_output=True, text=True, timeout=60, cwd=RULES.parent
        )
        assert done.returncode == 0, done.stdout + done.stderr


def test_the_dashboard_panels_each_query_prometheus_and_do_not_overlap() -> None:
    board = dashboard()
    assert board["uid"] == "tanma-sync"
    taken: set[tuple[int, int]] = set()
    for panel in board["panels"]:
        grid = panel["gridPos"]
        cells = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & taken, f"panel {panel['title']!r} overlaps another"
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        taken |= cells
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]


def test_every_metric_the_files_name_is_one_the_daemon_defines() -> None:
    samples: set[str] = set()
    for family in _registry_families():
        samples.add(family.name)
        suffixes: tuple[str, ...] = ()
        if family.type == "counter":
            suffixes = ("_total",)
        elif family.type == "histogram":
            suffixes = ("_bucket", "_count", "_sum")
        elif family.type == "info":
            suffixes = ("_info",)
        samples |= {family.name + suffix for suffix in suffixes}
    assert named_metrics() - samples == set()


def test_metric_names_follow_prometheus_conventions() -> None:
    families = _registry_families()
    for family in families:
        assert family.name.startswith("tanma_sync_"), family.name
        for sample in family.samples:
            assert not any("customer" in label for label in sample.labels), sample
    kinds = {family.name: family.type for family in families}
    assert kinds.get("tanma_sync_build") == "info"
    info = next(f for f in families if f.name == "tanma_sync_build")
    assert info.samples[0].labels["version"]


def test_the_systemd_unit_runs_the_daemon_and_waits_out_its_shutdown() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read(UNIT, encoding="utf-8")
    service = unit["Service"]
    assert service["ExecStart"].split()[-1] == "daemon"
    assert service["KillSignal"] == "SIGTERM"
    stop_s = float(service["TimeoutStopSec"])
    assert stop_s > Settings.model_fields["sync_shutdown_timeout"].default
    assert "APP_KEY" not in service.get("Environment", "")
    assert unit["Install"]["WantedBy"] == "multi-user.target"
