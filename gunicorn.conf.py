"""Gunicorn configuration: declarative settings from ``APP_*``; hooks live in app.platform.

Start with ``gunicorn -c gunicorn.conf.py``. A bad setting stops here, before any port is
bound, with one line on stderr naming it.
"""

import math
import os
import tempfile

from app.platform.settings import config_error_exit, load_settings_or_exit

settings = load_settings_or_exit()
# The multiprocess metrics directory must be in the environment before anything imports
# prometheus_client (it picks its value class at import); without one configured, the
# master makes a private one that its workers inherit.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="app-metrics-")
# It must exist before the app is imported: with ``--preload`` (``preload_app``) the master
# imports it before ``on_starting``, and a team's label-less prometheus-client metric opens
# its file at import. (Emptying it of an earlier run's files waits for ``on_starting``: this
# file is read again on every SIGHUP reload, while workers are writing.)
try:
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)
    if not os.access(os.environ["PROMETHEUS_MULTIPROC_DIR"], os.W_OK | os.X_OK):
        raise PermissionError(13, "not writable")
except OSError as exc:
    config_error_exit(
        f"PROMETHEUS_MULTIPROC_DIR={os.environ['PROMETHEUS_MULTIPROC_DIR']!r}: "
        f"cannot use it as the metrics directory ({exc.strerror or exc})"
    )

from app.platform import server_hooks  # noqa: E402  (needs the variable above)
from app.platform.cpu import resolve_workers  # noqa: E402
from app.platform.logging import configure_logging, logging_dict_config  # noqa: E402
from app.platform.tracing import tracing_config_error  # noqa: E402

if (otel_error := tracing_config_error()) is not None:
    config_error_exit(otel_error)
try:
    worker_count = resolve_workers(settings.workers)
except ValueError as exc:
    config_error_exit(str(exc))

configure_logging(settings.log_level, settings.log_format)

wsgi_app = "app.main:app"
worker_class = "app.platform.worker.UvicornWorker"  # uvicorn_worker.UvicornWorker + drain
bind = [f"{settings.host}:{settings.port}"]
workers = worker_count.workers
keepalive = settings.keepalive_seconds
timeout = settings.worker_timeout_seconds
# The master waits for the whole drain: delay + in-flight grace + a margin to exit.
graceful_timeout = math.ceil(
    settings.shutdown_delay_seconds + settings.graceful_timeout_seconds + 5
)
max_requests = settings.max_requests
max_requests_jitter = settings.max_requests_jitter
forwarded_allow_ips = settings.forwarded_allow_ips
control_socket_disable = True  # no socket file: the root filesystem may be read-only
accesslog = None  # the app writes one structured access line per request
logconfig_dict = logging_dict_config(settings.log_level, settings.log_format)
proc_name = "fastapi-app"

on_starting = server_hooks.on_starting
when_ready = server_hooks.when_ready
post_fork = server_hooks.post_fork
post_worker_init = server_hooks.post_worker_init
child_exit = server_hooks.child_exit
worker_exit = server_hooks.worker_exit

server_hooks.boot_summary(worker_count)
