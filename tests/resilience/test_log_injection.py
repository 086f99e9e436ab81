"""Issue 8.6: caller-supplied text never forges or splits a log line.

CR/LF (raw where HTTP allows it, percent-encoded where it does not), quotes, ``"}`` followed
by JSON, escape sequences and Unicode line separators go into headers, the path, the query
string and the body. Afterwards every line the server wrote to stdout (split on ``\\n``, the
byte that log shippers split on) must be one JSON object; there is exactly one access line
per request that reached the app, each with the id the response carried; and no line has a
key the attacker chose.
"""

from __future__ import annotations

import json
import re
import socket

import httpx

from tests.resilience.helpers import figure
from tests.support.server import running_server

MARK = "pwned"
FORGED = '"},{"pwned":"1","level":"critical","event":"forged'
REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
KNOWN_LEVELS = {"debug", "info", "warning", "error", "critical"}

HOSTILE_HEADERS = {
    "X-Request-ID": f"abc{FORGED}",
    "User-Agent": f"Mozilla {FORGED}",
    "X-Forwarded-For": f'1.2.3.4", "{MARK}": "1',
    "Referer": f"\\r\\n{{{MARK}: 1}}",
    "traceparent": f"00-{FORGED}-01",
    "X-Unicode": "\u2028\u0085{pwned}".encode().decode("latin-1"),
}

# Percent-encoded bytes that the server decodes into scope["path"] (which is logged).
HOSTILE_PATHS = [
    "/team/v1/hello%0d%0a%7B%22pwned%22%3A1%7D",
    "/team/v1/hello%22%7D%2C%7B%22pwned%22%3A%221",
    "/%0a%0d%1b%5b31m%00pwned",
    "/%E2%80%A8%E2%80%A9%C2%85pwned",
    "/team/v1/%5Cr%5Cnpwned",
]
HOSTILE_QUERIES = [
    {"name": f"\r\n{FORGED}"},
    {"name": "\u2028\u2029\x85pwned"},
    {"name": "x" * 65, MARK: "1"},  # a 422 echoes the input into the response, not the log
]
HOSTILE_BODIES = [
    json.dumps({"message": f"line1\r\nline2 {FORGED}\u2028\x1b[31m"}),
    '{"message": "unterminated \r\n {\\"pwned\\": 1}',
    f'{{"message": {json.dumps(FORGED)}, "{MARK}": true}}',
    "\r\n\r\n{" + FORGED,
]

RAW_REQUESTS = [
    # Header values may carry obs-text (bytes >= 0x80) and tabs.
    b"GET /team/v1/hello HTTP/1.1\r\nHost: x\r\nX-Request-ID: a\tb\r\n"
    b"User-Agent: \xe2\x80\xa8\xc2\x85" + FORGED.encode() + b"\r\nConnection: close\r\n\r\n",
    # Bare LF line ends (lenient parsers accept them): must not smuggle a header into a line.
    b"GET /team/v1/hello?name=%0A%7B HTTP/1.1\nHost: x\nX-Request-ID: ok-id\n"
    b"User-Agent: " + FORGED.encode() + b"\nConnection: close\n\n",
]


def _raw(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(payload)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        return data


def _raw_request_id(response: bytes) -> str | None:
    head = response.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.lower() == "x-request-id":
            return value.strip()
    return None


def test_hostile_input_never_forges_a_log_line() -> None:
    with running_server(workers=2) as srv:
        ids: list[str] = []  # the X-Request-ID of every response the app produced
        headers = {k: v.encode("latin-1") for k, v in HOSTILE_HEADERS.items()}
        with httpx.Client(base_url=srv.base_url, timeout=10) as client:
            responses = [client.get("/team/v1/hello", headers=headers)]
            for path in HOSTILE_PATHS:
                responses.append(client.get(httpx.URL(srv.base_url + path), headers=headers))
            for query in HOSTILE_QUERIES:
                responses.append(client.get("/team/v1/hello", params=query, headers=headers))
            for body in HOSTILE_BODIES:
                responses.append(
                    client.post(
                        "/team/v1/echo",
                        content=body.encode(),
                        headers={**headers, "content-type": "application/json"},
                    )
                )
        for response in responses:
            assert response.status_code < 500, response.text
            ids.append(response.headers["x-request-id"])
        for payload in RAW_REQUESTS:
            answer = _raw(srv.port, payload)
            rid = _raw_request_id(answer)
            if rid is not None:  # reached the app (else the HTTP parser refused it: 400)
                ids.append(rid)
            else:
                assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
        srv.stop()
        raw_log = srv.log_path.read_bytes()

    lines = [line for line in raw_log.split(b"\n") if line.strip()]
    entries = []
    for line in lines:
        entry = json.loads(line)  # every line is one JSON object: nothing was split
        assert isinstance(entry, dict), line
        entries.append(entry)
    for entry in entries:
        assert not any(MARK in key for key in entry), f"injected key: {entry}"
        assert {"timestamp", "level", "event", "logger"} <= entry.keys(), entry
        assert entry["level"] in KNOWN_LEVELS, entry
        assert MARK not in str(entry["event"]) or entry.get("logger") != "app.access", entry
    access = [e for e in entries if e.get("event") == "request"]
    assert all(e.get("logger") == "app.access" for e in access)
    # Exactly one access line per request that reached the app, with the response's id.
    assert sorted(e["request_id"] for e in access) == sorted(ids)
    # A forged X-Request-ID never reaches a log line: it fails the pattern and is replaced.
    for entry in entries:
        if "request_id" in entry:
            assert REQUEST_ID.fullmatch(entry["request_id"]), entry
    # Caller text sits inside JSON values, decoded intact (proof it was escaped, not cut).
    logged_paths = {e["path"] for e in access}
    assert '/team/v1/hello\r\n{"pwned":1}' in logged_paths
    figure(
        "log-injection",
        requests=len(ids),
        access_lines=len(access),
        stdout_lines=len(lines),
        all_json=True,
    )
