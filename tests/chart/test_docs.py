"""The chart README is generated from values.yaml and current; every value is documented."""

from __future__ import annotations

import json
import subprocess
import sys

import yaml

from tests.chart.conftest import CHART, ROOT


def test_chart_readme_is_current() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "chart_docs.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_docs_generator_reports_an_undocumented_value(tmp_path) -> None:
    chart = tmp_path / "chart"
    chart.mkdir()
    for name in ("Chart.yaml", "README.tmpl.md"):
        (chart / name).write_text((CHART / name).read_text())
    (chart / "values.yaml").write_text("# -- documented\na: 1\nb:\n  c: 2\n")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "chart_docs.py"), "--check", "--chart", str(chart)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1
    assert "b.c" in proc.stderr


def _leaves(node: dict, prefix: str = "") -> set[str]:
    out = set()
    for key, value in node.items():
        path = f"{prefix}{key}"
        out.add(path)
        if isinstance(value, dict):
            out |= _leaves(value, path + ".")
    return out


def _schema_paths(schema: dict, prefix: str = "") -> set[str]:
    out = set()
    for key, sub in (schema.get("properties") or {}).items():
        path = f"{prefix}{key}"
        out.add(path)
        out |= _schema_paths(sub, path + ".")
    return out


def test_schema_covers_every_value() -> None:
    """Each key in values.yaml is declared in values.schema.json, closed to unknown keys."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["additionalProperties"] is False
    declared = _schema_paths(schema)
    # maps of free-form k8s structures are declared as plain objects
    free_form = (
        "resources.",
        "podSecurityContext.",
        "securityContext.",
        "autoscaling.behavior.",
        "networkPolicy.egress.dnsPodSelector.",
    )
    missing = {p for p in _leaves(values) if p not in declared and not p.startswith(free_form)}
    assert not missing, sorted(missing)
    readme = (CHART / "README.md").read_text()
    undocumented = [
        p
        for p in _leaves(values)
        if not isinstance(_get(values, p), dict) and not _documented(p, readme)
    ]
    assert not undocumented, undocumented


def _documented(path: str, readme: str) -> bool:
    """The key or one of its parents (a map documented as a whole) has a row in the table."""
    parts = path.split(".")
    return any(f"| `{'.'.join(parts[:i])}` |" in readme for i in range(1, len(parts) + 1))


def _get(values: dict, path: str):
    node = values
    for part in path.split("."):
        node = node[part]
    return node


def test_readme_upgrade_and_extension_points() -> None:
    """The upgrade command resets to the new chart's defaults before reusing the old values
    (plain --reuse-values drops every new default); each extension point is documented."""
    readme = (CHART / "README.md").read_text()
    upgrades = [line for line in readme.splitlines() if line.startswith("helm upgrade")]
    assert upgrades and all("--reset-then-reuse-values" in line for line in upgrades)
    section = readme.split("## Extension points", 1)[1].split("\n## ", 1)[0]
    for value in (
        "extraVolumes",
        "extraVolumeMounts",
        "envFromFiles",
        "initContainers",
        "sidecars",
        "lifecycle",
        "extraObjects",
    ):
        assert f"`{value}`" in section, value
    assert "Turning autoscaling on" in readme and "lookup" in readme
