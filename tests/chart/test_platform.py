"""The chart as platform teams run it: extension points, Gateway API, published Services,
NetworkPolicy defaults, overridable names and namespace, monitoring scoped to the release."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest
import yaml

from tests.chart.conftest import CHART, NAMESPACE, RELEASE, VALUES_DIR, one
from tests.observability.prom import selectors

ALL_ON = yaml.safe_load((VALUES_DIR / "all-on.yaml").read_text())
DEFAULTS = yaml.safe_load((CHART / "values.yaml").read_text())


def _pod(docs) -> dict:
    return one(docs, "Deployment")["spec"]["template"]["spec"]


def _app(docs) -> dict:
    (app,) = [c for c in _pod(docs)["containers"] if c["name"] == "app"]
    return app


# ------------------------------------------------------------------ extension points


def test_extra_volumes_and_mounts(renders) -> None:
    docs = renders.docs("all-on")
    pod = _pod(docs)
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["cache"] == ALL_ON["extraVolumes"][0]
    mounts = {m["name"]: m for m in _app(docs)["volumeMounts"]}
    assert mounts["cache"]["mountPath"] == "/var/cache/fastapi-app"
    # the chart's own volumes stay
    assert {"tmp", "metrics"} <= set(volumes)


def test_env_from_files_mounts_the_secret_and_points_the_variable_at_it(renders) -> None:
    """all-on sets DATABASE_PASSWORD_FILE: the file it names is really mounted."""
    docs = renders.docs("all-on")
    pod, app = _pod(docs), _app(docs)
    env = {e["name"]: e.get("value") for e in app["env"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = app["volumeMounts"]
    for entry in ALL_ON["envFromFiles"]:
        path = env[entry["env"]]
        (mount,) = [m for m in mounts if path.startswith(m["mountPath"] + "/")]
        assert mount.get("readOnly") is True
        assert path == f"{mount['mountPath']}/{entry['key']}"
        source = volumes[mount["name"]]["secret"]
        assert source["secretName"] == entry["secret"]
    # two keys of one Secret share one volume
    secret_volumes = [v for v in pod["volumes"] if "secret" in v]
    assert len(secret_volumes) == 1
    # the Secret is not exposed as env variables
    assert not any("secretRef" in s for s in app.get("envFrom", []))


def test_env_from_files_with_a_config_map(renders) -> None:
    docs = renders.custom(
        "envFromFiles[0].env=RULES_FILE",
        "envFromFiles[0].configMap=rules",
        "envFromFiles[0].key=rules.yaml",
    )
    pod, app = _pod(docs), _app(docs)
    env = {e["name"]: e.get("value") for e in app["env"]}
    (volume,) = [v for v in pod["volumes"] if "configMap" in v]
    assert volume["configMap"] == {"name": "rules", "defaultMode": 0o440}
    assert volume["name"].startswith("configmap-rules-")
    assert env["RULES_FILE"].endswith(f"/{volume['name']}/rules.yaml")


DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _write_values(tmp_path, values: dict):
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return (path,)


def test_env_from_files_gets_one_valid_volume_per_object(renders, tmp_path) -> None:
    """Two Secrets whose names share their first 56 characters, Secrets named with dots (a
    DNS subdomain, not a label) and a ConfigMap with a Secret's name: each gets a volume of
    its own, named a DNS label, and each variable points into the object it names."""
    prefix = "s" * 56
    entries = [
        {"env": "A_FILE", "secret": f"{prefix}-a", "key": "k"},
        {"env": "B_FILE", "secret": f"{prefix}-b", "key": "k"},
        {"env": "C_FILE", "secret": "db.creds", "key": "password"},
        {"env": "D_FILE", "secret": "db-creds", "key": "password"},
        {"env": "E_FILE", "configMap": "db.creds", "key": "ca.crt"},
        {"env": "F_FILE", "secret": "db.creds", "key": "user"},  # same Secret: same volume
    ]
    docs = renders.custom(values=_write_values(tmp_path, {"envFromFiles": entries}))
    pod, app = _pod(docs), _app(docs)
    env = {e["name"]: e.get("value") for e in app["env"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert len(volumes) == len(pod["volumes"]), "duplicate volume names"
    mounts = app["volumeMounts"]
    assert len({m["name"] for m in mounts}) == len(mounts)
    assert len({m["mountPath"] for m in mounts}) == len(mounts)
    used = {}
    for entry in entries:
        path = env[entry["env"]]
        (mount,) = [m for m in mounts if path.startswith(m["mountPath"] + "/")]
        assert path == f"{mount['mountPath']}/{entry['key']}"
        name = mount["name"]
        assert DNS_LABEL.match(name) and len(name) <= 63, name
        volume = volumes[name]
        if "secret" in entry:
            assert volume["secret"]["secretName"] == entry["secret"], entry
        else:
            assert volume["configMap"]["name"] == entry["configMap"], entry
        used.setdefault(("secret" in entry, entry.get("secret") or entry["configMap"]), set()).add(
            name
        )
    # one volume per object, distinct objects never share one
    assert all(len(names) == 1 for names in used.values()), used
    assert len(set().union(*used.values())) == len(used) == 5


def test_init_and_sidecar_containers_run_under_the_restricted_context(renders) -> None:
    docs = renders.docs("all-on")
    pod = _pod(docs)
    restricted = DEFAULTS["securityContext"]
    (init,) = pod["initContainers"]
    assert init["name"] == "migrate"
    assert init["securityContext"] == restricted
    sidecar = next(c for c in pod["containers"] if c["name"] == "cache-warmer")
    # the sidecar overrides one key (runAsUser) and keeps the rest of the restricted context
    assert sidecar["securityContext"] == {**restricted, "runAsUser": 10002}
    # strings in the containers went through tpl
    digest = ALL_ON["image"]["digest"]
    assert init["image"] == sidecar["image"] == f"{ALL_ON['image']['repository']}@{digest}"
    assert [c["name"] for c in pod["containers"]] == ["app", "cache-warmer"]


def test_a_sidecar_may_relax_its_context_only_explicitly(renders) -> None:
    docs = renders.custom(
        "sidecars[0].name=debug",
        "sidecars[0].image=busybox:1.37",
        "sidecars[0].securityContext.readOnlyRootFilesystem=false",
    )
    sidecar = next(c for c in _pod(docs)["containers"] if c["name"] == "debug")
    assert sidecar["securityContext"]["readOnlyRootFilesystem"] is False
    assert sidecar["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert sidecar["securityContext"]["runAsNonRoot"] is True


def test_lifecycle_hooks(renders) -> None:
    assert _app(renders.docs("all-on"))["lifecycle"] == ALL_ON["lifecycle"]
    assert "lifecycle" not in _app(renders.docs("default"))


def test_extra_objects_through_tpl(renders) -> None:
    docs = renders.docs("all-on")
    settings = one(docs, "ConfigMap", f"{RELEASE}-team-settings")
    assert settings["metadata"]["namespace"] == NAMESPACE
    assert settings["data"] == {"RELEASE": RELEASE}
    secret = one(docs, "Secret", "fastapi-app-db")  # given as a string
    assert secret["metadata"]["namespace"] == NAMESPACE
    # the envFrom source the app reads is that object
    app = _app(docs)
    refs = [s["configMapRef"]["name"] for s in app["envFrom"] if "configMapRef" in s]
    assert settings["metadata"]["name"] in refs
    # extraEnv goes through tpl as well
    env = {e["name"]: e.get("value") for e in app["env"]}
    assert env["RELEASE_NAME"] == RELEASE


def test_extra_objects_follow_the_namespace_override(renders, tmp_path) -> None:
    """Objects without metadata.namespace go where the chart's own objects go; an explicit
    namespace stays, and cluster-scoped kinds get none."""
    values = {
        "namespaceOverride": "edge",
        "extraObjects": [
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "plain"}},
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: from-string\n"
            "stringData:\n  note: |\n    two\n    lines\n",
            # one object written with the usual leading document marker
            "---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: marked\n",
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "pinned", "namespace": "elsewhere"},
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": "reader"},
                "rules": [],
            },
        ],
    }
    docs = renders.custom(values=_write_values(tmp_path, values))
    assert one(docs, "Deployment")["metadata"]["namespace"] == "edge"
    assert one(docs, "ConfigMap", "plain")["metadata"]["namespace"] == "edge"
    secret = one(docs, "Secret", "from-string")
    assert secret["metadata"]["namespace"] == "edge"
    assert secret["stringData"] == {"note": "two\nlines\n"}
    assert one(docs, "Secret", "marked")["metadata"]["namespace"] == "edge"
    assert one(docs, "ConfigMap", "pinned")["metadata"]["namespace"] == "elsewhere"
    assert "namespace" not in one(docs, "ClusterRole", "reader")["metadata"]
    # without namespaceOverride the object is left to Helm (the release namespace)
    values.pop("namespaceOverride")
    docs = renders.custom(values=_write_values(tmp_path, values))
    assert "namespace" not in one(docs, "ConfigMap", "plain")["metadata"]


# ------------------------------------------------------------------ Gateway API


def test_http_route_to_the_http_port_only(renders) -> None:
    docs = renders.docs("all-on")
    route = one(docs, "HTTPRoute")
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    spec = route["spec"]
    assert spec["parentRefs"] == ALL_ON["httpRoute"]["parentRefs"]
    assert spec["hostnames"] == ALL_ON["httpRoute"]["hostnames"]
    (rule,) = spec["rules"]
    assert rule["matches"] == ALL_ON["httpRoute"]["matches"]
    assert rule["timeouts"] == {"request": "30s"}
    svc = one(docs, "Service", RELEASE)
    http_port = next(p["port"] for p in svc["spec"]["ports"] if p["name"] == "http")
    assert rule["backendRefs"] == [
        {"group": "", "kind": "Service", "name": RELEASE, "port": http_port, "weight": 1}
    ]
    assert route["metadata"]["annotations"] == {"example.com/owner": "platform"}


def test_http_route_follows_the_service_port(renders) -> None:
    docs = renders.custom("httpRoute.enabled=true", "service.port=80")
    (rule,) = one(docs, "HTTPRoute")["spec"]["rules"]
    assert rule["backendRefs"][0]["port"] == 80


def test_http_route_filters_render_and_match_the_crd(renders, tmp_path) -> None:
    """The filter types the chart accepts render as given and satisfy the HTTPRoute CRD's
    schema; a RequestMirror to another Service is allowed."""
    filters = [
        {
            "type": "RequestHeaderModifier",
            "requestHeaderModifier": {"add": [{"name": "X-Team", "value": "platform"}]},
        },
        {
            "type": "RequestMirror",
            "requestMirror": {"backendRef": {"name": "shadow", "port": 8000}, "percent": 10},
        },
    ]
    values = {"httpRoute": {"enabled": True, "filters": filters}}
    route = one(renders.custom(values=_write_values(tmp_path, values)), "HTTPRoute")
    (rule,) = route["spec"]["rules"]
    assert rule["filters"] == filters
    schema = json.loads((CHART.parent.parent / "tests/chart/schemas/httproute.json").read_text())
    jsonschema.Draft7Validator(schema).validate(route)


# ------------------------------------------------------------------ metrics never published


@pytest.mark.parametrize("service_type", ["LoadBalancer", "NodePort"])
def test_a_published_service_carries_no_metrics_port(renders, service_type: str) -> None:
    docs = renders.custom(f"service.type={service_type}", "serviceMonitor.enabled=true")
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    public = services[RELEASE]
    assert public["spec"]["type"] == service_type
    assert [p["name"] for p in public["spec"]["ports"]] == ["http"]
    metrics = services[f"{RELEASE}-metrics"]
    assert metrics["spec"]["type"] == "ClusterIP"
    assert [(p["name"], p["targetPort"]) for p in metrics["spec"]["ports"]] == [
        ("metrics", "metrics")
    ]
    assert metrics["spec"]["selector"] == public["spec"]["selector"]
    # every published Service's ports target http only
    for svc in services.values():
        if svc["spec"]["type"] != "ClusterIP":
            assert {p["targetPort"] for p in svc["spec"]["ports"]} == {"http"}
    # the ServiceMonitor finds the metrics Service, the helm test Pod checks it
    sm = one(docs, "ServiceMonitor")
    assert sm["spec"]["selector"]["matchLabels"].items() <= metrics["metadata"]["labels"].items()
    test_env = {e["name"]: e["value"] for e in one(docs, "Pod")["spec"]["containers"][0]["env"]}
    assert test_env["METRICS_URL"].startswith(f"http://{RELEASE}-metrics:")


def test_a_cluster_ip_service_keeps_both_ports(renders) -> None:
    docs = renders.docs("default")
    assert [d["metadata"]["name"] for d in docs if d["kind"] == "Service"] == [RELEASE]


# ------------------------------------------------------------------ NetworkPolicy


def test_network_policy_is_on_by_default(renders) -> None:
    docs = renders.docs("default")
    np = one(docs, "NetworkPolicy", RELEASE)
    dep = one(docs, "Deployment")
    assert np["spec"]["podSelector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]
    assert np["spec"]["policyTypes"] == ["Ingress"]
    rules = {r["ports"][0]["port"]: r for r in np["spec"]["ingress"]}
    assert "from" not in rules["http"], "http from anywhere unless narrowed"
    namespaces = [
        p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        for p in rules["metrics"]["from"]
        if "namespaceSelector" in p
    ]
    assert namespaces == ["monitoring"]


def test_network_policy_egress(renders) -> None:
    np = one(renders.docs("all-on"), "NetworkPolicy", RELEASE)
    assert np["spec"]["policyTypes"] == ["Ingress", "Egress"]
    egress = np["spec"]["egress"]
    dns, otlp, database = egress
    assert {(p["port"], p["protocol"]) for p in dns["ports"]} == {(53, "UDP"), (53, "TCP")}
    assert dns["to"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "kube-system"
    }
    assert {p["port"] for p in otlp["ports"]} == {4317, 4318}
    assert otlp["to"] == ALL_ON["networkPolicy"]["egress"]["otlpTo"]
    assert database == ALL_ON["networkPolicy"]["egress"]["extraRules"][0]


def test_egress_without_an_otlp_endpoint_allows_no_otlp_port(renders) -> None:
    np = one(renders.custom("networkPolicy.egress.enabled=true"), "NetworkPolicy", RELEASE)
    ports = {p["port"] for rule in np["spec"]["egress"] for p in rule["ports"]}
    assert ports == {53}


# ------------------------------------------------------------------ names, namespace, pulls


def test_namespace_override_and_part_of(renders) -> None:
    docs = renders.docs("published")
    namespaced = [d for d in docs if d["kind"] not in {"Namespace"}]
    dashboard = [d for d in docs if "grafana_dashboard" in d["metadata"].get("labels", {})]
    for d in namespaced:
        expected = "monitoring" if d in dashboard else "commerce"
        assert d["metadata"]["namespace"] == expected, d["metadata"]["name"]
    for d in docs:
        labels = d["metadata"]["labels"]
        if "app.kubernetes.io/part-of" in labels:
            assert labels["app.kubernetes.io/part-of"] == "shop"
    sm = one(docs, "ServiceMonitor")
    assert sm["spec"]["namespaceSelector"] == {"matchNames": ["commerce"]}
    default = one(renders.docs("default"), "Deployment")["metadata"]["labels"]
    assert default["app.kubernetes.io/part-of"] == "fastapi-app"


def test_pull_policy_defaults_to_if_not_present(renders) -> None:
    for name in ("default", "digest", "published"):
        pods = [_app(renders.docs(name)), one(renders.docs(name), "Pod")["spec"]["containers"][0]]
        assert {c["imagePullPolicy"] for c in pods} == {"IfNotPresent"}, name
    assert _app(renders.custom("image.pullPolicy=Always"))["imagePullPolicy"] == "Always"


def test_checkov_skip_only_where_the_pull_policy_needs_it(renders) -> None:
    def skips(docs) -> str:
        return json.dumps(one(docs, "Deployment")["metadata"].get("annotations", {}))

    assert "CKV_K8S_15" in skips(renders.docs("default"))
    assert "CKV_K8S_15" not in skips(renders.docs("digest"))
    assert "CKV_K8S_15" not in skips(renders.custom("image.pullPolicy=Always"))


# ------------------------------------------------------------------ monitoring per release


def _monitoring(renders, release: str, namespace: str, *sets: str) -> list[dict]:
    return renders.custom(
        "prometheusRule.enabled=true",
        "grafanaDashboard.enabled=true",
        "serviceMonitor.enabled=true",
        *sets,
        release=release,
        namespace=namespace,
    )


def _service_selectors(exprs) -> list[tuple[str, str]]:
    """(metric, raw selector text) of every selector on the service's own series."""
    out = []
    for expr in exprs:
        for match in re.finditer(r"([a-z_:]+)\{([^}]*)\}", expr):
            out.append((match[1], match[2]))
    return out


@pytest.mark.parametrize(
    ("release", "namespace", "sets", "fullname"),
    [
        ("fastapi-app", "prod", (), "fastapi-app"),
        ("api", "shop", ("fullnameOverride=payments",), "payments"),
        ("web", "shop", ("nameOverride=storefront",), "web-storefront"),
        ("blue", "prod", ("namespaceOverride=edge",), "blue-fastapi-app"),
    ],
)
def test_rules_dashboard_and_scrape_select_this_release(
    renders, release, namespace, sets, fullname
) -> None:
    docs = _monitoring(renders, release, namespace, *sets)
    ns = "edge" if "namespaceOverride=edge" in sets else namespace
    job = fullname
    # the ServiceMonitor pins the job label to the release's full name
    (endpoint,) = one(docs, "ServiceMonitor")["spec"]["endpoints"]
    assert {"action": "replace", "targetLabel": "job", "replacement": job} in endpoint[
        "relabelings"
    ]
    rules = [r for g in one(docs, "PrometheusRule")["spec"]["groups"] for r in g["rules"]]
    board_cm = next(d for d in docs if "grafana_dashboard" in d["metadata"].get("labels", {}))
    (key,) = board_cm["data"]
    assert key == f"{ns}-{fullname}.json"
    board = json.loads(board_cm["data"][key])
    panel_exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    variables = [v["query"]["query"] for v in board["templating"]["list"] if v["type"] == "query"]
    for metric, sel in _service_selectors([r["expr"] for r in rules] + panel_exprs + variables):
        if metric == "kube_pod_container_status_restarts_total":
            assert f'namespace="{ns}"' in sel and f'pod=~"{fullname}-' in sel, sel
        else:
            assert f'job="{job}"' in sel and f'namespace="{ns}"' in sel, (metric, sel)
        assert "fastapi-app.*" not in sel
    assert "$job" not in json.dumps(board)
    assert {v["name"] for v in board["templating"]["list"]} == {"datasource", "instance"}
    assert all(selectors(e) for e in panel_exprs)


def test_two_releases_side_by_side_do_not_collide(renders) -> None:
    a = _monitoring(renders, "blue", "prod")
    b = _monitoring(renders, "green", "prod")

    def board(docs):
        cm = next(d for d in docs if "grafana_dashboard" in d["metadata"].get("labels", {}))
        (key,) = cm["data"]
        return cm["metadata"]["name"], key, json.loads(cm["data"][key])

    (name_a, key_a, board_a), (name_b, key_b, board_b) = board(a), board(b)
    assert name_a != name_b and key_a != key_b
    assert board_a["uid"] != board_b["uid"] and board_a["title"] != board_b["title"]
    assert max(len(board_a["uid"]), len(board_b["uid"])) <= 40
    rules_a = one(a, "PrometheusRule")["spec"]["groups"]
    rules_b = one(b, "PrometheusRule")["spec"]["groups"]
    assert {g["name"] for g in rules_a}.isdisjoint({g["name"] for g in rules_b})
    # same release name in two namespaces sharing the dashboards' namespace
    c = _monitoring(renders, "blue", "staging", "grafanaDashboard.namespace=monitoring")
    d = _monitoring(renders, "blue", "prod", "grafanaDashboard.namespace=monitoring")
    (name_c, key_c, board_c), (name_d, key_d, board_d) = board(c), board(d)
    assert name_c != name_d and key_c != key_d and board_c["uid"] != board_d["uid"]


def test_custom_job_for_your_own_scrape_config(renders) -> None:
    docs = _monitoring(renders, RELEASE, NAMESPACE, "serviceMonitor.job=kubernetes-pods")
    rules = [r for g in one(docs, "PrometheusRule")["spec"]["groups"] for r in g["rules"]]
    assert all(
        'job="kubernetes-pods"' in r["expr"] for r in rules if "kube_pod_container" not in r["expr"]
    )
