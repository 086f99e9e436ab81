"""Item 6 of issue 14: server-side checks on the real API server.

`helm install --dry-run=server` with every optional feature on (Helm 3 and Helm 4) is
admitted, and the renders a real API server refuses are refused by the chart first, with a
message naming the value. For each of those, the object the chart would otherwise produce
is sent to the API server to show that it is indeed refused there (why the guard exists)."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.cluster.conftest import HELM, HELM3, ROOT, Cluster, restricted_namespace

CHART = ROOT / "helm" / "fastapi-app"
ALL_ON = ROOT / "tests" / "chart" / "values" / "all-on.yaml"
NS = "dry-run"


@pytest.fixture(scope="module")
def dry_ns(cluster: Cluster) -> str:
    restricted_namespace(cluster, NS)
    cluster.kc("apply", "-f", str(ROOT / "tests/cluster/manifests/crds.yaml"))
    cluster.wait(
        "the monitoring CRDs to be established",
        lambda: (
            cluster.kc(
                "wait",
                "--for=condition=Established",
                "--timeout=5s",
                "crd/servicemonitors.monitoring.coreos.com",
                "crd/prometheusrules.monitoring.coreos.com",
                check=False,
            ).returncode
            == 0
        ),
        60,
    )
    return NS


@pytest.mark.parametrize("helm", [HELM3, HELM], ids=["helm3", "helm4"])
def test_dry_run_server_every_feature_on(cluster: Cluster, dry_ns: str, helm) -> None:
    out = cluster.helm(
        "install",
        "all-on",
        str(CHART),
        "-n",
        dry_ns,
        "-f",
        str(ALL_ON),
        "--dry-run=server",
        helm=helm,
    ).stdout
    docs = [d for d in yaml.safe_load_all(out.split("MANIFEST:", 1)[1].split("NOTES:", 1)[0]) if d]
    admitted = {(d["kind"], d["metadata"]["name"]) for d in docs}
    # every object of the all-on render (hooks aside) went through the API server
    rendered = {
        (d["kind"], d["metadata"]["name"])
        for d in _render(cluster, "-f", str(ALL_ON), name="all-on")
        if "helm.sh/hook" not in (d["metadata"].get("annotations") or {})
    }
    assert rendered <= admitted, rendered - admitted
    kinds = {k for k, _ in admitted}
    for kind in ("Deployment", "Ingress", "HorizontalPodAutoscaler", "ServiceMonitor"):
        assert kind in kinds, sorted(kinds)
    # a dry run: nothing was created
    assert cluster.kc("-n", dry_ns, "get", "deployments", "-o", "name").stdout.strip() == ""


def _render(cluster: Cluster, *sets: str, name: str = "probe") -> list[dict]:
    out = cluster.helm("template", name, str(CHART), "-n", NS, *sets).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def _apply_dry(cluster: Cluster, obj: dict):
    return cluster.kc("apply", "--dry-run=server", "-f", "-", input=json.dumps(obj), check=False)


def _one(docs: list[dict], kind: str, suffix: str = "") -> dict:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(suffix))


CASES = {
    "metrics-port-equals-port": (["--set", "service.metricsPort=8000"], "service.metricsPort"),
    "long-name-override": (["--set", "nameOverride=" + "a" * 60], "nameOverride"),
    "pod-label-repeats-selector": (
        ["--set", "podLabels.app\\.kubernetes\\.io/name=other"],
        "podLabels",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_chart_refuses_what_the_api_server_would(cluster: Cluster, dry_ns: str, case: str) -> None:
    sets, value = CASES[case]
    proc = cluster.helm(
        "install", "refused", str(CHART), "-n", dry_ns, *sets, "--dry-run=server", check=False
    )
    assert proc.returncode != 0, f"the chart accepted {sets}:\n{proc.stdout[:2000]}"
    assert value in proc.stderr, proc.stderr
    assert cluster.helm("list", "-n", dry_ns, "-q").stdout.strip() == ""


def test_api_server_refuses_the_unguarded_shapes(cluster: Cluster, dry_ns: str) -> None:
    """The objects the three guards prevent, built from the default render, are refused by
    the API server itself (the default render is admitted)."""
    docs = _render(cluster)
    service = _one(docs, "Service")
    deployment = _one(docs, "Deployment")
    assert _apply_dry(cluster, service).returncode == 0
    assert _apply_dry(cluster, deployment).returncode == 0

    # service.port == service.metricsPort: two Service ports with one number
    dup = json.loads(json.dumps(service))
    first = dup["spec"]["ports"][0]
    dup["spec"]["ports"] = [first, {**first, "name": "metrics", "targetPort": "metrics"}]
    refused = _apply_dry(cluster, dup)
    assert refused.returncode != 0 and "Duplicate value" in refused.stderr, refused.stderr

    # a 60-character nameOverride: a label value over 63 characters
    long = json.loads(json.dumps(deployment))
    value = "a" * 60 + "-test"
    long["metadata"]["labels"]["app.kubernetes.io/name"] = value
    refused = _apply_dry(cluster, long)
    assert refused.returncode != 0 and "63" in refused.stderr, refused.stderr

    # a podLabels key that repeats a selector key: the template no longer matches the selector
    clash = json.loads(json.dumps(deployment))
    clash["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] = "other"
    refused = _apply_dry(cluster, clash)
    assert refused.returncode != 0
    assert "does not match template" in refused.stderr, refused.stderr
