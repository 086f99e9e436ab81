"""The alert rules: valid for promtool, unit-tested alert by alert, made of real metrics."""

from __future__ import annotations

import re
import subprocess

import httpx
import yaml

from tests.conftest import require_tool
from tests.observability.prom import (
    EXTERNAL_METRICS,
    PROMETHEUS_HINT,
    RULE_TESTS_DIR,
    RULES_FILE,
    TARGET_LABELS,
    exported_series,
    rule_exprs,
    selectors,
)

REQUIRED_ALERTS = {
    "FastAPIAppHighErrorRatio",
    "FastAPIAppHighLatencyP99",
    "FastAPIAppInFlightSaturation",
    "FastAPIAppWorkerRestarts",
    "FastAPIAppTargetDown",
}


def test_rules_file_is_a_plain_prometheus_rules_document() -> None:
    text = RULES_FILE.read_text()
    doc = yaml.safe_load(text)
    assert list(doc) == ["groups"]
    # Rendered by the chart with .Files.Get: no Helm templating, only alert templates.
    for template in re.findall(r"\{\{(.*?)\}\}", text):
        assert template.strip().startswith(("$labels", "$value")), template
    rules = [rule for group in doc["groups"] for rule in group["rules"]]
    assert REQUIRED_ALERTS <= {rule["alert"] for rule in rules}
    for rule in rules:
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]


def test_promtool_check_rules() -> None:
    promtool = require_tool("promtool", PROMETHEUS_HINT)
    result = subprocess.run(
        [promtool, "check", "rules", str(RULES_FILE)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass() -> None:
    promtool = require_tool("promtool", PROMETHEUS_HINT)
    files = sorted(str(p) for p in RULE_TESTS_DIR.glob("*.yaml"))
    assert files
    result = subprocess.run([promtool, "test", "rules", *files], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    fires: set[str] = set()
    quiet: set[str] = set()
    for path in RULE_TESTS_DIR.glob("*.yaml"):
        doc = yaml.safe_load(path.read_text())
        for case in doc["tests"]:
            for check in case.get("alert_rule_test", []):
                (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    alerts = set(rule_exprs())
    assert alerts - fires == set(), "alerts never shown firing"
    assert alerts - quiet == set(), "alerts never shown staying quiet"


def test_rules_read_only_metrics_and_labels_the_service_exports(server) -> None:
    for path in ("/api/v1/hello", "/api/v1/wait?ms=0"):
        httpx.get(server.base_url + path)
    exported = exported_series(server.scrape())
    for alert, expr in rule_exprs().items():
        for name, labels in selectors(expr):
            if name in EXTERNAL_METRICS:
                continue
            assert name in exported, f"{alert}: {name} is not exported by the service"
            unknown = labels - exported[name] - TARGET_LABELS
            assert not unknown, f"{alert}: {name} has no label(s) {unknown}"
