"""`helm lint --strict` with Helm 3 and Helm 4, and identical renders from both."""

from __future__ import annotations

import pytest

from tests.chart.conftest import CHART, HELMS, MATRIX, run_helm


@pytest.mark.parametrize("helm", HELMS)
@pytest.mark.parametrize("values", ["default", "all-on", "kind", "published"])
def test_lint_strict(helm: str, values: str) -> None:
    args = ["lint", "--strict", str(CHART)]
    for f in MATRIX[values]:
        args += ["-f", str(f)]
    proc = run_helm(helm, *args, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout
    assert "[WARNING]" not in proc.stdout and "[ERROR]" not in proc.stdout


@pytest.mark.parametrize("values", sorted(MATRIX))
def test_helm3_and_helm4_render_the_same(renders, values: str) -> None:
    """The other render checks run on Helm 4 output; this keeps Helm 3 covered by them."""
    assert renders.docs(values, "helm3") == renders.docs(values, "helm4")


def test_install_dry_run_notes() -> None:
    """NOTES.txt tells how to reach the service and its metrics.

    Helm 4 only: Helm 3's `install --dry-run=client` still needs a reachable cluster.
    """
    proc = run_helm(
        "helm4", "install", "demo", str(CHART), "--namespace", "shop", "--dry-run=client"
    )
    notes = proc.stdout.split("NOTES:", 1)[1]
    assert "kubectl -n shop port-forward svc/demo-fastapi-app 8000:8000" in notes
    assert "kubectl -n shop port-forward svc/demo-fastapi-app 9000:9000" in notes
    assert "/metrics" in notes
    assert "helm test demo -n shop" in notes


@pytest.mark.parametrize("helm", HELMS)
def test_kube_version_floor(helm: str) -> None:
    """Kubernetes 1.29 is the oldest supported minor: it renders, 1.28 is refused."""
    ok = run_helm(helm, "template", "x", str(CHART), "--kube-version", "1.29.0", check=False)
    assert ok.returncode == 0, ok.stderr
    old = run_helm(helm, "template", "x", str(CHART), "--kube-version", "1.28.9", check=False)
    assert old.returncode != 0
    assert "kubeVersion" in old.stderr or ">=1.29.0-0" in old.stderr
