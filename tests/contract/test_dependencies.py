"""Every distribution the code imports is declared in ``pyproject.toml``.

A package that only arrives as someone else's dependency (``websockets`` through
``uvicorn[standard]``, ``starlette`` through ``fastapi``) disappears the day that dependency
drops it, or is upgraded past what the code expects without anything saying so. So every
top-level import of the service, its config, the tests, the benchmarks, the load tests and
the observability scripts must name a declared distribution: the service's own code
(``app/``, ``gunicorn.conf.py``) a runtime dependency, the rest a runtime or ``dev`` one.

Modules are mapped to distributions through the installed files (``importlib.metadata``),
longest package path first, so a namespace package such as ``opentelemetry`` resolves to the
distribution that ships the subpackage actually imported (``opentelemetry.sdk`` ->
``opentelemetry-sdk``).
"""

from __future__ import annotations

import ast
import sys
import tomllib
from functools import cache
from importlib.metadata import distributions
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
RUNTIME_CODE = (REPO / "app", REPO / "gunicorn.conf.py")
OTHER_CODE = tuple(REPO / d for d in ("tests", "bench", "loadtests", "observability"))
FIRST_PARTY = {"app", "tests", "bench", "loadtests", "observability"}


def declared() -> tuple[set[str], set[str]]:
    """(runtime, dev) distribution names, canonical."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())

    def names(reqs: list[str]) -> set[str]:
        return {canonicalize_name(Requirement(r).name) for r in reqs}

    dev = [r for r in pyproject["dependency-groups"]["dev"] if isinstance(r, str)]
    return names(pyproject["project"]["dependencies"]), names(dev)


@cache
def module_files() -> dict[str, str]:
    """Installed file path (``a/b/__init__.py``, ``a/b.py``, ``a/_b.so``...) -> distribution."""
    out: dict[str, str] = {}
    for dist in distributions():
        for file in dist.files or ():
            if file.suffix in (".py", ".so", ".pyd") or file.name == "__init__.py":
                out.setdefault(str(file), canonicalize_name(dist.metadata["Name"]))
    return out


def distribution_of(module: str) -> str | None:
    """The distribution that installs ``module`` (its longest matching package path)."""
    files = module_files()
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        path = "/".join(parts[:end])
        if f"{path}/__init__.py" in files:
            return files[f"{path}/__init__.py"]
        if f"{path}.py" in files:
            return files[f"{path}.py"]
        for name, dist in files.items():  # extension modules: a/b.cpython-311-x86_64.so
            if name.startswith(f"{path}.") and name.endswith((".so", ".pyd")):
                return dist
    # A namespace package imported as itself: any distribution shipping under it.
    prefix = "/".join(parts) + "/"
    owners = {dist for name, dist in files.items() if name.startswith(prefix)}
    return owners.pop() if len(owners) == 1 else None


def imports(path: Path) -> list[tuple[str, int, str, str]]:
    """(file, line, module, statement) of every absolute import under ``path`` (a folder or a file),
    third-party only: not the standard library, not the repository's own packages, not a
    sibling module of the importing file (a script's own folder is on its path)."""
    files = [path] if path.is_file() else sorted(path.rglob("*.py"))
    out = []
    for file in files:
        siblings = {p.stem for p in file.parent.glob("*.py")} | {
            p.name for p in file.parent.iterdir() if p.is_dir()
        }
        for node in ast.walk(ast.parse(file.read_text(), str(file))):
            if isinstance(node, ast.Import):
                modules = [(alias.name, f"import {alias.name}") for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                # ``from opentelemetry import trace``: the name may be a subpackage
                modules = [
                    (f"{node.module}.{alias.name}", f"from {node.module} import {alias.name}")
                    for alias in node.names
                ]
            else:
                continue
            for module, statement in modules:
                top = module.split(".")[0]
                if top in sys.stdlib_module_names or top in FIRST_PARTY or top in siblings:
                    continue
                out.append((str(file), node.lineno, module, statement))
    return out


def undeclared(roots: tuple[Path, ...], allowed: set[str]) -> list[str]:
    problems = []
    for file, line, module, statement in (i for root in roots for i in imports(root)):
        dist = distribution_of(module)
        if dist is None:
            problems.append(f"{file}:{line}: {statement}: no installed distribution has it")
        elif dist not in allowed:
            problems.append(f"{file}:{line}: {statement}: distribution {dist} not declared")
    return problems


def test_the_service_imports_only_runtime_dependencies() -> None:
    runtime, _ = declared()
    problems = undeclared(RUNTIME_CODE, runtime)
    assert not problems, (
        "declare these in pyproject.toml [project].dependencies (the image installs only "
        "those), then .tools/bin/uv lock:\n" + "\n".join(problems)
    )


def test_tests_benchmarks_and_scripts_import_only_declared_distributions() -> None:
    runtime, dev = declared()
    problems = undeclared(OTHER_CODE, runtime | dev)
    assert not problems, (
        "declare these in pyproject.toml ([dependency-groups].dev when only tests, benchmarks "
        "or scripts use them), then .tools/bin/uv lock:\n" + "\n".join(problems)
    )


def test_the_check_sees_namespace_packages_and_transitive_imports(tmp_path: Path) -> None:
    """The check itself: a namespace package resolves to the distribution of the subpackage,
    and a module only a transitive dependency installs is reported as undeclared."""
    assert distribution_of("opentelemetry.sdk.trace") == "opentelemetry-sdk"
    assert distribution_of("opentelemetry.trace") == "opentelemetry-api"
    assert distribution_of("yaml") == "pyyaml"
    runtime, dev = declared()
    script = tmp_path / "team.py"
    script.write_text("import json\nimport anyio  # installed for starlette\nimport fastapi\n")
    assert undeclared((script,), runtime | dev) == [
        f"{script}:2: import anyio: distribution anyio not declared"
    ]
