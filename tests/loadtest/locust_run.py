"""Run the suite's locustfile as a user would: a ``locust`` subprocess, exit code and output."""

from __future__ import annotations

import csv
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LOCUST = REPO / ".venv/bin/locust"
LOCUSTFILE = REPO / "loadtests/locustfile.py"
API_ROUTES = {("GET", "/api/v1/hello"), ("POST", "/api/v1/echo"), ("GET", "/api/v1/wait")}


@dataclass
class LocustRun:
    returncode: int
    output: str

    def lines(self, prefix: str) -> list[str]:
        return [line for line in self.output.splitlines() if line.startswith(prefix)]

    def verdicts(self) -> dict[str, str]:
        """Target name -> PASS/MISS from the ``verdict`` lines."""
        out = {}
        for line in self.lines("verdict "):
            words = line.split()
            out[words[1]] = words[-1] if words[1] != "overall" else words[3]
        return out


def run_locust(host: str, *args: str, timeout: float = 120) -> LocustRun:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCUST_")}
    proc = subprocess.run(
        [str(LOCUST), "-f", str(LOCUSTFILE), "--headless", "--host", host, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return LocustRun(proc.returncode, proc.stdout + proc.stderr)


def read_stats_csv(prefix: Path) -> dict[tuple[str, str], dict[str, str]]:
    """Locust's ``PREFIX_stats.csv``: (Type, Name) -> row; the total is ("", "Aggregated")."""
    with open(f"{prefix}_stats.csv", newline="") as f:
        return {(row["Type"], row["Name"]): row for row in csv.DictReader(f)}
