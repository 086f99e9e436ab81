"""A SIGTERM that reaches a worker while it boots stops it, instead of being lost.

Until a worker installs its own signal handlers it runs the master's, which only queue the
signal for a master loop the worker does not run. A stop that came then (a rollout while a
worker restarts after ``APP_MAX_REQUESTS``) was lost, and the master waited its whole
graceful timeout for that worker. Here the kit's ``post_fork`` is followed by a 5 s pause
(a test config around ``gunicorn.conf.py``), the master is sent SIGTERM during it, and the
server must be gone long before the 65 s graceful timeout it is configured with.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from tests.conftest import figure
from tests.support.server import REPO, VENV_BIN, clean_env, free_port, wait_for

CONFIG = """
import os, time
exec(compile(open("gunicorn.conf.py").read(), "gunicorn.conf.py", "exec"))
_kit_post_fork = post_fork

def post_fork(server, worker):
    _kit_post_fork(server, worker)
    open(os.path.join({marker_dir!r}, str(os.getpid())), "w").close()
    time.sleep(5)  # a worker still booting
"""


def test_sigterm_while_a_worker_boots_stops_the_server_promptly(tmp_path: Path) -> None:
    markers = tmp_path / "booting"
    markers.mkdir()
    config = tmp_path / "slow_boot.conf.py"
    config.write_text(CONFIG.format(marker_dir=str(markers)))
    env = {
        **clean_env(),
        "APP_HOST": "127.0.0.1",
        "APP_PORT": str(free_port()),
        "APP_METRICS_PORT": str(free_port()),
        "APP_WORKERS": "1",
        "APP_SHUTDOWN_DELAY_SECONDS": "0",
        "APP_GRACEFUL_TIMEOUT_SECONDS": "60",  # gunicorn's graceful timeout: 65 s
    }
    proc = subprocess.Popen(
        [str(VENV_BIN / "gunicorn"), "-c", str(config)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # so a failure can kill the worker too
    )
    try:
        wait_for(lambda: any(markers.iterdir()), timeout=60)  # the worker is in post_fork
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                "the master was still waiting for a worker 20 s after SIGTERM: the worker "
                "lost the signal while booting"
            ) from None
        figure("stop while a worker boots", exited_after_s=round(time.monotonic() - sent, 1))
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # a worker left behind by a failure
        proc.wait(10)
