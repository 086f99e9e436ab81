"""Profiles, targets, verdicts and step-load analysis for the Locust suite.

Pure Python (no Locust import) so the rules that decide pass/miss are unit-tested on their
own. ``locustfile.py`` feeds it Locust's numbers; the tests in ``tests/loadtest`` drive both.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

PROFILE_DIR = Path(__file__).resolve().parent / "profiles"
DEFAULT_PROFILE = "smoke"
TARGET_KEYS = ("min_rps", "max_p95_ms", "max_p99_ms", "max_fail_ratio")


class ProfileError(ValueError):
    """A profile that cannot be found or does not have the expected shape."""


def parse_duration(value: str | int | float) -> int:
    """``90``, ``"90s"``, ``"1m30s"``, ``"2h"`` -> whole seconds (>= 1)."""
    if isinstance(value, int | float):
        seconds = int(value)
    else:
        text = value.strip().lower()
        if text.isdigit():
            seconds = int(text)
        else:
            match = re.fullmatch(r"(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+)s)?", text)
            if not match or not any(match.groups()):
                raise ProfileError(f"invalid duration {value!r} (use e.g. 15s, 1m30s, 2h)")
            h, m, s = (int(g or 0) for g in match.groups())
            seconds = h * 3600 + m * 60 + s
    if seconds < 1:
        raise ProfileError(f"duration {value!r} must be at least 1s")
    return seconds


@dataclass(frozen=True)
class Targets:
    """What a run must achieve. ``None`` means "no target" (never a miss)."""

    min_rps: float | None = None
    max_p95_ms: float | None = None
    max_p99_ms: float | None = None
    max_fail_ratio: float | None = None

    def override(self, **values: float | None) -> Targets:
        """Command-line overrides: a value that is not ``None`` replaces the profile's."""
        unknown = set(values) - set(TARGET_KEYS)
        if unknown:
            raise ProfileError(f"unknown target(s): {', '.join(sorted(unknown))}")
        return replace(self, **{k: v for k, v in values.items() if v is not None})


@dataclass(frozen=True)
class StepPlan:
    """The step-load (capacity) mode: add ``step_users`` every ``step_seconds``."""

    start_users: int = 10
    step_users: int = 10
    step_seconds: int = 10
    max_users: int = 200
    settle_seconds: int = 2
    wait_seconds: tuple[float, float] = (0.0, 0.0)


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    users: int
    spawn_rate: float
    run_time: int
    stop_timeout: int
    wait_seconds: tuple[float, float]
    wait_ms: tuple[int, int]
    targets: Targets
    capacity: StepPlan = field(default_factory=StepPlan)


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.toml"))


def _pair(raw: Any, what: str, kind: type) -> tuple[Any, Any]:
    if not isinstance(raw, list) or len(raw) != 2:
        raise ProfileError(f"{what} must be a [low, high] pair, got {raw!r}")
    low, high = (kind(v) for v in raw)
    if low < 0 or high < low:
        raise ProfileError(f"{what} must satisfy 0 <= low <= high, got {raw!r}")
    return low, high


def _positive(section: Mapping[str, Any], key: str, default: Any = None) -> Any:
    value = section.get(key, default)
    if value is None:
        raise ProfileError(f"missing {key}")
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ProfileError(f"{key} must be a positive number, got {value!r}")
    return value


def profile_from_mapping(name: str, data: Mapping[str, Any]) -> Profile:
    """Validate a parsed profile document (see ``profiles/*.toml`` for the format)."""
    unknown = set(data) - {"description", "load", "targets", "capacity"}
    if unknown:
        raise ProfileError(f"profile {name}: unknown section(s) {sorted(unknown)}")
    load = data.get("load", {})
    raw_targets = data.get("targets", {})
    extra = set(raw_targets) - set(TARGET_KEYS)
    if extra:
        raise ProfileError(f"profile {name}: unknown target(s) {sorted(extra)}")
    missing = [k for k in TARGET_KEYS if k not in raw_targets]
    if missing:
        raise ProfileError(f"profile {name}: missing target(s) {missing}")
    try:
        targets = Targets(**{k: float(_positive(raw_targets, k)) for k in TARGET_KEYS})
        wait_seconds = _pair(load.get("wait_seconds", [0.1, 0.3]), "load.wait_seconds", float)
        cap = data.get("capacity", {})
        capacity = StepPlan(
            start_users=int(_positive(cap, "start_users", 10)),
            step_users=int(_positive(cap, "step_users", 10)),
            step_seconds=parse_duration(cap.get("step_time", 10)),
            max_users=int(_positive(cap, "max_users", 200)),
            settle_seconds=int(cap.get("settle_seconds", 2)),
            wait_seconds=_pair(cap.get("wait_seconds", [0, 0]), "capacity.wait_seconds", float),
        )
        if not 0 <= capacity.settle_seconds < capacity.step_seconds:
            raise ProfileError("capacity.settle_seconds must be >= 0 and < step_time")
        return Profile(
            name=name,
            description=str(data.get("description", "")),
            users=int(_positive(load, "users")),
            spawn_rate=float(_positive(load, "spawn_rate")),
            run_time=parse_duration(load.get("run_time", "")),
            stop_timeout=parse_duration(load.get("stop_timeout", "10s")),
            wait_seconds=wait_seconds,
            wait_ms=_pair(load.get("wait_ms", [100, 200]), "load.wait_ms", int),
            targets=targets,
            capacity=capacity,
        )
    except ProfileError as exc:
        raise ProfileError(f"profile {name}: {exc}") from None


def load_profile(name_or_path: str | None) -> Profile:
    """A profile by name (``loadtests/profiles/NAME.toml``) or by path to a TOML file."""
    ref = name_or_path or DEFAULT_PROFILE
    path = Path(ref)
    if path.suffix != ".toml":
        path = PROFILE_DIR / f"{ref}.toml"
    if not path.is_file():
        raise ProfileError(
            f"unknown profile {ref!r}: no {path} (available: {', '.join(available_profiles())})"
        )
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"profile {path}: {exc}") from None
    return profile_from_mapping(path.stem, data)


# ---------------------------------------------------------------------------- verdicts


@dataclass(frozen=True)
class Measured:
    """A run's aggregate figures, as Locust reports them."""

    requests: int
    failures: int
    rps: float
    p95_ms: float
    p99_ms: float

    @property
    def fail_ratio(self) -> float:
        return self.failures / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class Verdict:
    target: str
    measured: float
    limit: float
    passed: bool

    def line(self) -> str:
        op = ">=" if self.target.startswith("min_") else "<="
        unit = {"min_rps": "req/s", "max_p95_ms": "ms", "max_p99_ms": "ms"}.get(self.target, "")
        word = "PASS" if self.passed else "MISS"
        return (
            f"verdict {self.target:<15} measured {_fmt(self.measured)} {unit:<5} "
            f"target {op} {_fmt(self.limit)} {unit:<5} {word}"
        ).rstrip()


def _fmt(value: float) -> str:
    if math.isnan(value):
        return "nan"
    if value and abs(value) < 0.01:
        return f"{value:.4f}"
    return f"{value:.2f}" if value != int(value) else f"{int(value)}"


def evaluate(measured: Measured, targets: Targets) -> list[Verdict]:
    """One verdict per target that is set. No request at all misses every target."""
    observed = {
        "min_rps": measured.rps,
        "max_p95_ms": measured.p95_ms,
        "max_p99_ms": measured.p99_ms,
        "max_fail_ratio": measured.fail_ratio,
    }
    verdicts = []
    for key in TARGET_KEYS:
        limit = getattr(targets, key)
        if limit is None:
            continue
        value = observed[key]
        if measured.requests == 0:
            ok = False
        elif key.startswith("min_"):
            ok = value >= limit
        else:
            ok = value <= limit
        verdicts.append(Verdict(key, value, limit, ok))
    return verdicts


# ------------------------------------------------------------------------- step load


def percentile(response_times: Mapping[int, int], percent: float) -> int:
    """Locust's percentile rule over a ``{rounded_ms: count}`` histogram."""
    total = sum(response_times.values())
    if total == 0:
        return 0
    keep = int(total * percent)
    seen = 0
    for value in sorted(response_times, reverse=True):
        seen += response_times[value]
        if total - seen <= keep:
            return value
    return 0


def diff_histogram(new: Mapping[int, int], old: Mapping[int, int]) -> dict[int, int]:
    return {k: v - old.get(k, 0) for k, v in new.items() if v - old.get(k, 0) > 0}


@dataclass(frozen=True)
class StepResult:
    users: int
    seconds: float
    requests: int
    failures: int
    p99_ms: float
    cpu_percent: float = 0.0

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    @property
    def fail_ratio(self) -> float:
        return self.failures / self.requests if self.requests else 0.0

    def misses(self, targets: Targets) -> list[str]:
        """Why this step is past the knee (empty when it held)."""
        out = []
        if self.requests == 0:
            out.append("no request completed")
        if targets.max_p99_ms is not None and self.p99_ms > targets.max_p99_ms:
            out.append(f"p99 {_fmt(self.p99_ms)} ms > {_fmt(targets.max_p99_ms)} ms")
        if targets.max_fail_ratio is not None and self.fail_ratio > targets.max_fail_ratio:
            out.append(f"failure ratio {self.fail_ratio:.4f} > {targets.max_fail_ratio:g}")
        return out

    def line(self, targets: Targets) -> str:
        misses = self.misses(targets)
        state = "held" if not misses else "KNEE: " + "; ".join(misses)
        return (
            f"step users={self.users:<5} rps={self.rps:8.1f} p99={_fmt(self.p99_ms):>6} ms "
            f"fail={self.fail_ratio:.4f} locust_cpu={self.cpu_percent:3.0f}% {state}"
        )


@dataclass(frozen=True)
class Capacity:
    steps: list[StepResult]
    best: StepResult | None
    knee: StepResult | None

    def summary(self, targets: Targets) -> str:
        if self.best is None:
            reason = "; ".join(self.knee.misses(targets)) if self.knee else "no step completed"
            return f"capacity: no step met the targets ({reason})"
        text = (
            f"capacity: highest sustained {self.best.rps:.1f} req/s at {self.best.users} users "
            f"(p99 {_fmt(self.best.p99_ms)} ms, failure ratio {self.best.fail_ratio:.4f})"
        )
        if self.knee is None:
            return text + "; no knee reached before the last step"
        return text + f"; knee at {self.knee.users} users: " + "; ".join(self.knee.misses(targets))


def find_capacity(steps: list[StepResult], targets: Targets) -> Capacity:
    """Highest requests/s over the steps before the first one that misses a target."""
    held: list[StepResult] = []
    knee = None
    for step in steps:
        if step.misses(targets):
            knee = step
            break
        held.append(step)
    best = max(held, key=lambda s: s.rps) if held else None
    return Capacity(steps=list(steps), best=best, knee=knee)
