"""The alert rules: valid for promtool, unit-tested alert by alert, made of real metrics, and
scoped to the release by the chart (promtool cases for name overrides and two releases)."""

from __future__ import annotations

import importlib.util
import re
import subprocess

import httpx
import yaml

from tests.chart.conftest import helm_path
from tests.conftest import require_tool
from tests.observability.prom import (
    EXTERNAL_METRICS,
    PROMETHEUS_HINT,
    REPO,
    RULE_TESTS_DIR,
    RULES_FILE,
    TARGET_LABELS,
    exported_series,
    rule_exprs,
    selectors,
)

RELEASE_CASES = RULE_TESTS_DIR / "releases"


def _render_rules_module():
    spec = importlib.util.spec_from_file_location(
        "render_rules", REPO / "observability" / "render_rules.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


def test_every_service_selector_carries_the_matcher_the_chart_scopes() -> None:
    """The chart scopes the rules by rewriting `job="fastapi-app"` (and the kube-state-metrics
    pod matcher): a selector without it would stay unscoped and see every release."""
    for alert, expr in rule_exprs().items():
        for match in re.finditer(r"([a-z_:]+)\{([^}]*)\}", expr):
            metric, matchers = match[1], match[2]
            if metric == "kube_pod_container_status_restarts_total":
                assert 'pod=~"fastapi-app-' in matchers, alert
            else:
                assert 'job="fastapi-app"' in matchers, (alert, metric)


def test_release_cases_run_on_the_chart_renders(tmp_path) -> None:
    """promtool unit tests of the rules as the chart renders them: after nameOverride and
    fullnameOverride, and for two releases side by side (observability/tests/releases/)."""
    promtool = require_tool("promtool", PROMETHEUS_HINT)
    module = _render_rules_module()
    tests = module.prepare(tmp_path, helm_path("helm4"))
    assert {t.name for t in tests} >= {"overrides_test.yaml", "two_releases_test.yaml"}
    renders = yaml.safe_load((RELEASE_CASES / "renders.yaml").read_text())
    for case in tests:
        for rule_file in yaml.safe_load(case.read_text())["rule_files"]:
            assert rule_file.startswith("rendered/")
            assert rule_file.removeprefix("rendered/").removesuffix(".yaml") in renders
    rendered = sorted(str(p) for p in (tmp_path / "rendered").glob("*.yaml"))
    check = subprocess.run([promtool, "check", "rules", *rendered], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    result = subprocess.run(
        [promtool, "test", "rules", *map(str, tests)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(tests)


def test_rendered_rules_select_only_their_release(tmp_path) -> None:
    module = _render_rules_module()
    helm = helm_path("helm4")
    for release, namespace, sets, job in [
        ("api", "shop", ["fullnameOverride=payments"], "payments"),
        ("blue", "prod", [], "blue-fastapi-app"),
    ]:
        groups = module.render_rules(helm, release, namespace, sets)["groups"]
        exprs = [r["expr"] for g in groups for r in g["rules"]]
        assert exprs
        for expr in exprs:
            for match in re.finditer(r"([a-z_:]+)\{([^}]*)\}", expr):
                assert f'namespace="{namespace}"' in match[2], expr
                assert f'job="{job}"' in match[2] or f'pod=~"{job}-' in match[2], expr
