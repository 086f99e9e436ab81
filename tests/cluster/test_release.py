"""Items 1, 2 and 5 of issue 14 on the real cluster, in order on one release:
install from oci:// into a restricted namespace (real probes, helm test), a Locust smoke run
through `kubectl port-forward`, then upgrade (checksum roll), rollback and uninstall."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import yaml

from tests.cluster.conftest import (
    CLUSTER_DIR,
    ROOT,
    VALUES_LOCAL,
    Cluster,
    Published,
    Release,
    figure,
    restricted_namespace,
    run,
)
from tests.support.server import free_port, terminate, wait_for


def _ready_pods(cluster: Cluster, release: Release) -> list[dict]:
    pods = [
        p
        for p in cluster.pods(release.namespace, release.selector)
        if p["metadata"].get("labels", {}).get("app.kubernetes.io/component") != "test"
        and "deletionTimestamp" not in p["metadata"]
        and p["metadata"].get("ownerReferences")
    ]
    return pods


def _checksum(pod: dict) -> str:
    return pod["metadata"]["annotations"]["checksum/config"]


def _probe_counts(cluster: Cluster, node: str, namespace: str) -> dict[tuple[str, str], float]:
    """The kubelet's own prober counters (/metrics/probes through the API server)."""
    text = cluster.kc("get", "--raw", f"/api/v1/nodes/{node}/proxy/metrics/probes").stdout
    counts: dict[tuple[str, str], float] = {}
    for m in re.finditer(r"^prober_probe_total\{([^}]*)\} (\S+)$", text, re.M):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        if labels.get("namespace") != namespace or labels.get("result") != "successful":
            continue
        key = (labels["pod"], labels["probe_type"])
        counts[key] = counts.get(key, 0) + float(m.group(2))
    return counts


def test_install_from_oci_into_restricted_namespace(
    cluster: Cluster, published: Published, release: Release
) -> None:
    ns = cluster.json("get", "namespace", release.namespace)
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    # installed from the OCI registry, the chart version pushed there
    listing = cluster.helm("list", "-n", release.namespace, "-o", "json").stdout
    assert f'"chart":"fastapi-app-{published.chart_version}"' in listing.replace(" ", "")
    cluster.kc(
        "-n",
        release.namespace,
        "rollout",
        "status",
        f"deployment/{release.fullname}",
        "--timeout=120s",
    )
    dep = cluster.json("-n", release.namespace, "get", "deployment", release.fullname)
    want = dep["spec"]["replicas"]
    assert want == 2
    for key in ("updatedReplicas", "readyReplicas", "availableReplicas"):
        assert dep["status"].get(key) == want, dep["status"]
    pods = _ready_pods(cluster, release)
    assert len(pods) == want
    node = pods[0]["spec"]["nodeName"]
    probes = _probe_counts(cluster, node, release.namespace)
    for pod in pods:
        container = pod["spec"]["containers"][0]
        assert container["startupProbe"]["httpGet"]["path"] == "/livez"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        conditions = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
        assert conditions["Ready"] == "True" and conditions["ContainersReady"] == "True"
        status = pod["status"]["containerStatuses"][0]
        assert status["started"] and status["ready"] and status["restartCount"] == 0
        # pulled by containerd from the registry on loopback
        assert status["imageID"].startswith(f"{cluster.registry}/fastapi-app@sha256:")
        name = pod["metadata"]["name"]
        # Ready because the kubelet's probes passed, not by default
        assert probes.get((name, "Startup"), 0) >= 1, probes
        assert probes.get((name, "Readiness"), 0) >= 1, probes
    test = cluster.helm(
        "test", release.name, "-n", release.namespace, "--logs", "--timeout", "180s"
    )
    # the test Pod resolved the Service by name (CoreDNS) and reached both ports
    assert f"ok http://{release.fullname}:8000/readyz -> 200" in test.stdout, test.stdout
    assert f"ok http://{release.fullname}:9000/metrics -> 200" in test.stdout, test.stdout
    assert re.search(r"Phase:\s+Succeeded", test.stdout), test.stdout


def _pod_api_requests(cluster: Cluster, release: Release) -> float:
    """Sum of http_requests_total for the sample API over the release's pods (each pod's
    metrics port, through the API server's pod proxy)."""
    total = 0.0
    for pod in _ready_pods(cluster, release):
        name = pod["metadata"]["name"]
        text = cluster.kc(
            "get",
            "--raw",
            f"/api/v1/namespaces/{release.namespace}/pods/http:{name}:9000/proxy/metrics",
        ).stdout
        for m in re.finditer(r"^http_requests_total\{([^}]*)\} (\S+)$", text, re.M):
            if 'route="/api/v1/' in m.group(1):
                total += float(m.group(2))
    return total


def test_locust_smoke_through_port_forward(cluster: Cluster, release: Release) -> None:
    port = free_port()
    pf = subprocess.Popen(
        [
            str(cluster.kubectl),
            "--kubeconfig",
            str(cluster.kubeconfig),
            "-n",
            release.namespace,
            "port-forward",
            "--address",
            "127.0.0.1",
            f"svc/{release.fullname}",
            f"{port}:8000",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        print(f"waiting up to 30s for kubectl port-forward on {base}", flush=True)
        wait_for(lambda: httpx.get(f"{base}/readyz", timeout=2).status_code == 200, timeout=30)
        before = _pod_api_requests(cluster, release)
        with tempfile.TemporaryDirectory() as tmp:
            prefix = str(Path(tmp) / "smoke")
            t0 = time.monotonic()
            proc = subprocess.run(
                [
                    str(ROOT / ".venv/bin/locust"),
                    "-f",
                    "loadtests/locustfile.py",
                    "--headless",
                    "--host",
                    base,
                    "--profile",
                    "smoke",
                    "--json-file",
                    prefix,
                ],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=180,
                check=False,
            )
            figure("locust smoke through port-forward seconds", f"{time.monotonic() - t0:.1f}")
            output = proc.stdout + proc.stderr
            for line in output.splitlines():
                if "target" in line.lower() or "verdict" in line.lower():
                    print(line)
            assert proc.returncode == 0, output[-4000:]
            # --json-file is written at exit (the CSV files lag the end by up to a second)
            entries = json.loads(Path(f"{prefix}.json").read_text())
        sent = sum(e["num_requests"] for e in entries)
        failed = sum(e["num_failures"] for e in entries)
        figure("locust smoke requests / failures", f"{sent} / {failed}")
        assert sent > 0
        # every request Locust counted reached a pod through the forward and the Service
        served = wait_for(
            lambda: (d := _pod_api_requests(cluster, release) - before) >= sent - failed and d,
            timeout=20,
        )
        assert sent - failed <= served <= sent
        if failed == 0:
            assert served == sent
    finally:
        terminate(pf)


def _pod_get(cluster: Cluster, release: Release, pod: str, port: int, path: str) -> str:
    """GET one pod directly (the API server's pod proxy), not through the Service."""
    return cluster.kc(
        "get", "--raw", f"/api/v1/namespaces/{release.namespace}/pods/http:{pod}:{port}/proxy{path}"
    ).stdout


def _hello_count(cluster: Cluster, release: Release, pod: str) -> float:
    text = _pod_get(cluster, release, pod, 9000, "/metrics")
    return sum(
        float(m.group(2))
        for m in re.finditer(r"^http_requests_total\{([^}]*)\} (\S+)$", text, re.M)
        if 'route="/api/v1/hello"' in m.group(1)
    )


def test_killed_container_is_restarted_and_metrics_keep_counting(
    cluster: Cluster, release: Release
) -> None:
    """SIGKILL from the host to a pod's container (its gunicorn master, found through the
    CRI): the kubelet restarts it, the pod is Ready again, and its metrics count on."""
    pod = _ready_pods(cluster, release)[0]
    name = pod["metadata"]["name"]
    for _ in range(5):
        _pod_get(cluster, release, name, 8000, "/api/v1/hello")
    before = _hello_count(cluster, release, name)
    assert before >= 5
    crictl = [
        str(cluster.bin / "crictl"),
        "--runtime-endpoint",
        f"unix://{CLUSTER_DIR / 'containerd' / 'containerd.sock'}",
    ]
    cid = run(
        [
            *crictl,
            "ps",
            "-q",
            "--label",
            f"io.kubernetes.pod.name={name}",
            "--label",
            "io.kubernetes.container.name=app",
        ]
    ).stdout.split()
    if not cid:  # the container's name in the chart
        cname = pod["spec"]["containers"][0]["name"]
        cid = run(
            [
                *crictl,
                "ps",
                "-q",
                "--label",
                f"io.kubernetes.pod.name={name}",
                "--label",
                f"io.kubernetes.container.name={cname}",
            ]
        ).stdout.split()
    assert len(cid) == 1, cid
    pid = json.loads(run([*crictl, "inspect", cid[0]]).stdout)["info"]["pid"]
    os.kill(pid, signal.SIGKILL)
    t0 = time.monotonic()

    def restarted_and_ready():
        p = cluster.json("-n", release.namespace, "get", "pod", name)
        st = p["status"]["containerStatuses"][0]
        return st["restartCount"] >= 1 and st["ready"] and p

    p = cluster.wait(
        f"the kubelet to restart the killed container of {name}", restarted_and_ready, 120
    )
    figure("container SIGKILL -> restarted and Ready seconds", f"{time.monotonic() - t0:.1f}")
    st = p["status"]["containerStatuses"][0]
    assert st["restartCount"] == 1
    assert st["lastState"]["terminated"]["exitCode"] == 137  # killed by SIGKILL
    after_restart = _hello_count(cluster, release, name)
    for _ in range(7):
        _pod_get(cluster, release, name, 8000, "/api/v1/hello")
    now = _hello_count(cluster, release, name)
    # every request after the restart is counted, on top of what the scrape showed then
    # (kept from before the kill, or a counter reset that Prometheus' rate() handles)
    assert now - after_restart == 7
    figure("hello count before kill / after restart", f"{before:.0f} / {after_restart:.0f}")


def _exec_env(cluster: Cluster, release: Release, pod: str, name: str) -> str:
    return cluster.kc("-n", release.namespace, "exec", pod, "--", "printenv", name).stdout.strip()


def _wait_rolled(cluster: Cluster, release: Release, old: set[str], checksum: str) -> list[dict]:
    def rolled():
        pods = _ready_pods(cluster, release)
        names = {p["metadata"]["name"] for p in pods}
        ready = all(
            {c["type"]: c["status"] for c in p["status"].get("conditions", [])}.get("Ready")
            == "True"
            for p in pods
        )
        if (
            len(pods) == 2
            and not names & old
            and ready
            and {_checksum(p) for p in pods} == {checksum}
        ):
            return pods
        return None

    return cluster.wait("every pod replaced by a Ready one with the new checksum", rolled, 180)


def test_upgrade_rolls_rollback_restores_uninstall_cleans(
    cluster: Cluster, published: Published, release: Release
) -> None:
    ns, name = release.namespace, release.name
    pods = _ready_pods(cluster, release)
    first = {p["metadata"]["name"] for p in pods}
    (checksum1,) = {_checksum(p) for p in pods}
    assert _exec_env(cluster, release, pods[0]["metadata"]["name"], "APP_LOG_LEVEL") == "info"

    t0 = time.monotonic()
    cluster.helm(
        "upgrade",
        name,
        published.chart,
        "--version",
        published.chart_version,
        "--plain-http",
        "-n",
        ns,
        "--reuse-values",
        "--set",
        "config.logLevel=debug",
        "--wait",
        "--timeout",
        "300s",
    )
    cm = cluster.json("-n", ns, "get", "configmap", "-l", release.selector)["items"]
    assert any(c["data"].get("APP_LOG_LEVEL") == "debug" for c in cm), cm
    dep = cluster.json("-n", ns, "get", "deployment", release.fullname)
    checksum2 = dep["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    assert checksum2 != checksum1
    rolled = _wait_rolled(cluster, release, first, checksum2)
    figure(
        "helm upgrade (config value) until every pod replaced seconds",
        f"{time.monotonic() - t0:.1f}",
    )
    second = {p["metadata"]["name"] for p in rolled}
    assert _exec_env(cluster, release, rolled[0]["metadata"]["name"], "APP_LOG_LEVEL") == "debug"

    cluster.helm("rollback", name, "1", "-n", ns, "--wait", "--timeout", "300s")
    history = cluster.helm("history", name, "-n", ns, "-o", "json").stdout
    assert '"revision":3' in history.replace(" ", "")
    back = _wait_rolled(cluster, release, second, checksum1)
    assert _exec_env(cluster, release, back[0]["metadata"]["name"], "APP_LOG_LEVEL") == "info"

    cluster.helm("uninstall", name, "-n", ns, "--wait", "--timeout", "300s")
    assert cluster.helm("list", "-n", ns, "-q").stdout.strip() == ""
    kinds = cluster.kc("api-resources", "--namespaced", "--verbs=list", "-o", "name").stdout.split()
    kinds = [k for k in kinds if not k.startswith("events")]

    def leftovers() -> list[str]:
        out = cluster.kc(
            "-n", ns, "get", ",".join(kinds), "-o", "name", "--ignore-not-found"
        ).stdout
        return [
            o
            for o in out.split()
            if o not in ("configmap/kube-root-ca.crt", "serviceaccount/default")
        ]

    try:
        cluster.wait("nothing of the release left in the namespace", lambda: not leftovers(), 120)
    except AssertionError:
        raise AssertionError(f"left behind after helm uninstall: {leftovers()}") from None


def test_turning_autoscaling_on_keeps_the_replica_count(
    cluster: Cluster, published: Published
) -> None:
    """Issue 15: the upgrade that turns autoscaling on leaves spec.replicas out of the
    Deployment (the HPA owns it from then on); without the chart's `lookup` of the live
    Deployment the API server would reset it to 1 and remove pods until the HPA acts. Right
    after the upgrade the Deployment still asks for the installed count (minReplicas is 1,
    so nothing but that lookup keeps it at 2)."""
    ns, name = "autoscale-switch", "switch"
    fullname = f"{name}-fastapi-app"
    chart = [published.chart, "--version", published.chart_version, "--plain-http", "-n", ns]
    restricted_namespace(cluster, ns)
    try:
        cluster.helm(
            "install", name, *chart, "-f", str(VALUES_LOCAL),
            "--set", f"image.repository={cluster.registry}/fastapi-app",
            "--set", f"image.tag={published.tag}",
            "--set", "replicaCount=2",
            "--wait", "--timeout", "300s",
        )  # fmt: skip
        before = cluster.json("-n", ns, "get", "deployment", fullname)
        assert before["spec"]["replicas"] == 2
        assert before["status"].get("readyReplicas") == 2, before["status"]
        # the README's upgrade command; no --wait: read the Deployment as the upgrade left it
        cluster.helm(
            "upgrade", name, *chart, "--reset-then-reuse-values",
            "--set", "autoscaling.enabled=true",
            "--set", "autoscaling.minReplicas=1",
            "--set", "autoscaling.maxReplicas=3",
            "--timeout", "300s",
        )  # fmt: skip
        after = cluster.json("-n", ns, "get", "deployment", fullname)
        assert after["spec"]["replicas"] == 2, after["spec"]
        # the rendered manifest carries the live count (the lookup), the HPA takes over
        manifest = cluster.helm("get", "manifest", name, "-n", ns).stdout
        (deployment,) = [d for d in yaml.safe_load_all(manifest) if d and d["kind"] == "Deployment"]
        assert deployment["spec"]["replicas"] == 2
        (hpa,) = cluster.json("-n", ns, "get", "hpa")["items"]
        assert hpa["spec"]["scaleTargetRef"]["name"] == fullname
        assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 3)
    finally:
        cluster.helm("uninstall", name, "-n", ns, "--wait", check=False)
        cluster.kc("delete", "namespace", ns, "--wait=false", check=False)
