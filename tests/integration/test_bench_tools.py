"""The benchmark helpers run and print their figures (a smoke run; no timing asserted)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_tool

REPO = Path(__file__).resolve().parents[2]


def run(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_micro_compares_each_hot_path() -> None:
    out = run("bench/micro.py", "--quick")
    rows = re.findall(r"^(.+?)\s+([\d.]+)\s+([\d.]+)\s+x([\d.]+)$", out, re.M)
    assert len(rows) == 6, out  # one per row of the README's hand-written hot paths
    assert all(float(lib) > 0 and float(kit) > 0 for _, lib, kit, _ in rows)


@pytest.mark.parametrize("route", ["hello", "orders"])
def test_inprocess_serves_both_apps(route: str) -> None:
    out = run("bench/inprocess.py", "--route", route, "--rounds", "1", "--requests", "32")
    assert out.startswith(f"{route}: CPU per request"), out
    figures = dict(re.findall(r"^\s+(bare|hardened)\s+([\d.]+) us$", out, re.M))
    assert set(figures) == {"bare", "hardened"}, out
    assert re.search(r"^bare / hardened = \d\.\d{3}$", out, re.M), out


def test_make_bench_prints_ratios_and_cpu_per_request() -> None:
    require_tool("wrk", "apt-get install wrk (or: make tools)")
    out = run("bench/run.py", "--rounds", "1", "--duration", "1", "--warmup", "1")
    for route in ("hello", "orders"):
        ratios = re.search(
            rf"^{route}: hardened / bare FastAPI = (\d\.\d{{3}}) throughput, (\d\.\d{{3}}) CPU",
            out,
            re.M,
        )
        assert ratios and float(ratios[1]) > 0 and float(ratios[2]) > 0, out
        cpu = re.search(
            rf"^{route}: worker CPU per request hardened ([\d.]+) us, bare ([\d.]+) us", out, re.M
        )
        assert cpu and float(cpu[1]) > 0 and float(cpu[2]) > 0, out
    parts = re.search(
        r"^orders: the platform layer alone \(route index off\) costs (-?[\d.]+) us per request; "
        r"the route index saves (-?[\d.]+) us$",
        out,
        re.M,
    )
    assert parts, out
    spans = re.search(r"^spans received by the live OTLP sink: (\d+)$", out, re.M)
    assert spans and int(spans[1]) > 0, out  # the hardened server really exported
