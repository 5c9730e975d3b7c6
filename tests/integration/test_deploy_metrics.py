"""deploy/: every metric the Grafana dashboard and the Prometheus alert rules name exists in a
real daemon's /metrics scrape, the names follow Prometheus conventions, and the rules parse
(with promtool where it is installed, `.ci/run` installs it; a structure check always)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from sync.mirror.store import MirrorStore
from sync.sim import SimConfig, SimDataset, Simulator
from tests.helpers import APP_ID, APP_KEY
from tests.integration.test_daemon import daemon_settings, everyone_synced, get, running_daemon
from tests.integration.test_engine import import_all
from tests.waiting import until

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "tanma-sync.json"
# Metrics the deploy files name before the code that exports them exists. Only these may be
# missing from a scrape; each goes from this list when its feature lands.
PENDING_METRICS = frozenset(
    {
        # Message push (a counter, labels type and outcome): the push receiver exports it.
        "tanma_sync_push_received_total",
    }
)
_NAME = re.compile(r"\btanma_sync_[a-z0-9_]+\b")


def rule_expressions() -> list[str]:
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule["expr"] for group in document["groups"] for rule in group["rules"]]


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def test_the_rules_file_has_the_shape_prometheus_reads() -> None:
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    assert set(document) == {"groups"}
    names = []
    for group in document["groups"]:
        assert isinstance(group["name"], str) and group["rules"]
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
            assert isinstance(rule["alert"], str) and isinstance(rule["expr"], str)
            assert rule["annotations"]["summary"]
            if "for" in rule:
                assert re.fullmatch(r"\d+[smhd]", rule["for"]), rule["for"]
            names.append(rule["alert"])
    assert len(names) == len(set(names))
    for wanted in (
        "ApiUnreachable",
        "CredentialsRejected",
        "StalenessOverBound",
        "CustomersFailing",
        "ArchiveBacklog",
        "PushReceiverSilent",
    ):
        assert f"TanmaSync{wanted}" in names


def test_promtool_accepts_the_rules() -> None:
    if shutil.which("promtool") is None:
        pytest.skip("promtool is not installed (Debian's prometheus package has it)")
    done = subprocess.run(
        ["promtool", "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


async def test_every_metric_the_deploy_files_name_is_scraped(
    store: MirrorStore, database_url: str
) -> None:
    dataset = SimDataset(seed=51, customers=4, mean_files=3)
    async with Simulator(dataset, SimConfig(app_id=APP_ID, app_key=APP_KEY)) as simulator:
        await import_all(store, dataset)
        settings = daemon_settings(simulator.base_url, database_url)
        async with running_daemon(settings, store) as daemon:
            await until(lambda: everyone_synced(store, 4), 60, "every customer to sync")
            status, text = await get(daemon, "/metrics")
    assert status == 200
    families = list(text_string_to_metric_families(text))
    scraped = {sample.name for family in families for sample in family.samples}
    named = {
        name
        for expr in [*rule_expressions(), *dashboard_expressions()]
        for name in _NAME.findall(expr)
    }
    assert named - scraped == set(PENDING_METRICS), sorted(named - scraped)
    # Conventions: one prefix, counters end in _total, an _info metric carries the version,
    # and no label names a customer (50,000 customers would be 50,000 series).
    for family in families:
        assert family.name.startswith("tanma_sync_"), family.name
        for sample in family.samples:
            assert not any("customer" in label for label in sample.labels), sample
            if family.type == "counter":
                assert sample.name.endswith("_total"), sample.name
    info = [s for f in families for s in f.samples if s.name == "tanma_sync_build_info"]
    assert info and info[0].labels["version"]
    values = {s.name: s.value for f in families for s in f.samples if not s.labels}
    assert values["tanma_sync_api_reachable"] == 1
    assert values["tanma_sync_credentials_rejected"] == 0
    assert values["tanma_sync_max_staleness_seconds"] == settings.sync_max_staleness
