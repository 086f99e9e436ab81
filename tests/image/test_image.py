"""The production image, built with buildah from a debootstrapped python base and run for real.

One module-scoped build (``scripts/image.sh`` forced to buildah, chroot isolation, vfs
storage, base ``localhost/pybase:bookworm`` from ``scripts/pybase.sh``), then one running
container started exactly like production: the image's own ``Cmd``, ``User``,
``WorkingDir`` and ``Env`` (``buildah run`` applies them), only the ports changed to free
loopback ports because the container shares the host network.

How the read-only root filesystem is proven here (no OCI runtime works on these machines,
so there is no ``--read-only`` flag to lean on):

1. ``buildah mount`` gives the container's root directory on the host. We bind-mount that
   directory onto itself and remount the bind read-only (``mount --bind R R`` then
   ``mount -o remount,bind,ro R``). ``buildah run --isolation chroot`` builds its mount
   namespace from that mount, so the container's ``/`` is read-only for every process,
   root included (the kernel answers EROFS, whatever the permissions).
2. The documented writable paths are mounted back read-write exactly like the chart's
   ``emptyDir`` volumes: host directories owned by 10001 bind-mounted on ``/tmp`` and
   ``/var/lib/fastapi-app/metrics`` (``buildah run --mount type=bind,...,rw``).
3. Controls: before the remount, uid 10001 *can* create a file in ``/var/lib/fastapi-app``
   (it owns that directory); after it, the same write fails with "Read-only file system",
   as does a write to ``/app`` by root, while writes to ``/tmp`` and the metrics directory
   succeed. So the failure is the read-only mount, not file permissions.
4. The service then starts and serves on that root; its master's mount table shows ``/``
   read-only, the worker heartbeat files live in ``/tmp`` and the metric files in the
   metrics directory, and one scrape counts requests spread over both workers.

Buildah needs one mount point it would otherwise create on the fly (``/run/.containerenv``);
it is created before the remount (an empty file, not a writable path). Buildah 1.28 then
fails to remove it after the command ends (EROFS) and exits 2 with a Go panic on stderr:
that is buildah's clean-up, after the service or probe has run, and is expected here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import figure
from tests.image.conftest import REPO, STORAGE, build_image, buildah, podman
from tests.support.procfs import open_fd_targets
from tests.support.server import LoopbackUrls, free_port, metric_value, wait_for

pytestmark = pytest.mark.timeout(900)

TAG = f"localhost/fastapi-app:imagetest-{os.getpid()}"  # unique: suites may run at once
UID = 10001
METRICS_DIR = "/var/lib/fastapi-app/metrics"
WORKERS = 2
MAX_ADDED_MIB = 120
MIB = 1024 * 1024
CONTEXT_IGNORE = shutil.ignore_patterns(
    ".git", ".venv", ".tools", ".pytest_cache", ".ruff_cache", "build", "reports", "*.egg-info"
)


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def image(base_image: str) -> Iterator[str]:
    """Build once, from a copy of the repository with planted files .dockerignore must drop."""
    with tempfile.TemporaryDirectory(prefix="image-ctx-") as tmp:
        context = Path(tmp) / "ctx"
        shutil.copytree(REPO, context, ignore=CONTEXT_IGNORE, symlinks=True)
        planted = context / "app" / "__pycache__"
        planted.mkdir(exist_ok=True)
        (planted / "planted.cpython-311.pyc").write_bytes(b"stale bytecode")
        (context / "app" / "planted.pyc").write_bytes(b"stale bytecode")
        started = time.monotonic()
        result = build_image(TAG, context)
        figure("image build seconds", f"{time.monotonic() - started:.0f}")
    if result.returncode != 0:
        pytest.fail(f"image build failed (exit {result.returncode}):\n{result.stdout[-8000:]}")
    yield TAG
    buildah("rmi", "-f", TAG, check=False)


@pytest.fixture(scope="module")
def config(image: str) -> dict:
    return json.loads(podman("image", "inspect", image).stdout)[0]["Config"]


@dataclass
class Container:
    name: str
    rootfs: Path
    readonly: bool = False
    probes: dict[str, str] = field(default_factory=dict)


@pytest.fixture(scope="module")
def container(image: str) -> Iterator[Container]:
    name = buildah("from", "--pull-never", image).stdout.strip()
    ctr = Container(name=name, rootfs=Path(buildah("mount", name).stdout.strip()))
    try:
        yield ctr
    finally:
        if ctr.readonly:
            subprocess.run(["umount", str(ctr.rootfs)], check=False)
        buildah("umount", name, check=False)
        buildah("rm", name, check=False)


PROBE_SCRIPT = (
    'for p in "$@"; do if out=$(touch "$p" 2>&1); then echo "$p: written"; rm -f "$p"; '
    'else echo "$p: $out"; fi; done'
)


def probe_writes(ctr: Container, mounts: list[str], paths: list[str], user: str | None) -> dict:
    """Try to create each path inside the container; map path -> 'written' or the error."""
    args = ["run", "--isolation", "chroot", *mounts]
    if user is not None:
        args += ["--user", user]
    # check=False: on a read-only root buildah 1.28 cannot remove its /run/.containerenv
    # mount point after the command has finished and exits 2; the probe's own output is
    # what counts, and every path must have reported.
    result = buildah(
        *args, ctr.name, "--", "/bin/sh", "-c", PROBE_SCRIPT, "probe", *paths, check=False
    )
    outcome = {}
    for line in result.stdout.splitlines():
        path, _, status = line.partition(": ")
        outcome[path] = "written" if status == "written" else status
    assert set(paths) <= set(outcome), f"probe incomplete:\n{result.stdout}\n{result.stderr}"
    return outcome


@dataclass
class Service(LoopbackUrls):
    ctr: Container
    proc: subprocess.Popen
    port: int
    metrics_port: int
    host_tmp: Path
    host_metrics: Path
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def tree(self) -> list[int]:
        """Pids of every descendant of the ``buildah run`` process."""
        children: dict[int, list[int]] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
        found, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            for child in children.get(pid, []):
                found.append(child)
                todo.append(child)
        return found

    def container_pids(self) -> list[int]:
        """Descendants running inside the container (their root is not the host's /)."""
        pids = []
        for pid in self.tree():
            try:
                if os.readlink(f"/proc/{pid}/root") != "/":
                    pids.append(pid)
            except OSError:
                continue
        return pids

    def gunicorn_pids(self) -> tuple[int, list[int]]:
        """(master, workers): python processes running gunicorn inside the container."""
        procs = {}
        for pid in self.container_pids():
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            if argv[0].endswith(b"python") or b"python3" in argv[0]:
                procs[pid] = ppid
        masters = [pid for pid, ppid in procs.items() if ppid not in procs]
        assert len(masters) == 1, f"expected one gunicorn master, got {procs}"
        return masters[0], [pid for pid, ppid in procs.items() if ppid == masters[0]]


def stop_service(svc: Service) -> None:
    """SIGTERM the gunicorn master, then SIGKILL the whole process group, always."""
    try:
        master, _ = svc.gunicorn_pids()
        os.kill(master, signal.SIGTERM)
        svc.proc.wait(timeout=20)
    except Exception:
        pass
    leftovers = svc.tree()
    try:
        os.killpg(svc.proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for pid in leftovers:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        svc.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


@pytest.fixture(scope="module")
def service(container: Container, config: dict) -> Iterator[Service]:
    """The image's own command, uid and workdir, on a read-only root with two writable mounts."""
    with tempfile.TemporaryDirectory(prefix="image-run-") as tmp:
        host_tmp, host_metrics = Path(tmp) / "tmp", Path(tmp) / "metrics"
        for path, mode in ((host_tmp, 0o1777), (host_metrics, 0o750)):
            path.mkdir()
            os.chown(path, UID, UID)
            path.chmod(mode)
        mounts = [
            "--mount",
            f"type=bind,src={host_tmp},destination=/tmp,rw",
            "--mount",
            f"type=bind,src={host_metrics},destination={METRICS_DIR},rw",
        ]
        probes = ["/var/lib/fastapi-app/probe", "/tmp/probe", f"{METRICS_DIR}/probe"]

        # Control: while the root is still writable, uid 10001 can write in its own dir.
        container.probes["rw:uid"] = probe_writes(container, mounts, probes, user=None)
        # The read-only root: a read-only bind mount of the container's root directory.
        (container.rootfs / "run" / ".containerenv").touch()
        rootfs = str(container.rootfs)
        subprocess.run(["mount", "--bind", rootfs, rootfs], check=True)
        container.readonly = True
        subprocess.run(["mount", "-o", "remount,bind,ro", rootfs], check=True)
        container.probes["ro:uid"] = probe_writes(container, mounts, probes, user=None)
        container.probes["ro:root"] = probe_writes(
            container, mounts, ["/app/probe", "/probe", "/etc/probe"], user="0:0"
        )

        port, metrics_port = free_port(), free_port()
        while metrics_port == port:
            metrics_port = free_port()
        env = {
            "APP_PORT": str(port),
            "APP_METRICS_PORT": str(metrics_port),
            "APP_WORKERS": str(WORKERS),
            "APP_SHUTDOWN_DELAY_SECONDS": "0",
            "APP_GRACEFUL_TIMEOUT_SECONDS": "5",
        }
        env_args = [arg for k, v in env.items() for arg in ("-e", f"{k}={v}")]
        log = Path(tmp) / "service.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [
                    "buildah",
                    *STORAGE,
                    "run",
                    "--isolation",
                    "chroot",
                    *env_args,
                    *mounts,
                    container.name,
                    "--",
                    *config["Cmd"],
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        svc = Service(container, proc, port, metrics_port, host_tmp, host_metrics, log)
        try:

            def ready() -> bool:
                if proc.poll() is not None:
                    raise RuntimeError(f"container exited {proc.returncode}:\n{svc.output()}")
                return httpx.get(f"{svc.base_url}/readyz", timeout=2).status_code == 200

            try:
                wait_for(ready, timeout=90, interval=0.2)
            except (TimeoutError, RuntimeError) as exc:
                pytest.fail(f"service in the image did not become ready: {exc}\n{svc.output()}")
            yield svc
        finally:
            stop_service(svc)


# --------------------------------------------------------------------------------- tests
def test_image_config_is_hardened(config: dict, container: Container) -> None:
    assert config["User"] == f"{UID}:{UID}"
    assert config["Cmd"] == ["gunicorn", "-c", "gunicorn.conf.py"]
    assert config["WorkingDir"] == "/app"
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["PROMETHEUS_MULTIPROC_DIR"] == METRICS_DIR
    assert env["PATH"].startswith("/opt/venv/bin:")
    assert {"8000/tcp", "9000/tcp"} <= set(config.get("ExposedPorts", {}))
    labels = config.get("Labels") or {}
    for key in ("title", "description", "version", "revision", "created", "base.name"):
        assert labels.get(f"org.opencontainers.image.{key}"), f"missing OCI label {key}"
    metrics = (container.rootfs / METRICS_DIR.lstrip("/")).stat()
    assert (metrics.st_uid, metrics.st_gid) == (UID, UID)


def test_final_stage_has_no_build_tooling_or_caches(container: Container) -> None:
    root = container.rootfs
    assert (root / "opt/venv/bin/gunicorn").is_file()
    forbidden = [
        "opt/uv", "src", "opt/venv/bin/uv", "opt/venv/bin/pip", "opt/venv/bin/pip3",
        "root/.cache", "tmp/uv-cache",
    ]  # fmt: skip
    present = [p for p in forbidden if (root / p).exists()]
    assert not present, f"build-stage leftovers in the final image: {present}"
    site = list((root / "opt/venv").glob("lib/python3*/site-packages"))
    assert len(site) == 1, site
    tooling = [name for name in ("pip", "uv", "setuptools") if (site[0] / name).exists()]
    assert not tooling, f"package tooling in the runtime environment: {tooling}"
    compilers = [
        f"{d}/{c}"
        for d in ("usr/bin", "usr/local/bin", "opt/venv/bin")
        for c in ("gcc", "cc", "c++", "g++", "clang", "make")
        if (root / d / c).exists()
    ]
    assert not compilers, f"compilers in the final image: {compilers}"
    apt_state = [
        p for p in (root / "var/lib/apt/lists").glob("*") if p.is_file() and p.name != "lock"
    ]
    apt_state += list((root / "var/cache/apt").glob("**/*.deb"))
    apt_state += list((root / "var/cache/apt").glob("*.bin"))
    assert not apt_state, f"apt lists or caches left in the image: {apt_state[:5]}"
    # Only the application and its config under /app; .dockerignore dropped stale bytecode.
    assert sorted(p.name for p in (root / "app").iterdir()) == ["app", "gunicorn.conf.py"]
    stale = [str(p) for p in (root / "app").rglob("*.pyc")]
    stale += [str(p) for p in (root / "app").rglob("__pycache__")]
    assert not stale, f"bytecode copied from the build context: {stale}"


def test_layers_over_base_stay_under_budget(image: str, base_image: str) -> None:
    img, base = (podman("image", "inspect", ref).stdout for ref in (image, base_image))
    img, base = json.loads(img)[0], json.loads(base)[0]
    base_layers = base["RootFS"]["Layers"]
    assert img["RootFS"]["Layers"][: len(base_layers)] == base_layers, "not built on the base"
    added = (img["Size"] - base["Size"]) / MIB
    figure("image layers over the base", f"{added:.1f} MiB (budget {MAX_ADDED_MIB} MiB)")
    assert 0 < added < MAX_ADDED_MIB


def test_probes_and_metrics_answer(service: Service) -> None:
    live = httpx.get(f"{service.base_url}/livez", timeout=5)
    assert live.status_code == 200 and live.json() == {"status": "ok"}
    ready = httpx.get(f"{service.base_url}/readyz", timeout=5)
    assert ready.status_code == 200 and ready.json()["status"] == "ok"
    n = 12
    with httpx.Client(base_url=service.base_url, timeout=5) as client:
        for i in range(n):
            assert client.get("/api/v1/hello", params={"name": f"img{i}"}).status_code == 200
    # One scrape sums every worker: the multiprocess files live in the writable metrics dir.
    labels = {"route": "/api/v1/hello", "status": "200"}
    wait_for(
        lambda: metric_value(httpx.get(service.metrics_url, timeout=5).text,
                             "http_requests_total", labels) == n,
        timeout=10,
    )  # fmt: skip
    assert httpx.get(f"{service.base_url}/metrics", timeout=5).status_code == 404


def test_server_processes_run_as_uid_10001(service: Service) -> None:
    master, workers = service.gunicorn_pids()
    assert len(workers) == WORKERS, (master, workers)
    inside = service.container_pids()
    assert {master, *workers} <= set(inside)
    for pid in inside:
        status = Path(f"/proc/{pid}/status").read_text()
        uids = re.search(r"^Uid:\s+(.*)$", status, re.M).group(1).split()
        gids = re.search(r"^Gid:\s+(.*)$", status, re.M).group(1).split()
        groups = re.search(r"^Groups:\s*(.*)$", status, re.M).group(1).split()
        assert uids == [str(UID)] * 4, f"pid {pid}: uids {uids}"
        assert gids == [str(UID)] * 4, f"pid {pid}: gids {gids}"
        assert set(groups) <= {str(UID)}, f"pid {pid}: groups {groups}"


def test_runs_on_a_read_only_root_with_only_the_documented_writable_paths(
    service: Service,
) -> None:
    probes = service.ctr.probes
    # Control: with a writable root, uid 10001 may write into /var/lib/fastapi-app ...
    assert probes["rw:uid"]["/var/lib/fastapi-app/probe"] == "written", probes
    # ... and with the read-only root it cannot; neither can root anywhere outside the mounts.
    assert "Read-only file system" in probes["ro:uid"]["/var/lib/fastapi-app/probe"], probes
    for path in ("/app/probe", "/probe", "/etc/probe"):
        assert "Read-only file system" in probes["ro:root"][path], probes
    # The documented writable paths stay writable for uid 10001.
    assert probes["ro:uid"]["/tmp/probe"] == "written", probes
    assert probes["ro:uid"][f"{METRICS_DIR}/probe"] == "written", probes

    # The running server sees / read-only and /tmp + the metrics dir read-write.
    master, workers = service.gunicorn_pids()
    mounts = {}
    for line in Path(f"/proc/{master}/mountinfo").read_text().splitlines():
        fields = line.split()
        mounts[fields[4]] = fields[5].split(",")  # mount point -> per-mount options
    assert "ro" in mounts["/"], mounts["/"]
    assert "rw" in mounts["/tmp"] and "rw" in mounts[METRICS_DIR]
    assert httpx.get(f"{service.base_url}/readyz", timeout=5).status_code == 200

    # Gunicorn's worker heartbeat files are open in /tmp, the metric files in METRICS_DIR.
    for pid in workers:
        targets = open_fd_targets(pid)
        assert any("/tmp/wgunicorn-" in t for t in targets), targets
    db_files = list(service.host_metrics.glob("kit_http_*"))
    assert db_files and all(p.stat().st_uid == UID for p in db_files)
