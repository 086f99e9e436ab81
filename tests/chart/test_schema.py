"""values.schema.json and the template guards reject bad values with a clear message."""

from __future__ import annotations

import json

import pytest

from tests.chart.conftest import HELMS, parse, run_helm, template_args


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


# Renders a real API server refuses: the chart refuses them first, naming the value.
LONG_NAME = "n" * 60


@pytest.mark.parametrize("helm", HELMS)
@pytest.mark.parametrize(
    ("sets", "names"),
    [
        # two Service ports with the same number (the API server: "Duplicate value")
        (("service.port=9000",), "service.metricsPort"),
        (("service.metricsPort=8000",), "service.metricsPort"),
        (("containerPorts.metrics=8000",), "containerPorts.metrics"),
        # a 60-character name: the test Pod's label value NAME-test would be 65 characters
        ((f"nameOverride={LONG_NAME}",), "nameOverride"),
        # FULLNAME-metrics (the metrics Service of a published Service) over 63 characters
        ((f"fullnameOverride={'f' * 60}",), "fullnameOverride"),
        # a release name plus nameOverride too long for the metrics Service's name
        (("nameOverride=" + "x" * 50, "service.type=NodePort"), "nameOverride"),
        # a pod label repeating a selector label: the Deployment's selector would not match
        (("podLabels.app\\.kubernetes\\.io/name=other",), "podLabels"),
        (("podLabels.app\\.kubernetes\\.io/instance=other",), "podLabels"),
        (("podLabels.app\\.kubernetes\\.io/part-of=x",), "podLabels"),
        (("commonLabels.app\\.kubernetes\\.io/version=x",), "commonLabels"),
        (("commonLabels.team=a", "podLabels.team=b"), "podLabels"),
        # label values the API server refuses
        (("podLabels.team=not a label",), "podLabels"),
        (("commonLabels.team=" + "v" * 64,), "commonLabels"),
        (("namespaceOverride=Shop",), "namespaceOverride"),
        (("partOf=has space",), "partOf"),
        # CORS: credentials with the wildcard origin (the service refuses it at boot too)
        (("config.cors.allowOrigins={*}", "config.cors.allowCredentials=true"), "allowOrigins"),
        (("config.cors.allowOrigins={https://a.example/path}",), "allowOrigins"),
        (("config.cors.allowMethods={FETCH}",), "allowMethods"),
        (("config.websocket.pingTimeoutSeconds=0",), "pingTimeoutSeconds"),
        (("config.bodyTimeoutSeconds=0",), "bodyTimeoutSeconds"),
        # names the API server wants unique within the pod
        (("extraVolumes[0].name=tmp", "extraVolumes[0].emptyDir.medium=Memory"), "extraVolumes"),
        (
            ("extraVolumeMounts[0].name=tmp", "extraVolumeMounts[0].mountPath=/tmp"),
            "extraVolumeMounts",
        ),
        (("sidecars[0].name=app", "sidecars[0].image=x:1"), "sidecars"),
        (
            (
                "initContainers[0].name=a",
                "initContainers[0].image=x:1",
                "sidecars[0].name=a",
                "sidecars[0].image=x:1",
            ),
            "sidecars",
        ),
        # extension points keep their shape
        (("envFromFiles[0].env=DB_FILE", "envFromFiles[0].key=password"), "envFromFiles"),
        (("sidecars[0].image=x",), "sidecars"),
        (("httpRoute.enabled=true", "httpRoute.parentRefs=null"), "httpRoute.parentRefs"),
        (("httpRoute.hostnames={API.example.com}",), "hostnames"),
        (("httpRoute.matches[0].path.type=Prefix",), "type"),
    ],
)
def test_values_the_api_server_refuses_are_refused_first(helm: str, sets, names: str) -> None:
    err = _render_error(helm, *sets)
    assert names in err, err


@pytest.mark.parametrize("helm", HELMS)
def test_the_longest_accepted_names_render(helm: str) -> None:
    """The limits are not stricter than needed: 58 and 55 characters are fine."""
    for sets in (
        (f"nameOverride={'n' * 58}",),
        (f"fullnameOverride={'f' * 55}", "service.type=LoadBalancer"),
    ):
        docs = parse(run_helm(helm, *template_args(sets=sets)).stdout)
        labels = [
            value
            for d in docs
            for value in d["metadata"].get("labels", {}).values()
            if isinstance(value, str)
        ]
        assert labels and max(map(len, labels)) <= 63
        # Service names are DNS labels (63); other names are DNS subdomains (253).
        services = [d["metadata"]["name"] for d in docs if d["kind"] == "Service"]
        assert services and max(map(len, services)) <= 63, services


# Names the API server refuses (DNS labels), mounts of no volume, a stop signal it refuses,
# and HTTPRoute filters that could reach the metrics port: refused by the chart first, each
# message naming the value. Values as JSON (--set-json) so templates and dots pass unchanged.
@pytest.mark.parametrize("helm", HELMS)
@pytest.mark.parametrize(
    ("values", "mentions"),
    [
        # container and volume names: DNS labels (schema)
        ({"sidecars": [{"name": "Bad_Name", "image": "x:1"}]}, ("sidecars", "name")),
        ({"sidecars": [{"name": "s" * 64, "image": "x:1"}]}, ("sidecars", "name")),
        ({"initContainers": [{"name": "init.db", "image": "x:1"}]}, ("initContainers", "name")),
        ({"extraVolumes": [{"name": "my.cache", "emptyDir": {}}]}, ("extraVolumes", "name")),
        ({"extraVolumes": [{"name": "v" * 64, "emptyDir": {}}]}, ("extraVolumes", "name")),
        # ... and as rendered, after tpl (template)
        (
            {"extraVolumes": [{"name": "{{ .Release.Name }}.cache", "emptyDir": {}}]},
            ("extraVolumes", "fastapi-app.cache"),
        ),
        (
            {"sidecars": ["name: {{ .Release.Name }}_x\nimage: x:1\n"]},
            ("sidecars", "fastapi-app_x"),
        ),
        # a mount must name a volume of the pod
        (
            {"extraVolumeMounts": [{"name": "nope", "mountPath": "/x"}]},
            ("extraVolumeMounts", "nope"),
        ),
        (
            {
                "sidecars": [
                    {
                        "name": "s",
                        "image": "x:1",
                        "volumeMounts": [{"name": "nope", "mountPath": "/x"}],
                    }
                ]
            },
            ("sidecars", "nope"),
        ),
        # envFromFiles objects are named as the API server names objects
        (
            {"envFromFiles": [{"env": "A_FILE", "secret": "DB.creds", "key": "k"}]},
            ("envFromFiles", "secret"),
        ),
        # stopSignal: refused before Kubernetes 1.33 / without the feature gate (not offered)
        ({"lifecycle": {"stopSignal": "SIGINT"}}, ("lifecycle", "stopSignal")),
        # HTTPRoute filters: known types only, and no mirror to this release's Services
        ({"httpRoute": {"enabled": True, "filters": [{"type": "Mirror"}]}}, ("filters", "type")),
        (
            {
                "httpRoute": {
                    "enabled": True,
                    "filters": [
                        {
                            "type": "RequestMirror",
                            "requestMirror": {"backendRef": {"name": "fastapi-app", "port": 9000}},
                        }
                    ],
                }
            },
            ("httpRoute.filters[0].requestMirror.backendRef", "9000"),
        ),
        (
            {
                "service": {"type": "LoadBalancer"},
                "httpRoute": {
                    "enabled": True,
                    "filters": [
                        {
                            "type": "RequestMirror",
                            "requestMirror": {
                                "backendRef": {"name": "fastapi-app-metrics", "port": 9000}
                            },
                        }
                    ],
                },
            },
            ("httpRoute.filters[0].requestMirror.backendRef", "fastapi-app-metrics"),
        ),
        (
            {
                "httpRoute": {
                    "enabled": True,
                    "filters": [
                        {
                            "type": "RequestMirror",
                            "requestMirror": {
                                "backendRef": {"name": "fastapi-app", "port": 9000},
                                "extra": 1,
                            },
                        }
                    ],
                }
            },
            ("requestMirror", "extra"),
        ),
    ],
)
def test_names_and_routes_the_api_server_refuses_are_refused_first(
    helm: str, values: dict, mentions: tuple[str, ...]
) -> None:
    extra = tuple(a for k, v in values.items() for a in ("--set-json", f"{k}={json.dumps(v)}"))
    proc = run_helm(helm, *template_args(extra=extra), check=False)
    assert proc.returncode != 0, f"render with {values} should fail:\n{proc.stdout[:500]}"
    for word in mentions:
        assert word in proc.stderr, proc.stderr


@pytest.mark.parametrize("helm", HELMS)
def test_templated_names_that_render_valid_are_accepted(helm: str) -> None:
    values = {
        "extraVolumes": [{"name": "{{ .Release.Name }}-cache", "emptyDir": {}}],
        "extraVolumeMounts": [{"name": "{{ .Release.Name }}-cache", "mountPath": "/cache"}],
        "sidecars": [{"name": "{{ .Release.Name }}-proxy", "image": "x:1"}],
    }
    extra = tuple(a for k, v in values.items() for a in ("--set-json", f"{k}={json.dumps(v)}"))
    docs = parse(run_helm(helm, *template_args(extra=extra)).stdout)
    pod = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    assert {"name": "fastapi-app-cache", "emptyDir": {}} in pod["volumes"]
    assert [c["name"] for c in pod["containers"]] == ["app", "fastapi-app-proxy"]


@pytest.mark.parametrize("helm", HELMS)
@pytest.mark.parametrize(
    ("release", "sets"),
    [
        # the release name alone makes FULLNAME-metrics longer than 63 characters
        ("r" * 50, ("service.type=NodePort",)),
        ("r" * 50, ("service.type=LoadBalancer",)),
        # a release name may hold dots; a Service name may not
        ("my.app", ()),
    ],
)
def test_a_release_name_the_names_cannot_hold_is_named(helm: str, release: str, sets) -> None:
    proc = run_helm(helm, *template_args(sets=sets, release=release), check=False)
    assert proc.returncode != 0, proc.stdout[:500]
    assert f'the release name "{release}"' in proc.stderr, proc.stderr
    assert "fullnameOverride" in proc.stderr  # the way out
