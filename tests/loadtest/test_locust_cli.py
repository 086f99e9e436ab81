"""The locustfile run for real against the two-worker service: verdicts, exit codes, reports."""

from __future__ import annotations

from tests.loadtest.locust_run import API_ROUTES, read_stats_csv, run_locust


def test_impossible_target_exits_non_zero_with_a_miss_verdict(server) -> None:
    run = run_locust(
        server.base_url, "--profile", "smoke", "-u", "5", "-t", "3s", "--min-rps", "1000000"
    )
    assert run.returncode == 1, run.output
    verdicts = run.verdicts()
    assert verdicts["min_rps"] == "MISS", run.output
    assert verdicts["max_p95_ms"] == verdicts["max_p99_ms"] == "PASS", run.output
    assert verdicts["max_fail_ratio"] == "PASS", run.output
    assert verdicts["overall"] == "MISS", run.output
    (line,) = run.lines("verdict min_rps")
    assert "target >= 1000000 req/s" in line


def test_latency_target_override_misses(server) -> None:
    run = run_locust(
        server.base_url, "--profile", "smoke", "-u", "3", "-t", "2s", "--min-rps", "1",
        "--max-p99-ms", "0.001",
    )  # fmt: skip
    assert run.returncode == 1, run.output
    assert run.verdicts()["max_p99_ms"] == "MISS", run.output
    assert run.verdicts()["min_rps"] == "PASS", run.output


def test_passing_run_exits_zero_and_writes_csv_and_html(server, tmp_path) -> None:
    prefix = tmp_path / "reports" / "smoke"
    html = tmp_path / "reports" / "smoke.html"
    run = run_locust(
        server.base_url, "--profile", "smoke", "-u", "5", "-t", "3s", "--min-rps", "1",
        "--max-p95-ms", "5000", "--max-p99-ms", "10000",  # loose: the machine may be busy
        "--csv", str(prefix), "--html", str(html),
    )  # fmt: skip
    assert run.returncode == 0, run.output
    assert set(run.verdicts().values()) == {"PASS"}, run.output
    assert len(run.lines("verdict ")) == 5  # four targets and the overall line
    stats = read_stats_csv(prefix)
    assert {key for key in stats if key[1] != "Aggregated"} == API_ROUTES
    assert int(stats[("", "Aggregated")]["Failure Count"]) == 0
    assert "<html" in html.read_text().lower()


def test_unknown_profile_is_a_clear_error(server) -> None:
    run = run_locust(server.base_url, "--profile", "no-such-profile", timeout=30)
    assert run.returncode == 2
    assert "unknown profile 'no-such-profile'" in run.output


def test_step_load_reports_capacity_and_stops_at_the_knee(server) -> None:
    # Two short steps that hold: capacity is the best of them, exit 0.
    run = run_locust(
        server.base_url, "--profile", "smoke", "--step-load", "--step-users", "5",
        "--step-time", "3s", "--step-max-users", "15",
    )  # fmt: skip
    assert run.returncode == 0, run.output
    steps = run.lines("step users=")
    assert len(steps) == 2 and all(s.endswith("held") for s in steps), run.output
    (summary,) = run.lines("capacity: ")
    assert "highest sustained" in summary and "no knee" in summary, run.output

    # An impossible p99: the first step is already past the knee; nothing sustained, exit 1.
    run = run_locust(
        server.base_url, "--profile", "smoke", "--step-load", "--step-time", "3s",
        "--max-p99-ms", "0.001",
    )  # fmt: skip
    assert run.returncode == 1, run.output
    (step,) = run.lines("step users=")
    assert "KNEE: p99" in step, run.output
    (summary,) = run.lines("capacity: ")
    assert "no step met the targets" in summary, run.output
