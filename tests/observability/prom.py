"""A real Prometheus (Debian's ``prometheus``) on loopback, and PromQL helpers for the tests."""

from __future__ import annotations

import re
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.support.server import free_port, terminate, wait_for

REPO = Path(__file__).resolve().parents[2]
RULES_FILE = REPO / "helm/fastapi-app/files/prometheus-rules.yaml"
DASHBOARD_FILE = REPO / "helm/fastapi-app/files/grafana-dashboard.json"
RULE_TESTS_DIR = REPO / "observability/tests"
PROMETHEUS_HINT = "apt-get install prometheus (make tools does it)"

# Labels Prometheus or the Kubernetes service discovery attach to every scraped series.
TARGET_LABELS = {"job", "instance", "namespace", "pod", "service", "endpoint", "container"}
# Series the alerts read that come from somewhere else than the service's own exposition.
EXTERNAL_METRICS = {
    "up": "Prometheus' own per-target series",
    "kube_pod_container_status_restarts_total": "kube-state-metrics",
}


class Prometheus:
    """One Prometheus process with a private config and TSDB; always stopped by the caller."""

    def __init__(self, binary: str, scrape_target: str, rule_files: list[Path]) -> None:
        self.binary = binary
        self.port = free_port()
        self._tmp = tempfile.TemporaryDirectory(prefix="prom-")
        self.dir = Path(self._tmp.name)
        self.log_path = self.dir / "prometheus.log"
        config = {
            "global": {
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "evaluation_interval": "1s",
            },
            "rule_files": [str(p) for p in rule_files],
            "scrape_configs": [
                {"job_name": "fastapi-app", "static_configs": [{"targets": [scrape_target]}]}
            ],
        }
        self.config_path = self.dir / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [
                    self.binary,
                    f"--config.file={self.config_path}",
                    f"--storage.tsdb.path={self.dir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited {self.proc.returncode}: {self.log()}")
            return httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200

        wait_for(ready, timeout=30)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        terminate(self.proc)
        self._tmp.cleanup()

    def api(self, path: str, **params: Any) -> Any:
        response = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=10)
        body = response.json()
        if body.get("status") != "success":
            raise AssertionError(f"{path} {params}: {body}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query; the result vector as returned by the HTTP API."""
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", data
        return data["result"]

    def values_by(self, expr: str, *labels: str) -> dict[tuple[str, ...], float]:
        return {
            tuple(r["metric"].get(label, "") for label in labels): float(r["value"][1])
            for r in self.query(expr)
        }


@contextmanager
def running_prometheus(
    binary: str, scrape_target: str, rule_files: list[Path] | None = None
) -> Iterator[Prometheus]:
    prom = Prometheus(binary, scrape_target, rule_files or [])
    try:
        prom.start()
        yield prom
    finally:
        prom.stop()


# ------------------------------------------------------------------------ PromQL


_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool",
    "and", "or", "unless", "inf", "nan", "atan2",
}  # fmt: skip
_GRAFANA_VARS = {
    "$__rate_interval": "1m",
    "$__range": "5m",
    "$__interval": "15s",
    "$job": "fastapi-app",
    "$instance": ".*",
}


def grafana_to_promql(expr: str) -> str:
    """Substitute the dashboard's variables so the expression is plain PromQL."""
    for var, value in sorted(_GRAFANA_VARS.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(var, value)
    return expr


def selectors(expr: str) -> list[tuple[str, set[str]]]:
    """Every ``metric{matchers}`` in a PromQL expression: (metric name, label names used).

    A small tokenizer rather than a parser: strings, ranges and ``by (...)``-style label lists
    are removed, and an identifier followed by ``(`` is a function or an aggregation.
    """
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    matchers: list[set[str]] = []

    def stash(match: re.Match[str]) -> str:
        matchers.append(set(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)", match[1])))
        return f"\x00{len(matchers) - 1}\x00"

    text = re.sub(r"\{([^}]*)\}", stash, text)
    found = []
    for match in re.finditer(r"(?<![\w.$])[A-Za-z_:][A-Za-z0-9_:]*", text):
        name = match.group(0)
        rest = text[match.end() :].lstrip()
        if rest.startswith("(") or name.lower() in _KEYWORDS:
            continue
        labels: set[str] = set()
        if held := re.match(r"\x00(\d+)\x00", rest):
            labels = matchers[int(held[1])]
        found.append((name, labels))
    return found


def metric_names(expr: str) -> set[str]:
    return {name for name, _ in selectors(expr)}


def exported_series(exposition: str) -> dict[str, set[str]]:
    """Sample names of a scrape (``_bucket``/``_count``/``_sum`` included) -> label names."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            out.setdefault(sample.name, set()).update(sample.labels)
    return out


def rule_exprs() -> dict[str, str]:
    """Alert name -> expression, from the chart's rules file."""
    doc = yaml.safe_load(RULES_FILE.read_text())
    return {
        rule["alert"]: rule["expr"]
        for group in doc["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }


def dashboard_exprs(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, expr) for every panel target and every query variable of a dashboard."""
    out = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for p in panels:
            for t in p.get("targets", []):
                out.append((f"panel {p.get('title')!r} {t.get('refId')}", t["expr"]))
            walk(p.get("panels", []))

    walk(dashboard.get("panels", []))
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("type") != "query":
            continue
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        match = re.fullmatch(r"label_values\((.*),\s*([A-Za-z_][A-Za-z0-9_]*)\)", query.strip())
        assert match, f"variable {var['name']}: unsupported query {query!r}"
        out.append((f"variable {var['name']}", match.group(1)))
    return out
