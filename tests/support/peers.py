"""Real peers a team's service talks to, started by the tests on loopback.

``RedisServer`` runs Debian's ``redis-server`` (no persistence, loopback only);
``UpstreamServer`` is a plain HTTP server that records each request's headers, the far end
of the team's outgoing (traced) call.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import threading
from typing import Any

from tests.support.loopback import QuietHandler, serve_in_thread
from tests.support.server import free_port, terminate, wait_for


class RedisServer:
    def __init__(self) -> None:
        self.port = free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        assert binary, "redis-server missing (scripts/tools/team-deps.sh installs it)"
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self._dir.name,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self._answers, timeout=10)
        return self

    def _answers(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")

    def stop(self) -> None:
        terminate(self.proc)
        self.proc = None

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()


class UpstreamServer:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def start(self) -> UpstreamServer:
        upstream = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                with upstream._lock:
                    upstream.requests.append({"path": self.path, **dict(self.headers)})
                self.reply("application/json", b'{"ok": true}')

        self._server = serve_in_thread(Handler)
        self.port = self._server.server_address[1]
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
