"""Locust suite for the sample API, with pass/miss targets (see ``loadtests/profiles``).

    locust -f loadtests/locustfile.py --headless --host URL --profile NAME
        [--min-rps N] [--max-p95-ms N] [--max-p99-ms N] [--max-fail-ratio R]
        [--csv PREFIX] [--html FILE] [--step-load]

The profile (``profiles/NAME.toml``, default ``smoke``; a path to a .toml also works) sets
users, spawn rate, run time and the targets; ``-u``, ``-r``, ``-t`` and the ``--min-rps``...
options override it. At the end one ``verdict`` line per target is printed and the exit code
is 1 when any target is missed.

``--step-load`` finds the knee instead: it adds users step by step (the profile's
``[capacity]`` section) until a step's p99 or failure ratio crosses its target, and prints the
highest requests/s sustained before that step.

Request names are the service's route templates, so Locust's per-name counts line up with
the ``route`` label of ``http_requests_total``. ``--profile`` is Locust's own option (it
otherwise only tags a run); this suite gives it the meaning above.
"""

from __future__ import annotations

import random
import string
import sys
import time
from dataclasses import replace
from typing import Any

import loadkit  # sibling module: Locust puts this file's directory on sys.path
from locust import FastHttpUser, LoadTestShape, between, events, task
from locust.runners import WorkerRunner


class ApiUser(FastHttpUser):
    """A client of the sample API: mostly cheap reads, some writes, some slow I/O-bound calls."""

    wait_time = between(0.1, 0.3)  # replaced by the profile's load.wait_seconds
    wait_ms: tuple[int, int] = (100, 200)  # replaced by the profile's load.wait_ms

    @task(5)
    def hello(self) -> None:
        name = "".join(random.choices(string.ascii_lowercase, k=random.randint(3, 12)))
        with self.client.get(
            f"/api/v1/hello?name={name}", name="/api/v1/hello", catch_response=True
        ) as resp:
            if resp.status_code != 200:
                resp.failure(f"status {resp.status_code}")
            elif resp.json().get("message") != f"Hello, {name}!":
                resp.failure("unexpected greeting")

    @task(3)
    def echo(self) -> None:
        message = "".join(random.choices(string.ascii_letters + " ", k=random.randint(10, 300)))
        with self.client.post(
            "/api/v1/echo", json={"message": message}, name="/api/v1/echo", catch_response=True
        ) as resp:
            if resp.status_code != 200:
                resp.failure(f"status {resp.status_code}")
            elif resp.json().get("length") != len(message):
                resp.failure("unexpected echo length")

    @task(2)
    def wait(self) -> None:
        ms = random.randint(*self.wait_ms)
        with self.client.get(
            f"/api/v1/wait?ms={ms}", name="/api/v1/wait", catch_response=True
        ) as resp:
            if resp.status_code != 200:
                resp.failure(f"status {resp.status_code}")
            elif resp.json().get("waited_ms") != ms:
                resp.failure("unexpected waited_ms")


# ----------------------------------------------------------------------- options


@events.init_command_line_parser.add_listener
def _add_options(parser: Any) -> None:
    group = parser.add_argument_group("targets (override the --profile's values)")
    group.add_argument("--min-rps", type=float, default=None, help="minimum requests/s")
    group.add_argument("--max-p95-ms", type=float, default=None, help="maximum p95 in ms")
    group.add_argument("--max-p99-ms", type=float, default=None, help="maximum p99 in ms")
    group.add_argument(
        "--max-fail-ratio", type=float, default=None, help="maximum failed/total (0-1)"
    )
    group.add_argument(
        "--step-load",
        action="store_true",
        default=False,
        help="capacity mode: add users step by step until p99 or the failure ratio misses",
    )
    group.add_argument("--step-users", type=int, default=None, help="users added per step")
    group.add_argument("--step-time", type=str, default=None, help="length of a step (10s)")
    group.add_argument("--step-max-users", type=int, default=None, help="stop after this step")


class _State:
    profile: loadkit.Profile | None = None
    targets: loadkit.Targets = loadkit.Targets()
    shape: StepLoad | None = None
    verdicts: list[loadkit.Verdict] = []  # noqa: RUF012
    capacity_line: str = ""


@events.init.add_listener
def _apply_profile(environment: Any, **_: Any) -> None:
    opts = environment.parsed_options
    if opts is None:  # library use without a command line
        return
    try:
        profile = loadkit.load_profile(opts.profile)
        targets = profile.targets.override(
            min_rps=opts.min_rps,
            max_p95_ms=opts.max_p95_ms,
            max_p99_ms=opts.max_p99_ms,
            max_fail_ratio=opts.max_fail_ratio,
        )
        plan = profile.capacity
        if opts.step_users is not None:
            plan = replace(plan, step_users=opts.step_users)
        if opts.step_time is not None:
            seconds = loadkit.parse_duration(opts.step_time)
            settle = plan.settle_seconds if plan.settle_seconds < seconds else seconds // 3
            plan = replace(plan, step_seconds=seconds, settle_seconds=settle)
        if opts.step_max_users is not None:
            plan = replace(plan, max_users=opts.step_max_users)
    except loadkit.ProfileError as exc:
        sys.stderr.write(f"loadtest: {exc}\n")
        sys.exit(2)
    _State.profile, _State.targets = profile, targets
    ApiUser.wait_ms = profile.wait_ms
    ApiUser.wait_time = between(*profile.wait_seconds)
    if isinstance(environment.runner, WorkerRunner):
        return  # the master decides users, timing and verdicts
    if opts.stop_timeout == 0:  # let in-flight requests finish so every request is counted
        environment.stop_timeout = float(profile.stop_timeout)
    if opts.step_load:
        ApiUser.wait_time = between(*plan.wait_seconds)
        shape = StepLoad(plan, targets)
        shape.runner = environment.runner
        environment.shape_class = _State.shape = shape
        print(
            f"loadtest: step-load from {plan.start_users} users, +{plan.step_users} every "
            f"{plan.step_seconds}s up to {plan.max_users}; knee when p99 > "
            f"{targets.max_p99_ms} ms or failure ratio > {targets.max_fail_ratio}",
            flush=True,
        )
        return
    if opts.num_users is None:
        opts.num_users = profile.users
    if opts.spawn_rate is None:
        opts.spawn_rate = profile.spawn_rate
    if opts.run_time is None:
        opts.run_time = profile.run_time
    print(
        f"loadtest: profile {profile.name}: {opts.num_users} users, spawn rate "
        f"{opts.spawn_rate}/s, run time {opts.run_time}s",
        flush=True,
    )


# --------------------------------------------------------------------- step load


class StepLoad(LoadTestShape):
    """Add users every step; measure each step after it settles; stop at the knee."""

    abstract = True  # never picked up automatically: enabled by --step-load only

    def __init__(self, plan: loadkit.StepPlan, targets: loadkit.Targets) -> None:
        super().__init__()
        self.plan = plan
        self.targets = targets
        self.steps: list[loadkit.StepResult] = []
        self._index = -1
        self._window: tuple[float, int, int, dict[int, int]] | None = None
        self._cpu = 0.0

    def _users(self, index: int) -> int:
        return self.plan.start_users + index * self.plan.step_users

    def _snapshot(self) -> tuple[float, int, int, dict[int, int]]:
        total = self.runner.stats.total
        histogram = dict(total.response_times)
        return (time.monotonic(), total.num_requests, total.num_failures, histogram)

    def _close_step(self) -> loadkit.StepResult | None:
        if self._window is None:
            return None
        t0, n0, f0, h0 = self._window
        t1, n1, f1, h1 = self._snapshot()
        step = loadkit.StepResult(
            users=self._users(self._index),
            seconds=t1 - t0,
            requests=n1 - n0,
            failures=f1 - f0,
            p99_ms=loadkit.percentile(loadkit.diff_histogram(h1, h0), 0.99),
            cpu_percent=self._cpu,
        )
        self.steps.append(step)
        print(step.line(self.targets), flush=True)
        self._window = None
        return step

    def tick(self) -> tuple[int, float] | None:
        elapsed = self.get_run_time()
        index = int(elapsed // self.plan.step_seconds)
        if index != self._index:
            step = self._close_step() if self._index >= 0 else None
            if step is not None and step.misses(self.targets):
                return None  # the knee: stop here
            if self._users(index) > self.plan.max_users:
                return None
            self._index, self._cpu = index, 0.0
        if self._window is None and elapsed - index * self.plan.step_seconds >= (
            self.plan.settle_seconds
        ):
            self._window = self._snapshot()
        self._cpu = max(self._cpu, getattr(self.runner, "current_cpu_usage", 0.0) or 0.0)
        users = self._users(index)
        return users, float(max(users, 1))  # each step ramps up within about a second


# ----------------------------------------------------------------------- verdicts


@events.quitting.add_listener
def _decide(environment: Any, **_: Any) -> None:
    if _State.profile is None or isinstance(environment.runner, WorkerRunner):
        return
    if _State.shape is not None:
        capacity = loadkit.find_capacity(_State.shape.steps, _State.targets)
        _State.verdicts = []
        environment.process_exit_code = 0 if capacity.best is not None else 1
        _State.capacity_line = capacity.summary(_State.targets)
        return
    total = environment.stats.total
    measured = loadkit.Measured(
        requests=total.num_requests,
        failures=total.num_failures,
        rps=total.total_rps,
        p95_ms=total.get_response_time_percentile(0.95) or 0,
        p99_ms=total.get_response_time_percentile(0.99) or 0,
    )
    _State.verdicts = loadkit.evaluate(measured, _State.targets)
    environment.process_exit_code = 0 if all(v.passed for v in _State.verdicts) else 1


@events.quit.add_listener
def _report(exit_code: int, **_: Any) -> None:
    """Printed after Locust's own summary tables, so the verdict is the last thing shown."""
    if _State.profile is None:
        return
    if _State.capacity_line:
        print(_State.capacity_line, flush=True)
        return
    if not _State.verdicts:
        return
    for verdict in _State.verdicts:
        print(verdict.line(), flush=True)
    word = "PASS" if exit_code == 0 else "MISS"
    print(f"verdict overall profile={_State.profile.name} {word} (exit {exit_code})", flush=True)
