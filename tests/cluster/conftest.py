"""The local single-node cluster for the end-to-end suite (issue 14).

One cluster per session, brought up by the same scripts a user runs (`make cluster-up` is
scripts/cluster/up.sh) and torn down at the end by scripts/cluster/down.sh unless
KEEP_CLUSTER=1; teardown then checks that the host is as before (processes, mounts,
network namespaces, the bridge, iptables rules, sysctls). The app image is built once
(`make image-local` through scripts/cluster/deploy.sh), pushed to the registry on
127.0.0.1, the chart pushed with `helm push`; the tests install from oci://.

Prerequisites (root, Go, the Debian tools of scripts/tools/cluster-tools.sh and
image-tools.sh, Helm from scripts/tools/helm.sh): missing ones fail in CI, skip elsewhere.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import IN_CI
from tests.conftest import figure as record_figure

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts" / "cluster"
CLUSTER_DIR = Path(os.environ.get("CLUSTER_DIR", "/var/lib/fastapi-kit/cluster"))
REGISTRY = f"127.0.0.1:{os.environ.get('REGISTRY_PORT', '15000')}"
KEEP = os.environ.get("KEEP_CLUSTER", "") == "1"
VALUES_LOCAL = SCRIPTS / "values-local.yaml"
HELM = ROOT / ".tools" / "bin" / "helm4"
HELM3 = ROOT / ".tools" / "bin" / "helm3"
UP_TIMEOUT = 3600  # cold: the Kubernetes binaries are built from Go modules first


def figure(name: str, value: str) -> None:
    """A measured figure, never asserted on: printed, and listed in the run's "figures"
    section (``tests/conftest.py``)."""
    record_figure(name, value)


def kit_bin() -> Path:
    out = subprocess.run(
        ["bash", "-c", f". {SCRIPTS / 'versions.sh'}; echo $KIT_BIN"],
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(out.stdout.strip())


def _missing(reason: str) -> None:
    if IN_CI:
        pytest.fail(reason)
    pytest.skip(reason)


def require_prerequisites() -> None:
    if os.geteuid() != 0:
        _missing("the cluster suite needs root (kubelet, containerd, network namespaces)")
    hint = "sudo bash scripts/tools/cluster-tools.sh && sudo bash scripts/tools/image-tools.sh"
    for tool in ("containerd", "runc", "iptables", "docker-registry", "buildah", "podman"):
        if shutil.which(tool) is None:
            _missing(f"{tool} not found; install it with: {hint}")
    if not Path("/usr/lib/cni/bridge").exists():
        _missing(f"CNI plugins missing; install them with: {hint}")
    if shutil.which("go") is None and not (kit_bin() / "kubelet").exists():
        _missing("go not found and no cached Kubernetes binaries (scripts/cluster/build.sh)")
    if not HELM.exists() or not HELM3.exists():
        _missing("helm3/helm4 not found; install them with: bash scripts/tools/helm.sh")


def run(
    cmd: list[str],
    *,
    timeout: float = 300,
    check: bool = True,
    env: dict[str, str] | None = None,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
        input=input,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} exited {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}"
            f"\n--- stderr\n{proc.stderr[-4000:]}"
        )
    return proc


def run_logged(cmd: list[str], log: Path, timeout: float, env: dict[str, str] | None = None):
    """Run a long script with its output in a file; on failure show its tail."""
    with open(log, "w") as out:
        proc = subprocess.run(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            check=False,
        )
    text = log.read_text()
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}:\n{text[-6000:]}")
    return text


@dataclass
class Cluster:
    kubeconfig: Path
    kubectl: Path
    registry: str
    bin: Path
    up_seconds: float
    env: dict[str, str] = field(default_factory=dict)

    def kc(self, *args: str, check: bool = True, timeout: float = 120, input: str | None = None):
        return run(
            [str(self.kubectl), "--kubeconfig", str(self.kubeconfig), *args],
            check=check,
            timeout=timeout,
            input=input,
        )

    def json(self, *args: str) -> dict:
        return json.loads(self.kc(*args, "-o", "json").stdout)

    def helm(self, *args: str, check: bool = True, timeout: float = 600, helm: Path = HELM):
        return run(
            [str(helm), "--kubeconfig", str(self.kubeconfig), *args],
            check=check,
            timeout=timeout,
        )

    def deploy(self, *steps: str, timeout: float = 900, **env: str) -> str:
        """scripts/cluster/deploy.sh (the script kind.sh runs too) against this cluster."""
        full = {
            "TARGET": "local",
            "KUBECONFIG": str(self.kubeconfig),
            "KUBECTL": str(self.kubectl),
            "HELM": str(HELM),
            "MAKE": "make",
            "STORAGE_DRIVER": "vfs",
            "CTR": "ctr",
            "CONTAINERD_ADDRESS": str(CLUSTER_DIR / "containerd" / "containerd.sock"),
            **env,
        }
        log = CLUSTER_DIR / "logs" / f"deploy-{'-'.join(steps)}-{uuid.uuid4().hex[:6]}.log"
        return run_logged(["bash", str(SCRIPTS / "deploy.sh"), *steps], log, timeout, full)

    def wait(self, what: str, condition, timeout: float = 120, interval: float = 1.0):
        """Poll ``condition`` (bounded), printing what is waited for."""
        print(f"waiting up to {timeout:.0f}s for {what}", flush=True)
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                value = condition()
            except AssertionError as exc:
                last, value = exc, None
            if value:
                return value
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last})")

    def pods(self, namespace: str, selector: str) -> list[dict]:
        return self.json("-n", namespace, "get", "pods", "-l", selector)["items"]


CLUSTER_PATHS = (
    str(CLUSTER_DIR),
    "/run/netns",
    "/var/run/netns",
    "/run/containerd",
    "/var/lib/kubelet",
    "/var/lib/cni",
    "/sys/fs/cgroup",
)


def host_snapshot() -> dict[str, object]:
    """What down.sh must give back: iptables rules, mounts, netns, links, sysctls."""

    def lines(cmd: list[str]) -> list[str]:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        return proc.stdout.splitlines()

    rules = sorted(
        re.sub(r"\[\d+:\d+\]", "", line)
        for ipt in ("iptables-save", "ip6tables-save")
        for line in lines([ipt])
        if line.startswith(("-A", ":")) and not line.startswith(":INPUT")
    )
    sysctls = {}
    for name in (
        "net.ipv4.ip_forward",
        "kernel.panic",
        "kernel.panic_on_oops",
        "vm.overcommit_memory",
        "vm.panic_on_oom",
        "net.bridge.bridge-nf-call-iptables",
        "net.ipv4.conf.all.route_localnet",
    ):
        sysctls[name] = Path("/proc/sys", name.replace(".", "/")).read_text().strip()
    mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    links = re.findall(r"^\d+: ([^:@]+)", "\n".join(lines(["ip", "-o", "link"])), re.M)
    return {
        "iptables": [r for r in rules if not r.startswith(":") or "KUBE" in r or "CNI" in r],
        # only what the cluster could have made (other processes on the machine may mount)
        "mounts": sorted(m for m in mounts if m.startswith(CLUSTER_PATHS)),
        "netns": sorted(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else [],
        "links": sorted(name for name in links if name.startswith(("kit", "veth", "cni"))),
        "sysctls": sysctls,
    }


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    require_prerequisites()
    already_up = (CLUSTER_DIR / "host-state" / "sysctls").exists()
    before = None if already_up else host_snapshot()
    log = Path(os.environ.get("TMPDIR", "/tmp")) / "fastapi-kit-cluster-up.log"
    t0 = time.monotonic()
    run_logged(["bash", str(SCRIPTS / "up.sh")], log, UP_TIMEOUT)
    up_seconds = time.monotonic() - t0
    figure(
        "cluster-up seconds", f"{up_seconds:.1f} ({'already running' if already_up else 'fresh'})"
    )
    bin_dir = kit_bin()
    c = Cluster(
        kubeconfig=CLUSTER_DIR / "admin.kubeconfig",
        kubectl=bin_dir / "kubectl",
        registry=REGISTRY,
        bin=bin_dir,
        up_seconds=up_seconds,
    )
    yield c
    if KEEP:
        print(f"\nKEEP_CLUSTER=1: cluster left running; kubeconfig {c.kubeconfig}")
        return
    t0 = time.monotonic()
    down = subprocess.run(
        ["bash", str(SCRIPTS / "down.sh")], capture_output=True, text=True, timeout=600, check=False
    )
    figure("cluster-down seconds", f"{time.monotonic() - t0:.1f}")
    assert down.returncode == 0, f"down.sh failed:\n{down.stdout}\n{down.stderr[-4000:]}"
    if before is not None:
        after = host_snapshot()
        for key in before:
            assert after[key] == before[key], (
                f"cluster-down left {key} changed:\nbefore {before[key]}\nafter  {after[key]}"
            )


@dataclass
class Published:
    image: str  # as pushed: REGISTRY/fastapi-app:TAG
    tag: str
    chart: str  # oci://REGISTRY/charts/fastapi-app
    chart_version: str
    local_image: str  # the name in buildah/podman storage


@pytest.fixture(scope="session")
def published(cluster: Cluster) -> Published:
    """The image built once (make image-local), pushed to the registry; the chart pushed."""
    tag = f"e2e-{int(time.time())}"
    local = f"localhost/fastapi-app:{tag}"
    t0 = time.monotonic()
    cluster.deploy(
        "image",
        "push",
        "chart-push",
        timeout=1800,
        IMAGE=local,
        BASE="local",
        CONTAINER_ENGINE="buildah",
        REGISTRY=cluster.registry,
        TAG=tag,
    )
    figure("image build + push + chart push seconds", f"{time.monotonic() - t0:.1f}")
    version = re.search(
        r"^version:\s*(\S+)", (ROOT / "helm/fastapi-app/Chart.yaml").read_text(), re.M
    )
    assert version
    return Published(
        image=f"{cluster.registry}/fastapi-app:{tag}",
        tag=tag,
        chart=f"oci://{cluster.registry}/charts/fastapi-app",
        chart_version=version.group(1),
        local_image=local,
    )


def restricted_namespace(cluster: Cluster, name: str) -> None:
    """A namespace that enforces the Pod Security Standard `restricted`."""
    manifest = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": name,
            "labels": {
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest",
            },
        },
    }
    cluster.kc("apply", "-f", "-", input=json.dumps(manifest))


@dataclass
class Release:
    name: str
    namespace: str
    fullname: str
    selector: str
    install_seconds: float


@pytest.fixture(scope="session")
def release(cluster: Cluster, published: Published) -> Release:
    """`helm install` from oci:// into a restricted namespace, --wait (shared by the tests that
    only read it; test_release.py upgrades, rolls back and finally uninstalls it)."""
    ns, name = "e2e", "fastapi-app"
    restricted_namespace(cluster, ns)
    t0 = time.monotonic()
    cluster.helm(
        "install",
        name,
        published.chart,
        "--version",
        published.chart_version,
        "--plain-http",
        "--namespace",
        ns,
        "-f",
        str(VALUES_LOCAL),
        "--set",
        f"image.repository={cluster.registry}/fastapi-app",
        "--set",
        f"image.tag={published.tag}",
        "--wait",
        "--timeout",
        "300s",
    )
    seconds = time.monotonic() - t0
    figure("helm install --wait (2 pods Ready) seconds", f"{seconds:.1f}")
    return Release(
        name=name,
        namespace=ns,
        fullname=name,
        selector=f"app.kubernetes.io/instance={name}",
        install_seconds=seconds,
    )
