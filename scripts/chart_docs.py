#!/usr/bin/env python3
"""Generate helm/fastapi-app/README.md from README.tmpl.md and the `# --` comments in values.yaml.

Convention (a subset of helm-docs'): a `# -- text` comment block right above a key documents it.
A documented key whose value is a map or a list is listed as one row; an undocumented map is
descended into and each of its keys must be documented. Any undocumented value is an error.
The Type column is the type values.schema.json declares for the value (the default's own
type where the schema declares none), so a timeout accepting 2.5 reads "number", not "int".

    scripts/chart_docs.py            # rewrite the README
    scripts/chart_docs.py --check    # exit 1 when the README is stale or a value is undocumented
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "fastapi-app"
PLACEHOLDER = "<!-- VALUES_TABLE -->"
KEY_RE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.\-]+):(?:\s|$)")
DOC_RE = re.compile(r"^ *# -- ?(?P<text>.*)$")
CONT_RE = re.compile(r"^ *# ?(?P<text>.*)$")


@dataclass
class Row:
    key: str
    type: str
    default: str
    description: str


def _lookup(values: dict, path: list[str]):
    node = values
    for part in path:
        node = node[part]
    return node


def _type_name(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    return "object"


_SCHEMA_TYPES = {"integer": "int", "number": "number", "boolean": "bool", "array": "list"}


def _schema_type(schema: dict, path: list[str]) -> str | None:
    """The type values.schema.json declares for a value ("int or null"), if it declares one."""
    node = schema
    for part in path:
        node = (node.get("properties") or {}).get(part)
        if not isinstance(node, dict):
            return None
    declared = node.get("type")
    if declared is None:
        return None
    names = declared if isinstance(declared, list) else [declared]
    return " or ".join(_SCHEMA_TYPES.get(name, name) for name in names)


def _default(value) -> str:
    text = json.dumps(value, separators=(", ", ": "), ensure_ascii=False)
    return "`" + text.replace("|", "\\|") + "`"


def collect(values_path: Path) -> tuple[list[Row], list[str]]:
    """Return the documented rows and the list of undocumented keys."""
    text = values_path.read_text(encoding="utf-8")
    values = yaml.safe_load(text) or {}
    schema_path = values_path.with_name("values.schema.json")
    schema = json.loads(schema_path.read_text(encoding="utf-8")) if schema_path.exists() else {}
    rows: list[Row] = []
    missing: list[str] = []
    stack: list[tuple[int, str]] = []  # (indent, key) of the enclosing maps
    pending: list[str] = []  # `# --` block waiting for its key
    in_doc = False
    skip_deeper_than: int | None = None  # inside a value documented as a whole

    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            pending, in_doc = [], False
            continue
        indent = len(line) - len(line.lstrip(" "))
        if skip_deeper_than is not None:
            if indent > skip_deeper_than or stripped.startswith("- "):
                continue
            skip_deeper_than = None
        if stripped.startswith("#"):
            m = DOC_RE.match(line)
            if m:
                pending, in_doc = [m.group("text").strip()], True
            elif in_doc:
                pending.append(CONT_RE.match(line).group("text").strip())
            continue
        m = KEY_RE.match(line)
        if not m:
            # list items or flow continuation under a key handled above
            pending, in_doc = [], False
            continue
        key = m.group("key")
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = [k for _, k in stack] + [key]
        value = _lookup(values, path)
        dotted = ".".join(path)
        if pending:
            kind = _schema_type(schema, path) or _type_name(value)
            rows.append(Row(dotted, kind, _default(value), " ".join(pending)))
            if isinstance(value, (dict, list)) and value:
                skip_deeper_than = indent
        elif isinstance(value, dict) and value:
            stack.append((indent, key))
        else:
            missing.append(dotted)
        pending, in_doc = [], False
    return rows, missing


def render(rows: list[Row]) -> str:
    out = ["| Key | Type | Default | Description |", "|-----|------|---------|-------------|"]
    for r in rows:
        description = r.description.replace("|", "\\|")
        out.append(f"| `{r.key}` | {r.type} | {r.default} | {description} |")
    return "\n".join(out)


def build(chart: Path = CHART) -> tuple[str, list[str]]:
    rows, missing = collect(chart / "values.yaml")
    template = (chart / "README.tmpl.md").read_text(encoding="utf-8")
    if PLACEHOLDER not in template:
        raise SystemExit(f"{chart / 'README.tmpl.md'}: missing {PLACEHOLDER}")
    chart_meta = yaml.safe_load((chart / "Chart.yaml").read_text(encoding="utf-8"))
    readme = (
        template.replace(PLACEHOLDER, render(rows))
        .replace("{{ version }}", str(chart_meta["version"]))
        .replace("{{ appVersion }}", str(chart_meta["appVersion"]))
        .replace("{{ kubeVersion }}", str(chart_meta.get("kubeVersion", "")))
    )
    return readme, missing


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when README.md is not current")
    parser.add_argument("--chart", type=Path, default=CHART)
    args = parser.parse_args()
    readme, missing = build(args.chart)
    if missing:
        print("undocumented values (add a `# --` comment above each):", file=sys.stderr)
        for key in missing:
            print(f"  {key}", file=sys.stderr)
        return 1
    target = args.chart / "README.md"
    if args.check:
        current = target.read_text(encoding="utf-8") if target.exists() else ""
        if current != readme:
            print(f"{target} is stale: run `make chart-docs`", file=sys.stderr)
            return 1
        print(f"{target} is current")
        return 0
    target.write_text(readme, encoding="utf-8")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
