"""Item 9 of issue 14: metrics-server (built from its Go module, scripts/cluster/addons.sh)
on the same cluster, and the chart's HorizontalPodAutoscaler scales the Deployment out
under a Locust load through the Service's ClusterIP and back in after it. The replica
counts over time are printed: the path a team takes when one pod is no longer enough."""

from __future__ import annotations

import subprocess
import time

from tests.cluster.conftest import (
    ROOT,
    SCRIPTS,
    VALUES_LOCAL,
    Cluster,
    Published,
    figure,
    restricted_namespace,
    run,
)

NS, NAME = "hpa", "hpa"


def test_hpa_scales_out_under_load_and_back_in(cluster: Cluster, published: Published) -> None:
    run(["bash", str(SCRIPTS / "addons.sh"), "metrics-server"], timeout=1800)
    restricted_namespace(cluster, NS)
    cluster.helm(
        "install", NAME, published.chart, "--version", published.chart_version, "--plain-http",
        "-n", NS, "-f", str(VALUES_LOCAL),
        "--set", f"image.repository={cluster.registry}/fastapi-app",
        "--set", f"image.tag={published.tag}",
        "--set", "autoscaling.enabled=true",
        "--set", "autoscaling.minReplicas=1",
        "--set", "autoscaling.maxReplicas=3",
        "--set", "autoscaling.targetCPUUtilizationPercentage=50",
        "--set", "autoscaling.behavior.scaleDown.stabilizationWindowSeconds=15",
        "--wait", "--timeout", "300s",
    )  # fmt: skip
    timeline: list[str] = []
    t0 = time.monotonic()
    locust = None
    try:
        (hpa,) = cluster.json("-n", NS, "get", "hpa")["items"]
        target = hpa["spec"]["scaleTargetRef"]["name"]
        assert hpa["spec"]["minReplicas"] == 1 and hpa["spec"]["maxReplicas"] == 3

        def sample() -> tuple[int, str]:
            h = cluster.json("-n", NS, "get", "hpa", hpa["metadata"]["name"])
            d = cluster.json("-n", NS, "get", "deployment", target)
            metrics = h["status"].get("currentMetrics") or []
            cpu = next(
                (m["resource"]["current"].get("averageUtilization") for m in metrics
                 if m.get("type") == "Resource" and m["resource"]["name"] == "cpu"),
                None,
            )  # fmt: skip
            replicas = d["status"].get("readyReplicas", 0)
            line = f"t={time.monotonic() - t0:.0f}s ready={replicas} cpu={cpu}%"
            timeline.append(line)
            print(line, flush=True)
            return replicas, str(cpu)

        cluster.wait(
            "the HPA to read CPU from metrics-server", lambda: sample()[1] != "None", 120, 5
        )
        assert sample()[0] == 1
        services = cluster.json(
            "-n", NS, "get", "service", "-l", f"app.kubernetes.io/instance={NAME}"
        )
        ip, port = next(
            (s["spec"]["clusterIP"], p["port"])
            for s in services["items"] for p in s["spec"]["ports"] if p["name"] == "http"
        )  # fmt: skip
        load_at = time.monotonic() - t0
        locust = subprocess.Popen(
            [
                str(ROOT / ".venv/bin/locust"), "-f", "loadtests/locustfile.py", "--headless",
                "--host", f"http://{ip}:{port}", "--profile", "smoke",
                "-u", "60", "-r", "10", "-t", "150s", "--only-summary",
            ],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        out = cluster.wait(
            "the HPA to scale out under load (ready replicas > 1)",
            lambda: sample()[0] > 1,
            150,
            5,
        )
        assert out
        scaled_out_at = time.monotonic() - t0
        locust.terminate()
        locust.wait(30)
        cluster.wait(
            "the HPA to scale back in to 1 after the load", lambda: sample()[0] == 1, 240, 5
        )
        figure(
            "HPA scale out / back in",
            f"load from t={load_at:.0f}s, scaled out at t={scaled_out_at:.0f}s, "
            f"back to 1 at t={time.monotonic() - t0:.0f}s",
        )
    finally:
        if locust is not None and locust.poll() is None:
            locust.kill()
        figure("HPA replica timeline", "; ".join(timeline))
        cluster.helm("uninstall", NAME, "-n", NS, "--wait", check=False)
        cluster.kc("delete", "namespace", NS, "--wait=false", check=False)
