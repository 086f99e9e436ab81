"""Release hygiene: the chart's version rules, Chart.yaml metadata, the CHANGELOG, the image's
software bill of materials (CycloneDX, from the lock file) and the base-image script."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.chart.conftest import CHART, IN_CI, ROOT

SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$"
)
CHANGE_KINDS = {"added", "changed", "deprecated", "removed", "fixed", "security"}


def _chart() -> dict:
    return yaml.safe_load((CHART / "Chart.yaml").read_text())


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _changelog_sections() -> list[tuple[str, list[tuple[str, str]]]]:
    """(version, [(kind, entry)]) for every `## [version]` section, in file order."""
    sections: list[tuple[str, list[tuple[str, str]]]] = []
    kind = ""
    for line in (ROOT / "CHANGELOG.md").read_text().splitlines():
        if m := re.match(r"^## \[([^\]]+)\] - (\d{4}-\d{2}-\d{2})$", line):
            sections.append((m[1], []))
            kind = ""
        elif line.startswith("### "):
            kind = line[4:].strip().lower()
        elif line.startswith("- ") and sections:
            sections[-1][1].append((kind, line[2:].strip()))
    return sections


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("-")[0].split("+")[0].split("."))


def test_versions_follow_the_written_rules() -> None:
    chart = _chart()
    assert SEMVER.match(str(chart["version"])), chart["version"]
    # appVersion is the service's version, which is also the default image tag
    assert chart["appVersion"] == _pyproject()["project"]["version"]
    assert isinstance(chart["appVersion"], str), "quote appVersion in Chart.yaml"
    readme = (CHART / "README.md").read_text()
    assert "## Versions" in readme and "SemVer 2" in readme and "CHANGELOG.md" in readme


def test_changelog_has_the_current_version_first_and_descending() -> None:
    sections = _changelog_sections()
    assert sections, "CHANGELOG.md has no `## [version] - date` section"
    versions = [v for v, _ in sections]
    assert versions[0] == str(_chart()["version"]), "add a CHANGELOG section for the version"
    assert all(SEMVER.match(v) for v in versions), versions
    assert versions == sorted(versions, key=_key, reverse=True), "newest first, no duplicates"
    assert len(set(versions)) == len(versions)
    for version, entries in sections:
        assert entries, f"{version}: no entries"
        assert {k for k, _ in entries} <= CHANGE_KINDS, version


def test_artifacthub_changes_repeat_the_current_changelog_section() -> None:
    annotations = _chart()["annotations"]
    changes = yaml.safe_load(annotations["artifacthub.io/changes"])
    current = _changelog_sections()[0][1]
    assert [(c["kind"], c["description"]) for c in changes] == current


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=60, check=False
    )


def _version_line(text: str) -> str:
    m = re.search(r"^version:.*$", text, re.M)
    assert m, "Chart.yaml has no `version:` line"
    return m[0]


def test_every_chart_change_bumps_the_version() -> None:
    """A file under helm/fastapi-app that changed since the commit that last changed the
    `version:` line of Chart.yaml (committed since, staged, edited or new) needs a new
    version: either that commit is the newest chart change, or the version line is being
    changed in the work tree now."""
    chart_dir = CHART.relative_to(ROOT).as_posix()
    chart_yaml = f"{chart_dir}/Chart.yaml"
    if shutil.which("git") is None or _git("rev-parse", "--git-dir").returncode != 0:
        pytest.skip("no git history (a tarball or an export): the version rule needs a clone")
    # -G matches the commits whose diff adds or removes a line matching the regex
    bump = _git("log", "-1", "--format=%H %P", "-G^version:", "--", chart_yaml)
    assert bump.returncode == 0, bump.stderr
    if not bump.stdout.strip():
        pytest.skip(f"{chart_yaml} has no history in this repository (not committed yet)")
    commit, *parents = bump.stdout.split()
    if not parents and _git("rev-parse", "--is-shallow-repository").stdout.strip() == "true":
        pytest.skip(f"shallow clone: {commit[:12]} is its boundary, not necessarily the bump")
    then = _git("show", f"{commit}:./{chart_yaml}")
    assert then.returncode == 0, then.stderr
    if _version_line(then.stdout) != _version_line((CHART / "Chart.yaml").read_text()):
        return  # the version is being bumped in the work tree
    changed = _git("diff", "--name-only", commit, "--", chart_dir)
    untracked = _git("ls-files", "--others", "--exclude-standard", "--", chart_dir)
    assert changed.returncode == 0 and untracked.returncode == 0, changed.stderr
    files = sorted(set(changed.stdout.split()) | set(untracked.stdout.split()))
    assert not files, (
        f"{chart_dir} changed since {commit[:12]}, the commit that last set its version "
        f"({_version_line(then.stdout)}): {', '.join(files)}. Bump `version` in {chart_yaml} "
        "(the patch version for a new value or a fix, the minor one for a changed default or a "
        'removed or renamed value: see "Versions" in the chart README), add a section for it '
        "to CHANGELOG.md and repeat its entries in annotations.artifacthub.io/changes."
    )


def test_chart_metadata() -> None:
    chart = _chart()
    assert chart["maintainers"] and all(m.get("name") for m in chart["maintainers"])
    assert chart["sources"] and all(s.startswith("https://") for s in chart["sources"])
    annotations = chart["annotations"]
    images = yaml.safe_load(annotations["artifacthub.io/images"])
    assert {"name": "fastapi-app", "image": f"fastapi-app:{chart['appVersion']}"} in images
    links = yaml.safe_load(annotations["artifacthub.io/links"])
    assert all(link["name"] and link["url"].startswith("https://") for link in links)
    assert annotations["artifacthub.io/prerelease"] == (
        "true" if _key(chart["version"])[0] == 0 else "false"
    )
    assert chart["kubeVersion"] == ">=1.29.0-0"


# ------------------------------------------------------------------ SBOM


def _runtime_packages_from_the_lock() -> dict[str, str]:
    """name -> version of every package the project needs at run time, read from uv.lock:
    the project's own dependencies (not its dependency groups), followed transitively,
    optional extras included where a dependency asks for them."""
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    packages = {p["name"]: p for p in lock["package"]}
    project = _pyproject()["project"]["name"]
    seen: dict[str, str] = {}
    todo = [(d["name"], tuple(d.get("extra", ()))) for d in packages[project]["dependencies"]]
    while todo:
        name, extras = todo.pop()
        package = packages[name]
        first = name not in seen
        seen[name] = package["version"]
        deps = list(package.get("dependencies", [])) if first else []
        for extra in extras:
            deps += package.get("optional-dependencies", {}).get(extra, [])
        todo += [(d["name"], tuple(d.get("extra", ()))) for d in deps]
    return seen


@pytest.fixture(scope="module")
def sbom(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("sbom")
    env = {**os.environ, "SBOM_ONLY": "1", "SBOM_DIR": str(out), "IMAGE": "fastapi-app:test"}
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "image.sh")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    path = out / "fastapi-app_test.cdx.json"
    assert str(path) in proc.stderr, proc.stderr
    return json.loads(path.read_text())


def test_sbom_is_cyclonedx(sbom) -> None:
    assert sbom["bomFormat"] == "CycloneDX" and sbom["specVersion"] == "1.5"
    assert re.match(r"^urn:uuid:[0-9a-f-]{36}$", sbom["serialNumber"])
    assert sbom["metadata"]["component"]["name"] == _pyproject()["project"]["name"]
    for c in sbom["components"]:
        assert c["purl"] == f"pkg:pypi/{c['name']}@{c['version']}", c["name"]
        hashes = [h for ref in c.get("externalReferences", []) for h in ref.get("hashes", [])]
        assert hashes and all(h["alg"] == "SHA-256" for h in hashes), c["name"]


def test_sbom_components_are_the_runtime_packages_of_the_lock(sbom) -> None:
    components = {c["name"]: c["version"] for c in sbom["components"]}
    expected = _runtime_packages_from_the_lock()
    assert components == expected
    # the dev tools of the project are not in the image
    dev = {d.split(">")[0].split("=")[0].split("[")[0].strip().lower()
           for deps in _pyproject().get("dependency-groups", {}).values()
           for d in deps if isinstance(d, str)}  # fmt: skip
    assert dev and not (dev - set(expected)) & set(components)


# ------------------------------------------------------------------ base image script


def test_pybase_leaves_the_mirror_to_debootstrap(tmp_path) -> None:
    """scripts/pybase.sh names no mirror host unless PYBASE_MIRROR is set.

    debootstrap and podman are stand-ins recording their arguments: the real ones need root,
    a minute and the Debian archive, and scripts/tools/image-tools.sh's tests build for real.
    """
    if os.geteuid() != 0:
        message = "pybase.sh needs root (debootstrap)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    (bin_dir / "debootstrap").write_text(
        f'#!/bin/sh\necho "debootstrap $*" >> {log}\n'
        'for a; do case "$a" in */rootfs) mkdir -p "$a";; esac; done\n'
    )
    (bin_dir / "podman").write_text(
        f'#!/bin/sh\necho "podman $*" >> {log}\n'
        f'case "$*" in *"image exists"*) [ -f {tmp_path}/imported ] ;; '
        f"*import*) cat >/dev/null; touch {tmp_path}/imported ;; esac\n"
    )
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)

    def run(**extra: str) -> list[str]:
        log.write_text("")
        (tmp_path / "imported").unlink(missing_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYBASE_")}
        env.update(PATH=f"{bin_dir}:{os.environ['PATH']}", **extra)
        proc = subprocess.run(
            ["bash", str(ROOT / "scripts" / "pybase.sh")],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        (call,) = [line for line in log.read_text().splitlines() if line.startswith("debootstrap")]
        return call.split()[1:]

    default = run()
    assert default[-2:][0] == "bookworm" and Path(default[-1]).name == "rootfs", default
    assert not any("://" in a for a in default), default
    chosen = run(PYBASE_MIRROR="http://mirror.example/debian")
    assert chosen[-1] == "http://mirror.example/debian", chosen
