"""Shared helpers for the image suite: buildah/podman wrappers and the debootstrapped base.

Everything here runs the real tools (buildah, podman, debootstrap) against vfs storage with
chroot isolation, which is what works on machines without a container engine. The tools
come from ``scripts/tools/image-tools.sh``; in CI (``CI=true``) a missing tool fails.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import IN_CI, require_tool

REPO = Path(__file__).resolve().parents[2]
STORAGE = ["--storage-driver", "vfs"]
BASE_IMAGE = os.environ.get("PYBASE_IMAGE", "localhost/pybase:bookworm")
TOOLS_HINT = "sudo bash scripts/tools/image-tools.sh (Debian: apt-get install buildah podman)"


def buildah(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["buildah", *STORAGE, *args], capture_output=True, text=True, check=check, timeout=timeout
    )


def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["podman", *STORAGE, *args], capture_output=True, text=True, check=check, timeout=timeout
    )


def require_image_tools() -> None:
    """buildah, podman and debootstrap present, and root (rootful vfs storage, debootstrap)."""
    require_tool("buildah", TOOLS_HINT)
    require_tool("podman", TOOLS_HINT)
    require_tool("debootstrap", TOOLS_HINT)
    if os.geteuid() != 0:
        message = "the image tests need root (debootstrap, rootful buildah with chroot isolation)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


def build_image(tag: str, context: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    """``scripts/image.sh`` forced to buildah on the debootstrapped base; output combined."""
    env = {
        **os.environ,
        "IMAGE": tag,
        "BASE_IMAGE": BASE_IMAGE,
        "CONTEXT": str(context),
        "ENGINE": "buildah",
    }
    return subprocess.run(
        ["bash", str(REPO / "scripts" / "image.sh")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def base_image() -> str:
    """The python:3.12-slim stand-in, debootstrapped once and cached in vfs storage."""
    require_image_tools()
    result = subprocess.run(
        ["bash", str(REPO / "scripts" / "pybase.sh")],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYBASE_IMAGE": BASE_IMAGE},
    )
    assert result.returncode == 0, f"pybase.sh failed:\n{result.stderr}"
    assert podman("image", "exists", BASE_IMAGE, check=False).returncode == 0
    return BASE_IMAGE
