"""Chart test fixtures: tool discovery (fail in CI, skip locally) and cached helm renders."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "fastapi-app"
VALUES_DIR = Path(__file__).resolve().parent / "values"
TOOLS_BIN = ROOT / ".tools" / "bin"
IN_CI = os.environ.get("CI", "").lower() == "true"

RELEASE = "fastapi-app"
NAMESPACE = "fastapi-app"
HELMS = ("helm3", "helm4")
KUBE_VERSIONS = ("1.29", "1.30", "1.31", "1.32", "1.33", "1.34", "1.35")

# values set name -> values files (the render matrix)
MATRIX: dict[str, tuple[Path, ...]] = {
    "default": (),
    "all-on": (VALUES_DIR / "all-on.yaml",),
    "digest": (VALUES_DIR / "digest.yaml",),
    "autoscaling": (VALUES_DIR / "autoscaling.yaml",),
    "custom-resources": (VALUES_DIR / "custom-resources.yaml",),
    "kind": (CHART / "values-kind.yaml",),
    "published": (VALUES_DIR / "published.yaml",),
}


def find_tool(name: str, hint: str = "make tools") -> str:
    """Path of a tool in .tools/bin or on PATH; missing fails in CI and skips elsewhere."""
    candidates = (
        TOOLS_BIN / name,
        ROOT / ".tools" / name / "bin" / name,
        ROOT / ".venv" / "bin" / name,
    )
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    message = f"{name} not found; install it with `{hint}`"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)
    raise AssertionError("unreachable")


def helm_path(helm: str) -> str:
    return find_tool(helm, "make tools (scripts/tools/helm.sh)")


def run_helm(helm: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [helm_path(helm), *args], capture_output=True, text=True, timeout=120, check=False
    )
    if check and proc.returncode != 0:
        pytest.fail(f"helm {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def template_args(
    *values: Path,
    sets: tuple[str, ...] = (),
    extra: tuple[str, ...] = (),
    release: str = RELEASE,
    namespace: str = NAMESPACE,
):
    args = ["template", release, str(CHART), "--namespace", namespace]
    for v in values:
        args += ["-f", str(v)]
    for s in sets:
        args += ["--set", s]
    return [*args, *extra]


def parse(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


class Renders:
    """`helm template` output, rendered once per (helm, values set) per session."""

    def __init__(self) -> None:
        self._text: dict[tuple[str, str, str], str] = {}

    def text(self, name: str, helm: str = "helm4", release: str = RELEASE) -> str:
        key = (helm, name, release)
        if key not in self._text:
            self._text[key] = run_helm(helm, *template_args(*MATRIX[name], release=release)).stdout
        return self._text[key]

    def docs(self, name: str, helm: str = "helm4") -> list[dict]:
        return parse(self.text(name, helm))

    def custom(
        self,
        *sets: str,
        helm: str = "helm4",
        values: tuple[Path, ...] = (),
        release: str = RELEASE,
        namespace: str = NAMESPACE,
    ) -> list[dict]:
        args = template_args(*values, sets=sets, release=release, namespace=namespace)
        return parse(run_helm(helm, *args).stdout)


@pytest.fixture(scope="session")
def renders() -> Renders:
    return Renders()


def one(docs: list[dict], kind: str, name: str | None = None) -> dict:
    found = [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def kinds(docs: list[dict]) -> list[str]:
    return sorted(d["kind"] for d in docs)


def pod_specs(docs: list[dict]) -> list[tuple[str, dict]]:
    """(label, pod spec) for every pod-creating object."""
    out = []
    for d in docs:
        label = f"{d['kind']}/{d['metadata']['name']}"
        if d["kind"] == "Pod":
            out.append((label, d["spec"]))
        elif d["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}:
            out.append((label, d["spec"]["template"]["spec"]))
        elif d["kind"] == "CronJob":
            out.append((label, d["spec"]["jobTemplate"]["spec"]["template"]["spec"]))
    return out
