"""A worker killed mid-request leaves no live gauges behind (issue 11, item 8).

Under ``uvicorn --workers`` there is no ``child_exit`` hook to call
``mark_process_dead``; gunicorn has one, but it is not configured here either. The
metrics endpoint drops the live-gauge files of processes that no longer exist when it
collects, so ``interlock_http_requests_in_progress`` and ``interlock_lock_held`` of a
worker killed with SIGKILL disappear from the next scrape.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

HERE = Path(__file__).resolve().parent
GAUGES = ('interlock_http_requests_in_progress{method="POST"}', 'interlock_lock_held{lock="hold"}')


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _scrape(base: str) -> str:
    # a new connection each time: any worker may answer, the killed one cannot
    return httpx.get(f"{base}/metrics", headers={"connection": "close"}, timeout=5).text


def _values(page: str) -> dict[str, float]:
    found = {}
    for line in page.splitlines():
        for gauge in GAUGES:
            if line.startswith(gauge + " "):
                found[gauge] = float(line.rsplit(" ", 1)[1])
    return found


def _wait(condition: object, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _server(kind: str, port: int, tmp_path: Path) -> subprocess.Popen[str]:
    metrics_dir, pids = tmp_path / "prometheus", tmp_path / "pids"
    metrics_dir.mkdir()
    pids.mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "INTERLOCK_TEST_APP": "wsgi" if kind == "gunicorn" else "asgi",
        "INTERLOCK_TEST_PIDS": str(pids),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }
    if kind == "uvicorn":
        command = [
            sys.executable, "-m", "uvicorn", "_http_worker_apps:asgi_app", "--workers", "2",
            "--port", str(port), "--no-access-log", "--log-level", "warning",
        ]  # fmt: skip
    else:
        gunicorn = str(Path(sys.executable).with_name("gunicorn"))
        command = [
            gunicorn, "-w", "2", "-b", f"127.0.0.1:{port}", "--graceful-timeout", "2",
            "--timeout", "120", "_http_worker_apps:wsgi_app",
        ]  # fmt: skip
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        cwd=tmp_path,
    )  # fmt: skip


@pytest.mark.parametrize("kind", ["uvicorn", "gunicorn"])
def test_gauges_of_a_killed_worker_are_dropped(kind: str, tmp_path: Path) -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    process = _server(kind, port, tmp_path)
    try:

        def up() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"server exited: {process.communicate()}")
            try:
                return httpx.get(f"{base}/ping", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        _wait(up, "the server")
        with socket.create_connection(("127.0.0.1", port)) as holder:
            holder.sendall(b"POST /hold/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
            marks = tmp_path / "pids"
            _wait(lambda: any(marks.iterdir()), "the held request")
            (mark,) = marks.iterdir()
            pid = int(mark.name.removeprefix("hold-"))
            assert _values(_scrape(base)) == dict.fromkeys(GAUGES, 1.0)
            os.kill(pid, signal.SIGKILL)  # mid-request, lock held: no cleanup runs
            _wait(
                lambda: all(v == 0 for v in _values(_scrape(base)).values()),
                "the dead worker's gauges to go",
            )
        assert process.poll() is None  # the server itself lives on
    finally:
        process.terminate()
        try:
            process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


_WORKER = """
import sys
from interlock import Interlock
il = Interlock("mem://")
il.metrics.http_in_progress.labels(method="GET").inc()
il.metrics.lock_held.labels(lock="a").inc()
il.metrics.lock_acquire.labels(lock="a", result="acquired").observe(0.01)
print("ready", flush=True)
sys.stdin.read()  # until the test closes stdin (or kills us)
"""


def test_drop_dead_processes_keeps_the_living_and_counters(tmp_path: Path) -> None:
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    from interlock.metrics import drop_dead_processes

    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    try:
        for worker in workers:
            assert worker.stdout is not None and worker.stdout.readline() == "ready\n"
        killed = workers[1]  # workers[0] lives on
        killed.kill()  # not waited for: a zombie until reaped, dead all the same
        _wait(lambda: _state(killed.pid) == "Z", "the zombie")
        assert drop_dead_processes(tmp_path) == [killed.pid]
        assert drop_dead_processes(tmp_path) == []  # idempotent; the living one stays
        registry = CollectorRegistry()
        MultiProcessCollector(registry, str(tmp_path))  # type: ignore[no-untyped-call]
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for metric in registry.collect()
            for s in metric.samples
        }
        assert samples[("interlock_http_requests_in_progress", (("method", "GET"),))] == 1.0
        assert samples[("interlock_lock_held", (("lock", "a"),))] == 1.0
        count = ("interlock_lock_acquire_seconds_count", (("lock", "a"), ("result", "acquired")))
        assert samples[count] == 2.0  # both workers' history is kept
    finally:
        for worker in workers:
            worker.kill()
            worker.communicate()


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
