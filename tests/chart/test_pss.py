"""Pod Security Standard `restricted` on every pod spec of every render (test Pod included)."""

from __future__ import annotations

import copy

import pytest

from tests.chart.conftest import MATRIX, pod_specs
from tests.chart.pss import violations


@pytest.mark.parametrize("values", sorted(MATRIX))
def test_every_pod_spec_is_restricted(renders, values: str) -> None:
    docs = renders.docs(values)
    specs = pod_specs(docs)
    labels = [label for label, _ in specs]
    assert any(label.startswith("Deployment/") for label in labels)
    assert any(label.startswith("Pod/") for label in labels), "helm test Pod missing"
    problems = {label: violations(spec) for label, spec in specs}
    assert not any(problems.values()), problems


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            lambda s: s["containers"][0]["securityContext"].pop("allowPrivilegeEscalation"),
            "allowPrivilegeEscalation",
        ),
        (
            lambda s: s["containers"][0]["securityContext"]["capabilities"].update(
                drop=["NET_RAW"]
            ),
            "drop ALL",
        ),
        (
            lambda s: s["containers"][0]["securityContext"]["capabilities"].update(
                add=["SYS_ADMIN"]
            ),
            "capabilities.add",
        ),
        (lambda s: s["securityContext"].update(runAsNonRoot=False), "runAsNonRoot"),
        (lambda s: s["containers"][0]["securityContext"].update(runAsUser=0), "runAsUser"),
        (lambda s: s.update(hostNetwork=True), "hostNetwork"),
        (lambda s: s["volumes"].append({"name": "h", "hostPath": {"path": "/"}}), "hostPath"),
        (lambda s: s["securityContext"].update(seccompProfile={"type": "Unconfined"}), "seccomp"),
        (lambda s: s["containers"][0]["securityContext"].update(privileged=True), "privileged"),
    ],
)
def test_checker_catches_violations(renders, mutate, expected: str) -> None:
    """The checker is not vacuous: each relaxation of the chart's pod spec is reported."""
    deployment = next(d for d in renders.docs("default") if d["kind"] == "Deployment")
    spec = copy.deepcopy(deployment["spec"]["template"]["spec"])
    assert violations(spec) == []
    mutate(spec)
    found = violations(spec)
    assert any(expected in v for v in found), found
