"""A missing lock file or a dependency the lock does not cover fails the build, fast and clearly.

Each test builds (buildah, chroot isolation, the debootstrapped base) from a temporary copy
of the build context with one thing broken, and checks that the builder stage stops at its
guard with a message that says what to do, before the slow dependency install ever starts.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.image.conftest import REPO, build_image, buildah

pytestmark = pytest.mark.timeout(600)

CONTEXT_FILES = ["Dockerfile", ".dockerignore", "pyproject.toml", "uv.lock", "gunicorn.conf.py"]
TAG = f"localhost/fastapi-app:broken-test-{os.getpid()}"


@pytest.fixture
def context(base_image: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="image-broken-") as tmp:
        ctx = Path(tmp)
        for name in CONTEXT_FILES:
            shutil.copy2(REPO / name, ctx / name)
        shutil.copytree(REPO / "app", ctx / "app", ignore=shutil.ignore_patterns("__pycache__"))
        yield ctx
    buildah("rmi", "-f", TAG, check=False)


def test_missing_lock_file_fails_before_any_download(context: Path) -> None:
    (context / "uv.lock").unlink()
    result = build_image(TAG, context, timeout=300)
    assert result.returncode != 0, result.stdout[-3000:]
    # The guard's own line (step headers start with "[n/m] STEP"), naming the fix.
    assert re.search(r"^ERROR: uv\.lock is missing.*run 'uv lock'", result.stdout, re.M)
    # Nothing after the guard ran: neither the uv install nor the dependency install.
    assert "RUN python3 -m venv /opt/uv" not in result.stdout
    assert "uv sync" not in result.stdout


def test_dependency_missing_from_the_lock_fails_before_installing(context: Path) -> None:
    pyproject = context / "pyproject.toml"
    text = pyproject.read_text()
    broken = re.sub(r"(dependencies = \[\n)", r'\1    "left-pad-not-locked>=1.0",\n', text, count=1)
    assert broken != text
    pyproject.write_text(broken)
    result = build_image(TAG, context, timeout=300)
    assert result.returncode != 0, result.stdout[-3000:]
    # The guard's own line, after uv's resolver error (offline: no download was attempted).
    assert re.search(
        r"^ERROR: uv\.lock does not match pyproject\.toml: run 'uv lock'", result.stdout, re.M
    )
    assert "No solution found when resolving dependencies" in result.stdout
    assert not re.search(r"Installed \d+ packages", result.stdout)  # sync never started
