"""The rendered objects honour the runtime contract (SPEC "Chart" section and the service)."""

from __future__ import annotations

import json
import math
import os
from unittest import mock

import pytest
import yaml

from tests.chart.conftest import CHART, MATRIX, NAMESPACE, RELEASE, VALUES_DIR, one

# From the runtime contract (shared/SPEC.md): probe paths, ports, metrics path.
LIVENESS_PATH = "/livez"
READINESS_PATH = "/readyz"
HTTP_PORT = 8000
METRICS_PORT = 9000
METRICS_DIR = "/var/lib/fastapi-app/metrics"
FULLNAME = RELEASE  # release name contains the chart name


def _fullname(values: str) -> str:
    override = _values(values).get("nameOverride")
    return f"{RELEASE}-{override}" if override else FULLNAME


def _settings_cls():
    settings = pytest.importorskip("app.platform.settings")
    return settings.Settings


def _deployment(docs):
    return one(docs, "Deployment")


def _container(docs):
    return _deployment(docs)["spec"]["template"]["spec"]["containers"][0]


def _values(name: str) -> dict:
    merged = yaml.safe_load((CHART / "values.yaml").read_text())
    for f in MATRIX[name]:
        _merge(merged, yaml.safe_load(f.read_text()) or {})
    return merged


def _merge(base: dict, over: dict) -> None:
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _merge(base[k], v)
        else:
            base[k] = v


def test_ports_match_the_service_defaults() -> None:
    fields = _settings_cls().model_fields
    assert fields["port"].default == HTTP_PORT
    assert fields["metrics_port"].default == METRICS_PORT


@pytest.mark.parametrize("values", sorted(MATRIX))
def test_probes_and_ports(renders, values: str) -> None:
    c = _container(renders.docs(values))
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"http": HTTP_PORT, "metrics": METRICS_PORT}
    assert c["startupProbe"]["httpGet"] == {"path": LIVENESS_PATH, "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": LIVENESS_PATH, "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": READINESS_PATH, "port": "http"}
    env = {e["name"]: e for e in c["env"]}
    assert env["PROMETHEUS_MULTIPROC_DIR"]["value"] == METRICS_DIR


@pytest.mark.parametrize("values", sorted(MATRIX))
def test_configmap_is_a_valid_service_configuration(renders, values: str) -> None:
    """Every APP_* key is a real setting and the service accepts the values."""
    docs = renders.docs(values)
    data = one(docs, "ConfigMap", _fullname(values))["data"]
    settings_cls = _settings_cls()
    app_keys = {k for k in data if k.startswith("APP_")}
    known = {"APP_" + name.upper() for name in settings_cls.model_fields}
    extra = set(_values(values)["config"].get("extra", {}))
    assert app_keys - extra <= known, sorted(app_keys - extra - known)
    assert data["APP_PORT"] == str(HTTP_PORT) and data["APP_METRICS_PORT"] == str(METRICS_PORT)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("APP_")}
    with mock.patch.dict(os.environ, {**clean, **data}, clear=True):
        settings = settings_cls()
    assert settings.port == HTTP_PORT
    otel = {k for k in data if k.startswith("OTEL_")}
    assert {"OTEL_SERVICE_NAME", "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_TRACES_SAMPLER"} <= otel


@pytest.mark.parametrize("values", sorted(MATRIX))
def test_pod_hardening(renders, values: str) -> None:
    docs = renders.docs(values)
    dep = _deployment(docs)
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsUser"] == 10001
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    for path in ("/tmp", METRICS_DIR):
        assert "emptyDir" in volumes[mounts[path]], path
    assert set(c["resources"]["requests"]) >= {"cpu", "memory"}
    # a memory limit always; the CPU limit may be left out (the published render does)
    assert "memory" in c["resources"]["limits"]
    if "cpu" not in c["resources"]["limits"]:
        assert _values(values)["resources"]["limits"].get("cpu", "unset") is None
    sa = [d for d in docs if d["kind"] == "ServiceAccount"]
    assert sa and sa[0]["automountServiceAccountToken"] is False


@pytest.mark.parametrize("values", sorted(MATRIX))
def test_grace_period_covers_the_drain(renders, values: str) -> None:
    v = _values(values)
    drain = v["config"]["shutdownDelaySeconds"] + v["config"]["gracefulTimeoutSeconds"]
    pod = _deployment(renders.docs(values))["spec"]["template"]["spec"]
    grace = pod["terminationGracePeriodSeconds"]
    assert grace >= math.ceil(drain) + 5
    if v.get("terminationGracePeriodSeconds") is None:
        assert grace == math.ceil(drain) + 10
    else:
        assert grace == v["terminationGracePeriodSeconds"]


def test_drain_settings_reach_the_configmap(renders) -> None:
    data = one(renders.docs("custom-resources"), "ConfigMap", FULLNAME)["data"]
    assert data["APP_SHUTDOWN_DELAY_SECONDS"] == "10"
    assert float(data["APP_GRACEFUL_TIMEOUT_SECONDS"]) == 30.5


@pytest.mark.parametrize(
    ("sets", "workers"),
    [
        ((), "1"),
        (("resources.limits.cpu=1500m",), "2"),
        (("resources.limits.cpu=2",), "2"),
        (("resources.limits.cpu=250m",), "1"),
        (("resources.limits.cpu=2.5",), "3"),
        (("resources.limits.cpu=1500m", "config.workers=4"), "4"),
        # no CPU limit (many platforms forbid them): the CPU request, rounded up, at least 1
        (("resources.limits.cpu=null",), "1"),
        (("resources.limits.cpu=null", "resources.requests.cpu=1500m"), "2"),
        (("resources.limits.cpu=null", "resources.requests.cpu=3"), "3"),
        (("resources.limits.cpu=null", "resources.requests.cpu=50m"), "1"),
        (("resources.limits.cpu=null", "resources.requests.cpu=3", "config.workers=2"), "2"),
        # the limit wins over the request
        (("resources.limits.cpu=2", "resources.requests.cpu=500m"), "2"),
        # neither: the service reads its cgroup quota
        (("resources.limits.cpu=null", "resources.requests.cpu=null"), None),
    ],
)
def test_workers_follow_the_cpu_limit_else_the_request(renders, sets, workers) -> None:
    data = one(renders.custom(*sets), "ConfigMap", FULLNAME)["data"]
    assert data.get("APP_WORKERS") == workers


def test_config_change_rolls_the_pods(renders) -> None:
    def checksum(*sets):
        dep = _deployment(renders.custom(*sets))
        return dep["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    base = checksum()
    assert checksum("config.logLevel=debug") != base
    assert checksum("otel.exporterEndpoint=http://collector:4318") != base
    assert checksum("replicaCount=5") == base


def test_otel_resource_attributes_from_the_downward_api(renders) -> None:
    env = _container(renders.docs("all-on"))["env"]
    names = [e["name"] for e in env]
    field_paths = {
        e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in env if "valueFrom" in e
    }
    attrs_index = names.index("OTEL_RESOURCE_ATTRIBUTES")
    attrs = dict(item.split("=", 1) for item in env[attrs_index]["value"].split(","))
    expected = {
        "k8s.pod.name": "metadata.name",
        "k8s.namespace.name": "metadata.namespace",
        "k8s.node.name": "spec.nodeName",
    }
    for attr, field_path in expected.items():
        ref = attrs[attr]
        assert ref.startswith("$(") and ref.endswith(")"), ref
        var = ref[2:-1]
        assert field_paths[var] == field_path
        assert names.index(var) < attrs_index, f"{var} must be defined before its use"
    assert attrs["deployment.environment"] == "production"


@pytest.mark.parametrize("values", sorted(MATRIX))
def test_topology_spread_over_nodes_and_zones(renders, values: str) -> None:
    dep = _deployment(renders.docs(values))
    pod = dep["spec"]["template"]["spec"]
    keys = {c["topologyKey"] for c in pod["topologySpreadConstraints"]}
    assert keys == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
    for c in pod["topologySpreadConstraints"]:
        assert c["labelSelector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]


def test_image_by_tag_and_by_digest(renders) -> None:
    default = _container(renders.docs("default"))
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert default["image"] == f"fastapi-app:{chart['appVersion']}"
    assert default["imagePullPolicy"] == "IfNotPresent"
    digest = yaml.safe_load((VALUES_DIR / "digest.yaml").read_text())["image"]
    pinned = _container(renders.docs("digest"))
    assert pinned["image"] == f"{digest['repository']}@{digest['digest']}"
    assert pinned["imagePullPolicy"] == "IfNotPresent"
    tagged = _container(renders.custom("image.tag=1.4.2"))
    assert tagged["image"] == "fastapi-app:1.4.2"


def test_service_ports(renders) -> None:
    svc = one(renders.docs("default"), "Service")
    ports = {p["name"]: (p["port"], p["targetPort"]) for p in svc["spec"]["ports"]}
    assert ports == {"http": (HTTP_PORT, "http"), "metrics": (METRICS_PORT, "metrics")}
    dep = _deployment(renders.docs("default"))
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]


def test_optional_objects_are_off_by_default(renders) -> None:
    present = {d["kind"] for d in renders.docs("default")}
    assert "NetworkPolicy" in present, "the NetworkPolicy is on by default"
    for kind in (
        "Ingress",
        "HTTPRoute",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ServiceMonitor",
        "PrometheusRule",
    ):
        assert kind not in present
    all_on = {d["kind"] for d in renders.docs("all-on")}
    assert {
        "Ingress",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "ServiceMonitor",
        "PrometheusRule",
        "HTTPRoute",
    } <= all_on


def test_ingress_exposes_only_http(renders) -> None:
    ing = one(renders.docs("all-on"), "Ingress")
    backends = [
        p["backend"]["service"] for rule in ing["spec"]["rules"] for p in rule["http"]["paths"]
    ]
    assert backends and all(b == {"name": FULLNAME, "port": {"name": "http"}} for b in backends)
    assert "metrics" not in json.dumps(ing["spec"])


def test_autoscaling(renders) -> None:
    docs = renders.docs("autoscaling")
    hpa = one(docs, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": FULLNAME,
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    assert "replicas" not in _deployment(docs)["spec"], "the HPA owns the replica count"
    assert _deployment(renders.docs("default"))["spec"]["replicas"] == 2


def test_pdb(renders) -> None:
    assert one(renders.docs("autoscaling"), "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    pdb = one(renders.docs("all-on"), "PodDisruptionBudget")["spec"]
    assert pdb["minAvailable"] == 2 and "maxUnavailable" not in pdb


def test_network_policy(renders) -> None:
    docs = renders.docs("all-on")
    np = one(docs, "NetworkPolicy", FULLNAME)
    dep = _deployment(docs)
    assert np["spec"]["podSelector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]
    rules = {r["ports"][0]["port"]: r for r in np["spec"]["ingress"]}
    assert set(rules) == {"http", "metrics"}
    http_sources = rules["http"]["from"]
    assert {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}
    } in http_sources
    metrics_sources = rules["metrics"]["from"]
    ns_peers = [p for p in metrics_sources if "namespaceSelector" in p]
    assert ns_peers == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
        }
    ]
    # the only other peer is the chart's own test Pod, in the release namespace
    test_pod = one(docs, "Pod")
    others = [p for p in metrics_sources if "namespaceSelector" not in p]
    for peer in others:
        selector = peer["podSelector"]["matchLabels"]
        assert selector.items() <= test_pod["metadata"]["labels"].items()


def test_service_monitor(renders) -> None:
    docs = renders.docs("all-on")
    sm = one(docs, "ServiceMonitor")
    svc = one(docs, "Service")
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert sm["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = sm["spec"]["endpoints"]
    assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics"
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_prometheus_rule_comes_from_the_rules_file(renders) -> None:
    """The same alerts as the file, each expression scoped to this release's job and namespace."""
    rule = one(renders.docs("all-on"), "PrometheusRule")
    source = yaml.safe_load((CHART / "files" / "prometheus-rules.yaml").read_text())
    assert rule["spec"]["groups"], "no rule groups"
    rendered = [r for g in rule["spec"]["groups"] for r in g["rules"]]
    original = [r for g in source["groups"] for r in g["rules"]]
    assert [r["alert"] for r in rendered] == [r["alert"] for r in original]
    scoped = f'job="{FULLNAME}", namespace="{NAMESPACE}"'
    for r, o in zip(rendered, original, strict=True):
        assert {k: v for k, v in r.items() if k != "expr"} == {
            k: v for k, v in o.items() if k != "expr"
        }
        expected = o["expr"].replace('job="fastapi-app"', scoped)
        expected = expected.replace(
            'pod=~"fastapi-app-', f'namespace="{NAMESPACE}", pod=~"{FULLNAME}-'
        )
        assert r["expr"] == expected, r["alert"]
        assert f'namespace="{NAMESPACE}"' in r["expr"], r["alert"]


def test_grafana_dashboard_configmap(renders) -> None:
    cm = one(renders.docs("all-on"), "ConfigMap", f"{FULLNAME}-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    source = json.loads((CHART / "files" / "grafana-dashboard.json").read_text())
    (key,) = cm["data"]
    assert key == f"{NAMESPACE}-{FULLNAME}.json"
    board = json.loads(cm["data"][key])
    assert [p["title"] for p in board["panels"]] == [p["title"] for p in source["panels"]]
    assert board["uid"] != source["uid"] and len(board["uid"]) <= 40
    assert f"{NAMESPACE}/{FULLNAME}" in board["title"]


def test_helm_test_pod(renders) -> None:
    docs = renders.docs("default")
    pod = one(docs, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env["READYZ_URL"] == f"http://{FULLNAME}:{HTTP_PORT}{READINESS_PATH}"
    assert env["METRICS_URL"] == f"http://{FULLNAME}:{METRICS_PORT}/metrics"
    svc = one(docs, "Service")
    selector = svc["spec"]["selector"].items()
    assert not selector <= pod["metadata"]["labels"].items(), "the Service must not select it"
    assert pod["spec"]["restartPolicy"] == "Never"


def test_tests_can_be_disabled(renders) -> None:
    assert not [d for d in renders.custom("tests.enabled=false") if d["kind"] == "Pod"]
