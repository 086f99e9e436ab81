"""Item 4 of issue 14: a rolling update under load through the Service's ClusterIP.

wrk on the host sends requests to the ClusterIP (kube-proxy's iptables DNAT picks a ready
endpoint for every new connection: `Connection: close`, so each request is routed afresh)
while `helm upgrade` replaces every pod. With the chart's drain delay the terminating pod
keeps serving while its endpoint is removed: no request fails. The negative control, drain
delay 0, closes the listener at once while kube-proxy still routes new connections to it,
and requests fail: the test can tell the two apart."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

from tests.cluster.conftest import VALUES_LOCAL, Cluster, Published, figure, restricted_namespace
from tests.conftest import require_tool
from tests.resilience.helpers import parse_wrk

NS, NAME = "rolling", "roll"


def _helm(cluster: Cluster, published: Published, verb: str, *sets: str) -> None:
    args = [verb, NAME, published.chart, "--version", published.chart_version, "--plain-http"]
    args += ["-n", NS, "--wait", "--timeout", "300s"]
    if verb == "install":
        args += [
            "-f",
            str(VALUES_LOCAL),
            "--set",
            f"image.repository={cluster.registry}/fastapi-app",
            "--set",
            f"image.tag={published.tag}",
        ]
    else:
        args += ["--reuse-values"]
    for s in sets:
        args += ["--set", s]
    cluster.helm(*args)


def _pods(cluster: Cluster) -> set[str]:
    return {
        p["metadata"]["name"]
        for p in cluster.pods(NS, f"app.kubernetes.io/instance={NAME}")
        if p["metadata"].get("ownerReferences")
    }


def _upgrade_under_load(cluster: Cluster, published: Published, wrk: str, url: str, change: str):
    old = _pods(cluster)
    proc = subprocess.Popen(
        [wrk, "-t2", "-c8", "-d300s", "--timeout", "5s", "-H", "Connection: close", url],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        t0 = time.monotonic()
        _helm(cluster, published, "upgrade", change)

        def all_old_gone():
            return not (_pods(cluster) & old)

        cluster.wait("every old pod terminated (drain finished)", all_old_gone, 180)
        seconds = time.monotonic() - t0
    finally:
        proc.send_signal(signal.SIGINT)  # wrk prints its totals on SIGINT
        out, _ = proc.communicate(timeout=60)
    result = parse_wrk(out)
    assert result.requests > 0, out
    return result, seconds


@pytest.fixture(scope="module")
def rolling(cluster: Cluster, published: Published):
    restricted_namespace(cluster, NS)
    _helm(cluster, published, "install", "config.shutdownDelaySeconds=5")
    services = cluster.json("-n", NS, "get", "service", "-l", f"app.kubernetes.io/instance={NAME}")
    svc, port = next(
        (s, p["port"]) for s in services["items"] for p in s["spec"]["ports"] if p["name"] == "http"
    )
    yield f"http://{svc['spec']['clusterIP']}:{port}/api/v1/hello"
    cluster.helm("uninstall", NAME, "-n", NS, "--wait", check=False)
    cluster.kc("delete", "namespace", NS, "--wait=false", check=False)


def test_rolling_update_under_load_loses_nothing_and_control_fails(
    cluster: Cluster, published: Published, rolling: str
) -> None:
    wrk = require_tool("wrk", "apt-get install wrk (scripts/tools/apt-base.sh)")
    good, seconds = _upgrade_under_load(cluster, published, wrk, rolling, "config.logLevel=debug")
    figure(
        "rolling update, drain delay 5 s",
        f"{good.requests} requests, {good.socket_errors} socket errors, "
        f"{good.non_2xx_3xx} non-2xx, {good.requests_per_sec:.0f} req/s, rollout {seconds:.0f}s",
    )
    # Negative control: pods with drain delay 0 (the upgrade that sets it drains the old ones)
    _helm(cluster, published, "upgrade", "config.shutdownDelaySeconds=0")
    bad, seconds = _upgrade_under_load(cluster, published, wrk, rolling, "config.logLevel=info")
    figure(
        "rolling update, drain delay 0 (control)",
        f"{bad.requests} requests, {bad.socket_errors} socket errors, "
        f"{bad.non_2xx_3xx} non-2xx, {bad.requests_per_sec:.0f} req/s, rollout {seconds:.0f}s",
    )
    assert good.socket_errors == 0 and good.non_2xx_3xx == 0, good.output
    assert bad.socket_errors + bad.non_2xx_3xx > 0, (
        "the drain-delay-0 control lost no request: the test cannot tell a drain from none\n"
        + bad.output
    )
