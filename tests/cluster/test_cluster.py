"""The cluster itself: one Ready node of the pinned version, every component healthy,
Pod Security admission enforcing, CoreDNS answering, cluster-up idempotent."""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import time

from tests.cluster.conftest import SCRIPTS, Cluster, figure, restricted_namespace, run


def test_one_ready_node_of_the_pinned_version(cluster: Cluster) -> None:
    nodes = cluster.json("get", "nodes")["items"]
    assert len(nodes) == 1
    node = nodes[0]
    ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}
    assert ready["Ready"] == "True", node["status"]["conditions"]
    pinned = run(["bash", "-c", f". {SCRIPTS / 'versions.sh'}; echo $K8S_VERSION"]).stdout.strip()
    assert node["status"]["nodeInfo"]["kubeletVersion"] == pinned
    assert node["status"]["nodeInfo"]["kubeProxyVersion"] in ("", pinned)
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://")
    server = json.loads(cluster.kc("version", "-o", "json").stdout)["serverVersion"]
    assert server["gitVersion"] == pinned
    # `kubectl get nodes` is what a user runs: one line, Ready
    table = cluster.kc("get", "nodes", "--no-headers").stdout.split()
    assert table[1] == "Ready"


def test_control_plane_components_healthy(cluster: Cluster) -> None:
    checks = cluster.kc("get", "--raw", "/readyz?verbose").stdout
    assert "readyz check passed" in checks
    # scheduler and controller-manager work: a Deployment gets a ReplicaSet and a bound Pod
    # (through the DNS add-on that up.sh installed)
    dns = cluster.json("-n", "kube-system", "get", "deployment", "coredns")
    assert dns["status"].get("readyReplicas") == 1
    pods = cluster.pods("kube-system", "k8s-app=kube-dns")
    assert pods and pods[0]["spec"]["nodeName"]
    assert pods[0]["status"]["podIP"].startswith("10.88.")


def test_pod_security_admission_enforces_restricted(cluster: Cluster) -> None:
    """A pod with no securityContext (fine for `baseline`, not for `restricted`) is admitted
    in `default` and refused by Pod Security admission in a restricted namespace."""
    restricted_namespace(cluster, "pss-check")

    def pod(namespace: str) -> str:
        return json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "plain", "namespace": namespace},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            }
        )

    admitted = cluster.kc("apply", "--dry-run=server", "-f", "-", input=pod("default"))
    assert "created (server dry run)" in admitted.stdout
    refused = cluster.kc(
        "apply", "--dry-run=server", "-f", "-", input=pod("pss-check"), check=False
    )
    assert refused.returncode != 0
    assert 'violates PodSecurity "restricted:latest"' in refused.stderr, refused.stderr
    for reason in ("allowPrivilegeEscalation", "runAsNonRoot", "seccompProfile"):
        assert reason in refused.stderr
    cluster.kc("delete", "namespace", "pss-check", "--wait=false")


def test_cluster_dns_resolves_service_names(cluster: Cluster) -> None:
    """CoreDNS answers for cluster.local: a query to the kube-dns ClusterIP (through
    kube-proxy's iptables rules) from the host."""
    svc = cluster.json("-n", "kube-system", "get", "service", "kube-dns")
    ip = svc["spec"]["clusterIP"]
    # A minimal DNS query (A kubernetes.default.svc.cluster.local) over UDP
    name = b"".join(
        bytes([len(p)]) + p for p in b"kubernetes.default.svc.cluster.local".split(b".")
    )
    query = (
        struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + name + b"\0" + struct.pack(">HH", 1, 1)
    )

    def ask() -> bytes | None:
        # Until kube-proxy has programmed the Service's endpoint, its iptables rules reject
        # the packet (EPERM on send) or nothing answers: both mean "not yet".
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(2)
            try:
                s.sendto(query, (ip, 53))
                return s.recvfrom(512)[0]
            except (PermissionError, TimeoutError):
                return None

    answer = cluster.wait(f"an answer from kube-dns at {ip}:53", ask, timeout=60)
    assert answer[:2] == b"\x12\x34"
    assert struct.unpack(">H", answer[6:8])[0] >= 1, "no answer record"
    api_ip = cluster.json("get", "service", "kubernetes")["spec"]["clusterIP"]
    assert socket.inet_aton(api_ip) in answer


def test_cluster_up_is_idempotent(cluster: Cluster) -> None:
    before = {
        c: (cluster.kubeconfig.parent / "run" / f"{c}.pid").read_text()
        for c in ("etcd", "kube-apiserver", "kubelet", "containerd", "kube-proxy")
    }
    t0 = time.monotonic()
    out = subprocess.run(
        ["bash", str(SCRIPTS / "up.sh")], capture_output=True, text=True, timeout=600, check=False
    )
    figure("cluster-up on a running cluster seconds", f"{time.monotonic() - t0:.1f}")
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == str(cluster.kubeconfig)
    after = {c: (cluster.kubeconfig.parent / "run" / f"{c}.pid").read_text() for c in before}
    assert after == before, "a second cluster-up restarted components"
    assert "already running" in out.stderr
