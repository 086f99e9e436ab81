"""Item 3 of issue 14: a real Prometheus on the host discovers the release's pods
through the API server (`kubernetes_sd_configs`, role pod, the cluster's kubeconfig), scrapes
their metrics port at the pod IPs, and its request counts equal Locust's exactly after a
smoke run through `kubectl port-forward`.

Debian's prometheus is built without the Kubernetes discovery, so this one is built from the
Prometheus Go module by scripts/cluster/build.sh (cached next to the cluster's binaries)."""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import yaml

from tests.cluster.conftest import ROOT, Cluster, Release, figure, run
from tests.support.server import free_port, terminate, wait_for

QUERY = 'sum(http_requests_total{job="kubernetes-pods",route=~"/api/v1/.*"})'


def _query(url: str, promql: str) -> list[dict]:
    r = httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=5)
    r.raise_for_status()
    return r.json()["data"]["result"]


def _value(url: str, promql: str) -> float:
    result = _query(url, promql)
    return float(result[0]["value"][1]) if result else 0.0


def test_prometheus_discovers_pods_and_counts_equal_locust(
    cluster: Cluster, release: Release
) -> None:
    prometheus = str(cluster.bin / "prometheus")
    if not Path(prometheus).exists():
        run(["bash", str(ROOT / "scripts/cluster/build.sh"), "prometheus"], timeout=3600)
    with tempfile.TemporaryDirectory(prefix="prom-k8s-") as tmp:
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
            "scrape_configs": [
                {
                    "job_name": "kubernetes-pods",
                    "kubernetes_sd_configs": [
                        {
                            "role": "pod",
                            "kubeconfig_file": str(cluster.kubeconfig),
                            "namespaces": {"names": [release.namespace]},
                        }
                    ],
                    "relabel_configs": [
                        {
                            "source_labels": [
                                "__meta_kubernetes_pod_label_app_kubernetes_io_instance"
                            ],
                            "regex": release.name,
                            "action": "keep",
                        },
                        {
                            "source_labels": ["__meta_kubernetes_pod_container_port_name"],
                            "regex": "metrics",
                            "action": "keep",
                        },
                        {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
                    ],
                }
            ],
        }
        cfg = Path(tmp) / "prometheus.yml"
        cfg.write_text(yaml.safe_dump(config))
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log = open(Path(tmp) / "prometheus.log", "wb")
        prom = subprocess.Popen(
            [
                prometheus,
                f"--config.file={cfg}",
                f"--storage.tsdb.path={tmp}/data",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        pf = None
        try:
            pods = {
                p["metadata"]["name"]: p["status"]["podIP"]
                for p in cluster.pods(release.namespace, release.selector)
                if p["metadata"].get("ownerReferences")
            }

            def discovered():
                up = _query(url, 'up{job="kubernetes-pods"}')
                return len(up) == len(pods) and all(r["value"][1] == "1" for r in up) and up

            print(f"waiting up to 60s for Prometheus to discover and scrape {sorted(pods)}")
            up = wait_for(discovered, timeout=60, interval=0.5)
            assert {r["metric"]["pod"] for r in up} == set(pods)
            assert {r["metric"]["instance"].split(":")[0] for r in up} == set(pods.values())
            before = _value(url, QUERY)

            lport = free_port()
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
                    f"{lport}:8000",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            base = f"http://127.0.0.1:{lport}"
            print(f"waiting up to 30s for kubectl port-forward on {base}")
            wait_for(lambda: httpx.get(f"{base}/readyz", timeout=2).status_code == 200, 30)
            report = Path(tmp) / "smoke"
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
                    str(report),
                ],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=180,
                check=False,
            )
            assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
            entries = json.loads(report.with_suffix(".json").read_text())
            sent = sum(e["num_requests"] for e in entries)
            assert sum(e["num_failures"] for e in entries) == 0
            t0 = time.monotonic()
            print(f"waiting up to 30s for Prometheus to count Locust's {sent} requests")
            try:
                wait_for(lambda: _value(url, QUERY) - before == sent, timeout=30, interval=0.5)
            except TimeoutError:
                raise AssertionError(
                    f"Prometheus counted {_value(url, QUERY) - before}, Locust sent {sent}"
                ) from None
            figure(
                "Prometheus (kubernetes_sd) vs Locust requests",
                f"{_value(url, QUERY) - before:.0f} counted, {sent} sent "
                f"(scrape caught up in {time.monotonic() - t0:.1f}s)",
            )
        finally:
            terminate(pf)
            terminate(prom)
            log.close()
