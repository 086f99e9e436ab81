"""values.schema.json and the template guards reject bad values with a clear message."""

from __future__ import annotations

import pytest

from tests.chart.conftest import HELMS, run_helm, template_args


def _render_error(helm: str, *sets: str) -> str:
    proc = run_helm(helm, *template_args(sets=sets), check=False)
    assert proc.returncode != 0, f"render with {sets} should fail:\n{proc.stdout[:500]}"
    return proc.stderr


@pytest.mark.parametrize("helm", HELMS)
@pytest.mark.parametrize(
    ("setting", "mentions"),
    [
        ("replicas=3", "replicas"),  # unknown top-level key
        ("config.logLevl=debug", "logLevl"),  # unknown nested key
        ("image.registry=x", "registry"),
    ],
)
def test_unknown_key_is_rejected(helm: str, setting: str, mentions: str) -> None:
    err = _render_error(helm, setting)
    assert "schema" in err
    assert mentions in err
    assert "not allowed" in err


@pytest.mark.parametrize("helm", HELMS)
@pytest.mark.parametrize(
    ("setting", "path"),
    [
        ("replicaCount=two", "replicaCount"),
        ("config.docsEnabled=maybe", "docsEnabled"),
        ("service.port=http", "port"),
        ("containerPorts.metrics=70000", "metrics"),
    ],
)
def test_wrong_type_is_rejected(helm: str, setting: str, path: str) -> None:
    err = _render_error(helm, setting)
    assert "schema" in err
    assert path in err


@pytest.mark.parametrize("helm", HELMS)
def test_wrong_enum_is_rejected(helm: str) -> None:
    err = _render_error(helm, "config.logFormat=xml")
    assert "logFormat" in err


@pytest.mark.parametrize("helm", HELMS)
def test_too_small_grace_period_fails_with_the_minimum(helm: str) -> None:
    err = _render_error(
        helm,
        "config.shutdownDelaySeconds=10",
        "config.gracefulTimeoutSeconds=30",
        "terminationGracePeriodSeconds=40",
    )
    assert "terminationGracePeriodSeconds=40 is too small" in err
    assert "at least" in err and "= 45" in err


@pytest.mark.parametrize("helm", HELMS)
def test_latest_tag_is_rejected(helm: str) -> None:
    err = _render_error(helm, "image.tag=latest")
    assert 'image.tag must not be "latest"' in err


def test_good_override_is_accepted(renders) -> None:
    docs = renders.custom(
        "terminationGracePeriodSeconds=45",
        "config.shutdownDelaySeconds=10",
        "config.gracefulTimeoutSeconds=30",
    )
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 45
