"""Render the chart's alert rules per release, for promtool's unit tests of the scoped rules.

    .venv/bin/python observability/render_rules.py --out DIR   # then promtool test rules DIR/*.yaml

observability/tests/releases/renders.yaml names the releases (release, namespace, --set values);
each is rendered with `helm template --show-only templates/prometheusrule.yaml` into
DIR/rendered/<name>.yaml as a plain rules file, and the test files of that directory are copied
to DIR, where their `rule_files: [rendered/<name>.yaml]` entries resolve.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "helm" / "fastapi-app"
CASES = Path(__file__).resolve().parent / "tests" / "releases"


def find_helm() -> str:
    for candidate in (
        os.environ.get("HELM"),
        str(ROOT / ".tools" / "bin" / "helm4"),
        str(ROOT / ".tools" / "bin" / "helm3"),
        shutil.which("helm"),
    ):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise SystemExit("no helm binary: run `make tools` (scripts/tools/helm.sh)")


def render_rules(helm: str, release: str, namespace: str, sets: list[str]) -> dict:
    """The `groups:` of the PrometheusRule the chart renders for this release."""
    cmd = [helm, "template", release, str(CHART), "--namespace", namespace]
    cmd += ["--show-only", "templates/prometheusrule.yaml", "--set", "prometheusRule.enabled=true"]
    for s in sets:
        cmd += ["--set", s]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    (rule,) = [d for d in yaml.safe_load_all(out) if d]
    return {"groups": rule["spec"]["groups"]}


def prepare(out: Path, helm: str) -> list[Path]:
    """Render every release of renders.yaml into out/rendered/ and copy the tests; return them."""
    renders = yaml.safe_load((CASES / "renders.yaml").read_text())
    (out / "rendered").mkdir(parents=True, exist_ok=True)
    for name, spec in renders.items():
        groups = render_rules(helm, spec["release"], spec["namespace"], spec.get("set", []))
        (out / "rendered" / f"{name}.yaml").write_text(yaml.safe_dump(groups, sort_keys=False))
    tests = []
    for case in sorted(CASES.glob("*_test.yaml")):
        shutil.copy(case, out / case.name)
        tests.append(out / case.name)
    return tests


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    tests = prepare(args.out, find_helm())
    print("\n".join(str(t) for t in tests))
    return 0


if __name__ == "__main__":
    sys.exit(main())
