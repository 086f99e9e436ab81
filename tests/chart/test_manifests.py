"""k8s/ (plain manifests) is generated from the chart and has not drifted from `helm template`."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.chart.conftest import CHART, ROOT, find_tool, helm_path

K8S = ROOT / "k8s"


def _generator():
    spec = importlib.util.spec_from_file_location("k8s_generate", K8S / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gen():
    return _generator()


def _files(directory: Path) -> dict[str, str]:
    return {
        p.relative_to(directory).as_posix(): p.read_text()
        for p in sorted(directory.rglob("*.yaml"))
        if p.name != "cluster.yaml"
    }


def test_generated_files_are_current(gen, tmp_path) -> None:
    gen.generate(tmp_path, helm_path("helm4"))
    fresh = _files(tmp_path)
    committed = _files(K8S)
    assert sorted(fresh) == sorted(committed), "run `make manifests`"
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"stale (run `make manifests`): {stale}"


def _kustomize(path: Path) -> list[dict]:
    kubectl = find_tool("kubectl", "make tools (scripts/tools/helm.sh installs one)")
    out = subprocess.run(
        [kubectl, "kustomize", str(path)], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def _by_key(docs: list[dict]) -> dict[tuple[str, str], dict]:
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


@pytest.mark.parametrize(
    ("overlay", "values"),
    [("base", ()), ("kind", (CHART / "values-kind.yaml",))],
)
def test_kustomize_build_equals_helm_template(gen, overlay: str, values) -> None:
    """What `kubectl apply -k k8s/<overlay>` applies is exactly the chart's render."""
    expected = _by_key([gen.namespace_doc(), *gen.render(helm_path("helm4"), *values)])
    built = _by_key(_kustomize(K8S / overlay))
    assert sorted(built) == sorted(expected)
    for key, doc in expected.items():
        assert built[key] == doc, f"{key} differs between kustomize and helm template"


def test_drift_is_detected(gen, tmp_path) -> None:
    """The comparison above is not vacuous: a hand edit of a generated file shows up."""
    gen.generate(tmp_path, helm_path("helm4"))
    deployment = tmp_path / "base" / "deployment.yaml"
    deployment.write_text(deployment.read_text().replace("maxUnavailable: 0", "maxUnavailable: 1"))
    expected = _by_key(gen.render(helm_path("helm4")))
    built = _by_key(_kustomize(tmp_path / "base"))
    assert built[("Deployment", "fastapi-app")] != expected[("Deployment", "fastapi-app")]


def test_plain_manifests_enforce_restricted_namespace() -> None:
    ns = yaml.safe_load((K8S / "base" / "namespace.yaml").read_text())
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_kind_cluster_config() -> None:
    cfg = yaml.safe_load((K8S / "kind" / "cluster.yaml").read_text())
    assert cfg["apiVersion"] == "kind.x-k8s.io/v1alpha4" and cfg["kind"] == "Cluster"
    roles = [n["role"] for n in cfg["nodes"]]
    assert roles.count("control-plane") == 1 and roles.count("worker") >= 2
    zones = {
        n.get("labels", {}).get("topology.kubernetes.io/zone")
        for n in cfg["nodes"]
        if n["role"] == "worker"
    }
    assert len(zones - {None}) >= 2, "workers in two zones exercise the zone spread"
