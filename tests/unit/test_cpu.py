"""Worker-count arithmetic against fake cgroup v1 and v2 trees."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.platform.cpu import cgroup_cpu_limit, resolve_workers


def v2(tmp_path: Path, content: str) -> Path:
    (tmp_path / "cpu.max").write_text(content)
    return tmp_path


def v1(tmp_path: Path, quota: int, period: int, folder: str = "cpu") -> Path:
    d = tmp_path / folder
    d.mkdir(parents=True)
    (d / "cpu.cfs_quota_us").write_text(f"{quota}\n")
    (d / "cpu.cfs_period_us").write_text(f"{period}\n")
    return tmp_path


def test_v2_quota(tmp_path: Path) -> None:
    assert cgroup_cpu_limit(v2(tmp_path, "250000 100000\n")) == 2.5


def test_v2_unlimited(tmp_path: Path) -> None:
    assert cgroup_cpu_limit(v2(tmp_path, "max 100000\n")) is None


def test_v1_quota_and_unlimited(tmp_path: Path) -> None:
    assert cgroup_cpu_limit(v1(tmp_path / "a", 150000, 100000)) == 1.5
    assert cgroup_cpu_limit(v1(tmp_path / "b", -1, 100000, "cpu,cpuacct")) is None


def test_no_cgroup_files(tmp_path: Path) -> None:
    assert cgroup_cpu_limit(tmp_path) is None


@pytest.mark.parametrize(
    ("cpu_max", "cpus", "expected"),
    [
        ("50000 100000", 8, 1),  # half a CPU still needs one worker
        ("100000 100000", 8, 1),
        ("150000 100000", 8, 2),  # 1.5 CPUs: round up
        ("400000 100000", 8, 4),
        ("400000 100000", 2, 2),  # never more than the CPUs we may run on
        ("max 100000", 6, 6),  # no quota: the affinity mask, not the host count
    ],
)
def test_cgroup_formula(tmp_path: Path, cpu_max: str, cpus: int, expected: int) -> None:
    result = resolve_workers(None, {}, v2(tmp_path, cpu_max), cpus=cpus)
    assert result.workers == expected
    assert result.source in {"cgroup-quota", "cpu-affinity"}


def test_precedence(tmp_path: Path) -> None:
    root = v2(tmp_path, "400000 100000")
    assert resolve_workers(3, {"WEB_CONCURRENCY": "5"}, root, cpus=8).workers == 3
    chosen = resolve_workers(None, {"WEB_CONCURRENCY": "5"}, root, cpus=8)
    assert (chosen.workers, chosen.source) == (5, "WEB_CONCURRENCY")
    assert resolve_workers(None, {"WEB_CONCURRENCY": " "}, root, cpus=8).workers == 4


@pytest.mark.parametrize("bad", ["0", "-2", "two"])
def test_bad_web_concurrency(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError, match="WEB_CONCURRENCY"):
        resolve_workers(None, {"WEB_CONCURRENCY": bad}, tmp_path, cpus=2)
