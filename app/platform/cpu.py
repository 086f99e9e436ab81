"""Worker count: ``APP_WORKERS``, else ``WEB_CONCURRENCY``, else the cgroup CPU quota.

Formula (documented in the README and logged at boot)::

    workers = max(1, ceil(quota / period))   capped at the CPUs this process may run on
    workers = number of CPUs in the affinity mask   when the cgroup sets no quota

UvicornWorker is asynchronous, so one worker per core is the right density; the classic
``2 * cores + 1`` is for blocking sync workers. The host's core count alone is never used:
a pod limited to 2 CPUs on a 64-core node gets 2 workers, not 64.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class WorkerCount:
    """How many workers to run and the reason, for the boot log line."""

    workers: int
    source: str
    detail: str


def cgroup_cpu_limit(root: Path = CGROUP_ROOT) -> float | None:
    """CPU quota in cores from cgroup v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us``.

    None when the cgroup sets no quota.
    """
    v2 = root / "cpu.max"
    try:
        quota, period = v2.read_text().split()[:2]
    except (OSError, ValueError):
        pass
    else:
        if quota == "max":
            return None
        return int(quota) / int(period)
    for v1 in (root / "cpu", root / "cpu,cpuacct", root / "cpuacct,cpu"):
        try:
            quota_us = int((v1 / "cpu.cfs_quota_us").read_text())
            period_us = int((v1 / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        if quota_us <= 0 or period_us <= 0:
            return None
        return quota_us / period_us
    return None


def available_cpus() -> int:
    """CPUs in this process's affinity mask (honours cpusets, unlike ``os.cpu_count``)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _positive_int(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{name}: must be an integer >= 1 (got {raw!r})")
    return value


def resolve_workers(
    app_workers: int | None,
    environ: dict[str, str] | os._Environ[str] = os.environ,
    cgroup_root: Path = CGROUP_ROOT,
    cpus: int | None = None,
) -> WorkerCount:
    """Apply the precedence APP_WORKERS > WEB_CONCURRENCY > cgroup quota > affinity mask."""
    if app_workers is not None:
        return WorkerCount(app_workers, "APP_WORKERS", f"APP_WORKERS={app_workers}")
    raw = environ.get("WEB_CONCURRENCY")
    if raw is not None and raw.strip():
        value = _positive_int("WEB_CONCURRENCY", raw.strip())
        return WorkerCount(value, "WEB_CONCURRENCY", f"WEB_CONCURRENCY={value}")
    cpus = available_cpus() if cpus is None else cpus
    limit = cgroup_cpu_limit(cgroup_root)
    if limit is None:
        return WorkerCount(max(1, cpus), "cpu-affinity", f"no cgroup CPU quota; {cpus} CPUs usable")
    workers = max(1, min(math.ceil(limit - 1e-9), cpus))
    return WorkerCount(
        workers, "cgroup-quota", f"max(1, min(ceil({limit:g} CPUs quota), {cpus} CPUs usable))"
    )
