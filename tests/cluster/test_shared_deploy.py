"""Item 8 of issue 14: the kind workflow and this cluster share scripts/cluster/deploy.sh for
everything after the cluster exists. kind.sh's deploy is exactly deploy.sh's steps with
TARGET=kind; here the same steps run for real with the kind path's image loading (an archive
from `podman save`, imported into the node's containerd as `kind load image-archive` does,
with the kind values file: pullPolicy Never), a NAMESPACE and a RELEASE override, helm
test, and the port-forward + Locust smoke step."""

from __future__ import annotations

import os
import shlex
import subprocess
import time

from tests.cluster.conftest import ROOT, Cluster, Published, figure
from tests.support.server import free_port


def _dry(script: str, *args: str, **env: str) -> list[list[str]]:
    proc = subprocess.run(
        ["bash", str(ROOT / script), *args],
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "DRY_RUN": "1",
            "HELM": "helm",
            "KUBECTL": "kubectl",
            "KIND": "kind",
            "MAKE": "make",
            **env,
        },
        timeout=60,
        check=True,
    )
    return [shlex.split(line[2:]) for line in proc.stdout.splitlines() if line.startswith("+ ")]


def test_kind_deploy_is_the_shared_script() -> None:
    kind = _dry("scripts/kind.sh", "deploy")
    shared = _dry(
        "scripts/cluster/deploy.sh",
        "image",
        "load",
        "namespace",
        "install",
        "wait",
        "test",
        TARGET="kind",
        KUBE_CONTEXT="kind-fastapi-app",
        VALUES="helm/fastapi-app/values-kind.yaml",
    )

    def norm(cmds):  # the archive path carries the pid of the script
        return [[a if "fastapi-app-image-" not in a else "ARCHIVE" for a in c] for c in cmds]

    assert norm(kind) == norm(shared)


def test_kind_path_on_the_local_cluster(cluster: Cluster, published: Published) -> None:
    ns, release = "kind-path", "api"
    port = free_port()
    t0 = time.monotonic()
    try:
        out = cluster.deploy(
            "load",
            "namespace",
            "install",
            "wait",
            "test",
            "loadtest",
            timeout=900,
            IMAGE=published.local_image,
            CONTAINER_ENGINE="podman",
            NAMESPACE=ns,
            RELEASE=release,
            VALUES="helm/fastapi-app/values-kind.yaml",
            LOCAL_PORT=str(port),
            PROFILE="smoke",
        )
        figure("deploy.sh load..loadtest (kind path) seconds", f"{time.monotonic() - t0:.1f}")
        # the steps ran in order, each for real
        at = -1
        for marker in (
            "podman",
            "images import",
            "create namespace",
            "upgrade --install",
            "rollout status deployment/api-fastapi-app",
            " test api ",
            "port-forward",
            "make loadtest",
        ):
            assert out.find(marker, at + 1) > at, (
                f"{marker!r} not after step {at} in:\n{out[-3000:]}"
            )
            at = out.find(marker, at + 1)
        assert "Phase:     Succeeded" in out or "Succeeded" in out
        labels = cluster.json("get", "namespace", ns)["metadata"]["labels"]
        assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
        pods = cluster.pods(ns, f"app.kubernetes.io/instance={release}")
        running = [p for p in pods if p["metadata"].get("ownerReferences")]
        assert running, pods
        for pod in running:
            c = pod["spec"]["containers"][0]
            # loaded from the archive, never pulled
            assert c["image"] == published.local_image and c["imagePullPolicy"] == "Never"
            assert pod["status"]["containerStatuses"][0]["ready"]
        assert pods[0]["metadata"]["labels"]["app.kubernetes.io/instance"] == release
    finally:
        cluster.helm("uninstall", release, "-n", ns, "--wait", check=False)
        cluster.kc("delete", "namespace", ns, "--wait=false", check=False)
