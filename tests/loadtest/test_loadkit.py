"""The rules that turn Locust's figures into verdicts and a capacity figure (no server)."""

from __future__ import annotations

import pytest

from loadtests import loadkit
from loadtests.loadkit import Measured, StepResult, Targets


@pytest.mark.parametrize("name", ["smoke", "kind", "baseline"])
def test_versioned_profiles_load_with_every_target(name: str) -> None:
    profile = loadkit.load_profile(name)
    assert profile.name == name
    for key in loadkit.TARGET_KEYS:
        assert getattr(profile.targets, key) > 0
    assert profile.users >= 1 and profile.run_time >= 1 and profile.stop_timeout >= 1


def test_smoke_profile_is_seconds_long() -> None:
    assert loadkit.load_profile("smoke").run_time <= 20
    assert loadkit.load_profile(None).name == "smoke"


def test_unknown_profile_names_the_available_ones() -> None:
    with pytest.raises(loadkit.ProfileError, match="available: baseline, kind, smoke"):
        loadkit.load_profile("nope")


def test_profile_by_path_and_validation(tmp_path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(
        '[load]\nusers = 3\nspawn_rate = 1\nrun_time = "1m30s"\n'
        "[targets]\nmin_rps = 1\nmax_p95_ms = 10\nmax_p99_ms = 20\nmax_fail_ratio = 0.5\n"
    )
    profile = loadkit.load_profile(str(path))
    assert (profile.name, profile.users, profile.run_time) == ("mine", 3, 90)
    path.write_text(path.read_text().replace("max_fail_ratio = 0.5\n", "max_fail_rate = 1\n"))
    with pytest.raises(loadkit.ProfileError, match="unknown target"):
        loadkit.load_profile(str(path))


@pytest.mark.parametrize(("text", "seconds"), [("15s", 15), ("2m", 120), ("1h1m1s", 3661), (7, 7)])
def test_parse_duration(text, seconds) -> None:
    assert loadkit.parse_duration(text) == seconds


def test_command_line_overrides_replace_only_what_is_given() -> None:
    base = Targets(min_rps=10, max_p95_ms=100, max_p99_ms=200, max_fail_ratio=0.01)
    new = base.override(min_rps=1e6, max_p95_ms=None)
    assert new == Targets(min_rps=1e6, max_p95_ms=100, max_p99_ms=200, max_fail_ratio=0.01)


def test_evaluate_passes_and_misses_each_target() -> None:
    targets = Targets(min_rps=50, max_p95_ms=100, max_p99_ms=200, max_fail_ratio=0.01)
    good = Measured(requests=1000, failures=5, rps=80, p95_ms=90, p99_ms=200)
    assert [v.passed for v in loadkit.evaluate(good, targets)] == [True] * 4
    bad = Measured(requests=1000, failures=20, rps=49.9, p95_ms=101, p99_ms=201)
    verdicts = loadkit.evaluate(bad, targets)
    assert [v.passed for v in verdicts] == [False] * 4
    assert verdicts[0].line().split()[1:4] == ["min_rps", "measured", "49.90"]
    assert verdicts[0].line().endswith("MISS")


def test_no_request_at_all_misses_every_target() -> None:
    verdicts = loadkit.evaluate(Measured(0, 0, 0.0, 0, 0), Targets(1, 1, 1, 1))
    assert not any(v.passed for v in verdicts)


def test_percentile_follows_locust_rule() -> None:
    # locust.stats.calculate_response_time_percentile (not imported here: importing locust
    # monkey-patches the whole test process with gevent)
    hist = {1: 50, 2: 30, 10: 15, 200: 4, 900: 1}
    got = [loadkit.percentile(hist, p) for p in (0.5, 0.8, 0.95, 0.99, 1.0)]
    assert got == [2, 10, 200, 900, 900]  # the value at rank int(n * p) + 1 from the bottom
    assert loadkit.diff_histogram({1: 5, 2: 3}, {1: 5, 2: 1}) == {2: 2}


def test_capacity_is_the_best_step_before_the_knee() -> None:
    targets = Targets(max_p99_ms=500, max_fail_ratio=0.01)
    steps = [
        StepResult(users=10, seconds=10, requests=3000, failures=0, p99_ms=100),
        StepResult(users=20, seconds=10, requests=5000, failures=0, p99_ms=300),
        StepResult(users=30, seconds=10, requests=5500, failures=0, p99_ms=700),  # knee
        StepResult(users=40, seconds=10, requests=9000, failures=0, p99_ms=100),  # after
    ]
    capacity = loadkit.find_capacity(steps, targets)
    assert capacity.best is steps[1] and capacity.knee is steps[2]
    assert "highest sustained 500.0 req/s at 20 users" in capacity.summary(targets)
    assert "knee at 30 users: p99 700 ms > 500 ms" in capacity.summary(targets)
    failing = [StepResult(users=10, seconds=10, requests=100, failures=5, p99_ms=10)]
    capacity = loadkit.find_capacity(failing, targets)
    assert capacity.best is None and "no step met the targets" in capacity.summary(targets)
