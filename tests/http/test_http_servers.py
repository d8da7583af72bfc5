"""Real servers on free localhost ports: uvicorn (ASGI) and gunicorn with 2 workers (WSGI,
prometheus-client multiprocess mode)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

HERE = Path(__file__).resolve().parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_up(url: str, process: subprocess.Popen[str], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited: {process.communicate()}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise AssertionError(f"{url} did not come up")


def _wait_for(client: httpx.Client, text: str, timeout: float = 10) -> str:
    """Poll /metrics until it contains ``text``; returns the page."""
    deadline = time.monotonic() + timeout
    while True:
        page = client.get("/metrics").text
        if text in page or time.monotonic() > deadline:
            assert text in page
            return page
        time.sleep(0.02)


def _stop(process: subprocess.Popen[str]) -> str:
    process.terminate()
    try:
        out, _ = process.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        out, _ = process.communicate()
    return out


def _request_lines(out: str) -> list[dict[str, object]]:
    lines = []
    for raw in out.splitlines():
        if raw.startswith("{"):
            record = json.loads(raw)
            if record.get("log.logger") == "interlock.http":
                lines.append(record)
    return lines


@pytest.fixture
def uvicorn_server() -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(HERE), "INTERLOCK_TEST_APP": "asgi"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "_http_server_apps:asgi_app",
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_up(base + "/metrics", process)
        yield base, process
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def test_uvicorn_serves_metrics_ids_and_releases_locks_on_disconnect(
    uvicorn_server: tuple[str, subprocess.Popen[str]],
) -> None:
    base, process = uvicorn_server
    with httpx.Client(base_url=base) as client:
        response = client.get("/items/5", headers={"x-request-id": "from-client-1"})
        assert response.json() == {"id": 5}
        assert response.headers["x-request-id"] == "from-client-1"

    # a client that leaves while its request holds the lock
    host, port = base.removeprefix("http://").split(":")
    with httpx.Client(base_url=base) as client:
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(
                b"POST /slow/1 HTTP/1.1\r\nHost: x\r\nX-Request-ID: leaver\r\n"
                b"Content-Length: 0\r\n\r\n"
            )
            _wait_for(client, 'interlock_lock_held{lock="slow"} 1.0')
        busy = client.post("/slow/1")  # the handler still runs: the lock is held
        assert busy.status_code == 423 and busy.headers["retry-after"] == "1"
        metrics = _wait_for(client, 'interlock_lock_held{lock="slow"} 0.0')
        series = 'method="GET",route="/items/{item_id:int}",status="200"'
        assert f"interlock_http_requests_total{{{series}}} 1.0" in metrics
        assert client.post("/slow/1").status_code == 200  # free again
    lines = _request_lines(_stop(process))
    leaver = [line for line in lines if line["http.request.id"] == "leaver"]
    assert len(leaver) == 1  # exactly one line for the request whose client left
    assert leaver[0]["interlock.lock.name"] == "slow"
    assert len(lines) == 4


def test_gunicorn_two_workers_multiprocess_metrics(tmp_path: Path) -> None:
    port = _free_port()
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    config = tmp_path / "gunicorn.conf.py"
    config.write_text(
        "from prometheus_client import multiprocess\n\n"
        "def child_exit(server, worker):\n"
        "    multiprocess.mark_process_dead(worker.pid)\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(HERE),
        "INTERLOCK_TEST_APP": "wsgi",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }
    gunicorn = Path(sys.executable).with_name("gunicorn")
    process = subprocess.Popen(
        [
            str(gunicorn),
            "-c",
            str(config),
            "-w",
            "2",
            "-b",
            f"127.0.0.1:{port}",
            "--graceful-timeout",
            "5",
            "_http_server_apps:wsgi_app",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_up(base + "/metrics", process)
        pids = set()
        with httpx.Client(base_url=base) as client:
            deadline = time.monotonic() + 15
            sent = 0
            while (len(pids) < 2 or sent < 40) and time.monotonic() < deadline:
                # a new connection each time, so both workers get requests
                pids.add(
                    httpx.get(f"{base}/items/{sent % 3}", headers={"connection": "close"}).json()[
                        "pid"
                    ]
                )
                sent += 1
            assert len(pids) == 2, "both workers served requests"
            text = client.get("/metrics").text
        total = sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(
                'interlock_http_requests_total{method="GET",route="/items/<int:item_id>"'
            )
        )
        assert total == sent  # every worker's requests, whichever worker answered the scrape
        assert "interlock_http_request_duration_seconds_bucket" in text
        assert "# {trace_id" not in text  # no exemplars in multiprocess mode
    finally:
        out = _stop(process)
    lines = _request_lines(out)
    assert len({line["http.request.id"] for line in lines}) == len(lines) >= sent
