"""Every render validates strictly against the Kubernetes 1.29-1.35 schemas.

Built-in kinds use kubernetes-validate (in-process, strict: unknown fields rejected).
prometheus-operator kinds (ServiceMonitor, PrometheusRule) and the Gateway API HTTPRoute have no
schema there: they are checked against the subsets of their CRD schemas in tests/chart/schemas/.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from tests.chart.conftest import KUBE_VERSIONS, MATRIX

kubernetes_validate = pytest.importorskip("kubernetes_validate")

CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule.json",
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): "httproute.json",
}
SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"


def _crd_validator(doc: dict):
    name = CRD_SCHEMAS.get((doc["apiVersion"], doc["kind"]))
    if name is None:
        return None
    schema = json.loads((SCHEMA_DIR / name).read_text())
    return jsonschema.Draft7Validator(schema)


@pytest.mark.parametrize("values", sorted(MATRIX))
def test_render_is_valid_for_every_supported_kubernetes(renders, values: str) -> None:
    docs = renders.docs(values)
    assert docs, "empty render"
    errors = []
    for doc in docs:
        label = f"{doc['kind']}/{doc['metadata']['name']}"
        validator = _crd_validator(doc)
        if validator is not None:
            errors += [f"{label}: {e.message}" for e in validator.iter_errors(doc)]
            continue
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(doc, f"{version}.0", strict=True)
            except kubernetes_validate.ValidationError as e:
                errors.append(f"{label} on {version}: {e.message} at {list(e.path)}")
    assert not errors, "\n".join(errors)


def test_validator_rejects_an_unknown_field(renders) -> None:
    """The strict check above is not vacuous: an unknown field in a container fails."""
    deployment = next(d for d in renders.docs("default") if d["kind"] == "Deployment")
    broken = json.loads(json.dumps(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["bogusField"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, "1.29.0", strict=True)


def test_crd_schema_rejects_a_misspelt_endpoint_field(renders) -> None:
    sm = next(d for d in renders.docs("all-on") if d["kind"] == "ServiceMonitor")
    broken = json.loads(json.dumps(sm))
    broken["spec"]["endpoints"][0]["intervall"] = "30s"
    assert list(_crd_validator(broken).iter_errors(broken))


def test_every_crd_kind_of_the_matrix_has_a_schema(renders) -> None:
    """No custom kind slips past validation unchecked (built-ins use kubernetes-validate)."""
    kinds = {(d["apiVersion"], d["kind"]) for name in MATRIX for d in renders.docs(name)}
    builtin = {"", "apps", "autoscaling", "policy", "networking.k8s.io", "batch"}
    custom = {k for k in kinds if k[0].rpartition("/")[0] not in builtin}
    assert custom <= set(CRD_SCHEMAS), custom - set(CRD_SCHEMAS)
    assert ("gateway.networking.k8s.io/v1", "HTTPRoute") in kinds


@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        (lambda s: s["rules"][0]["matches"][0]["path"].update(type="Prefix"), "Prefix"),
        (lambda s: s["hostnames"].append("API.example.com"), "API.example.com"),
        (lambda s: s["rules"][0]["backendRefs"][0].update(port=0), "0"),
        (lambda s: s["parentRefs"][0].pop("name"), "name"),
        (lambda s: s["rules"][0].update(timeouts={"request": "30 seconds"}), "30 seconds"),
    ],
)
def test_httproute_schema_rejects_what_the_crd_rejects(renders, mutate, where) -> None:
    route = next(d for d in renders.docs("all-on") if d["kind"] == "HTTPRoute")
    assert not list(_crd_validator(route).iter_errors(route))
    broken = json.loads(json.dumps(route))
    mutate(broken["spec"])
    errors = [e.message for e in _crd_validator(broken).iter_errors(broken)]
    assert errors and any(where in e for e in errors), errors
