"""Start the real service (gunicorn master + UvicornWorkers) on free loopback ports.

Shared by the integration, load, Prometheus and resilience suites. Nothing is mocked: the
process is exactly what ``make run`` starts, with settings passed as environment variables.

The platform's tests serve the team's app (:data:`TEAM_APP`, ``tests/teamapp``) by default,
so replacing the sample API in ``app/api/`` breaks only the sample API's own tests; those
(load test, Prometheus end to end, OpenAPI fuzzing) pass ``app=SAMPLE_APP``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = REPO / ".venv" / "bin"
TEAM_APP = "tests.teamapp.main:app"  # the default: what the platform's tests run against
SAMPLE_APP = "app.main:app"  # the sample API (gunicorn.conf.py's ``wsgi_app``)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05) -> Any:
    """Poll ``condition`` until it returns a truthy value; fail with a clear message."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
        except Exception as exc:  # retry until the deadline
            last_exc = exc
            value = None
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"condition not met within {timeout}s (last error: {last_exc!r})")


def terminate(
    proc: subprocess.Popen[Any] | None, sig: int = signal.SIGTERM, timeout: float = 10.0
) -> int | None:
    """Signal a child process, wait for it, and kill it if it does not exit in time."""
    if proc is None:
        return None
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def clean_env() -> dict[str, str]:
    """The test runner's environment minus any APP_*/OTEL_*/WEB_CONCURRENCY leaking in."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("APP_", "OTEL_", "PROMETHEUS_MULTIPROC")) and k != "WEB_CONCURRENCY"
    }


class LoopbackUrls:
    """``base_url`` and ``metrics_url`` of a service listening on 127.0.0.1."""

    port: int
    metrics_port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"


class GunicornServer(LoopbackUrls):
    """One running service. Use :func:`running_server` for a context-managed instance."""

    def __init__(
        self, env: dict[str, str] | None = None, workers: int = 2, app: str = TEAM_APP
    ) -> None:
        """``app`` is the ASGI app gunicorn serves, given on its command line (which overrides
        gunicorn.conf.py's ``wsgi_app``): the team's app unless a test names another, e.g.
        ``SAMPLE_APP`` for the sample API's own tests."""
        self.app = app
        self.port = free_port()
        self.metrics_port = free_port()
        self.workers = workers
        self._tmp = tempfile.TemporaryDirectory(prefix="svc-")
        self.metrics_dir = Path(self._tmp.name) / "metrics"
        self.log_path = Path(self._tmp.name) / "stdout.log"
        self.env = {
            **clean_env(),
            "APP_HOST": "127.0.0.1",
            "APP_PORT": str(self.port),
            "APP_METRICS_PORT": str(self.metrics_port),
            "APP_WORKERS": str(workers),
            "APP_SHUTDOWN_DELAY_SECONDS": "0",
            "APP_GRACEFUL_TIMEOUT_SECONDS": "5",
            "PROMETHEUS_MULTIPROC_DIR": str(self.metrics_dir),
            **(env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, wait_ready: bool = True, timeout: float = 30.0) -> GunicornServer:
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [
                    str(VENV_BIN / "gunicorn"),
                    "-c",
                    "gunicorn.conf.py",
                    self.app,
                ],
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if wait_ready:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until every worker finished its lifespan start-up and /readyz is 200."""

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}:\n{self.output()}")
            started = [e for e in self.json_logs() if e.get("event") == "application started"]
            if len(started) < self.workers:
                return False
            return httpx.get(f"{self.base_url}/readyz", timeout=2).status_code == 200

        try:
            wait_for(ready, timeout)
        except TimeoutError:
            raise TimeoutError(f"server not ready; output:\n{self.output()}") from None

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def lines(self) -> list[str]:
        return [line for line in self.output().splitlines() if line.strip()]

    def json_logs(self) -> list[dict[str, Any]]:
        out = []
        for line in self.lines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def access_logs(self) -> list[dict[str, Any]]:
        return [e for e in self.json_logs() if e.get("event") == "request"]

    def worker_pids(self) -> list[int]:
        assert self.proc is not None
        path = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        return [int(p) for p in path.read_text().split()]

    def scrape(self) -> str:
        response = httpx.get(self.metrics_url, timeout=10)
        response.raise_for_status()
        return response.text

    def send_signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Signal the master only (as Kubernetes does) and return its exit code."""
        code = terminate(self.proc, sig, timeout)
        return 0 if code is None else code

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._tmp.cleanup()


@contextmanager
def running_server(
    env: dict[str, str] | None = None, workers: int = 2, app: str = TEAM_APP
) -> Iterator[GunicornServer]:
    server = GunicornServer(env, workers, app)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        server.close()


def metric_value(exposition: str, name: str, labels: dict[str, str] | None = None) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels``."""
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == name and all(
                sample.labels.get(k) == v for k, v in (labels or {}).items()
            ):
                total += sample.value
    return total
