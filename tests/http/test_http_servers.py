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


def _pythonpath() -> str:
    """The apps' folder, then the caller's path (a worktree's package before the installed one)."""
    return os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p)


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
    env = {**os.environ, "PYTHONPATH": _pythonpath(), "INTERLOCK_TEST_APP": "asgi"}
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
        "PYTHONPATH": _pythonpath(),
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


def _raw_request(base: str, head: bytes) -> socket.socket:
    host, port = base.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    sock.sendall(head)
    return sock


def _leave(sock: socket.socket) -> None:
    """Close abruptly (RST), as a client that gives up does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()


def test_uvicorn_a_client_that_leaves_while_queued_never_runs_its_handler(
    uvicorn_server: tuple[str, subprocess.Popen[str]],
) -> None:
    """Issue 10 item 6: the queued request stops waiting at once, its handler does not run
    (5 of 5 ran before), and its line says 499 with client_disconnected."""
    base, process = uvicorn_server
    with httpx.Client(base_url=base, timeout=10) as client:
        for round_ in range(3):
            holder = _raw_request(
                base, b"POST /queue/1?hold=1.5 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
            )
            _wait_for(client, 'interlock_lock_held{lock="queue"} 1.0')
            quitter = _raw_request(
                base,
                b"POST /queue/1 HTTP/1.1\r\nHost: x\r\nX-Request-ID: quitter-%d\r\n"
                b"Content-Length: 0\r\n\r\n" % round_,
            )
            _wait_for(client, 'interlock_lock_waiting{lock="queue"} 1.0')
            _leave(quitter)
            page = _wait_for(client, 'interlock_lock_waiting{lock="queue"} 0.0')
            assert 'interlock_lock_held{lock="queue"} 1.0' in page  # stopped before the holder
            assert holder.recv(1024).startswith(b"HTTP/1.1 200")
            holder.close()
            _wait_for(client, 'interlock_lock_held{lock="queue"} 0.0')
        ran = client.get("/runs").json()
    assert not [rid for rid in ran if rid.startswith("quitter")], ran
    lines = _request_lines(_stop(process))
    quitters = [line for line in lines if str(line["http.request.id"]).startswith("quitter")]
    assert len(quitters) == 3
    for line in quitters:
        assert line["http.response.status_code"] == 499
        assert line["interlock.http.client_disconnected"] is True


def test_uvicorn_disconnect_mid_stream_and_on_a_cached_route_is_one_rule_499(
    uvicorn_server: tuple[str, subprocess.Popen[str]],
) -> None:
    """A locked streaming route left mid-stream (was: 200 + client_disconnected) and a
    cached route left while its response loads (was: 200, no flag): both 499, flagged;
    the loaded response is still cached for the next client."""
    base, process = uvicorn_server
    with httpx.Client(base_url=base, timeout=10) as client:
        streamer = _raw_request(
            base, b"GET /stream/1 HTTP/1.1\r\nHost: x\r\nX-Request-ID: streamer\r\n\r\n"
        )
        assert streamer.recv(4096).startswith(b"HTTP/1.1 200")
        _leave(streamer)
        _wait_for(client, 'interlock_lock_held{lock="stream"} 0.0')
        loader = _raw_request(
            base, b"GET /cached/1 HTTP/1.1\r\nHost: x\r\nX-Request-ID: cache-leaver\r\n\r\n"
        )
        deadline = time.monotonic() + 5
        while "cache-leaver" not in client.get("/runs").json():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        _leave(loader)
        _wait_for(client, 'status="499"')
        again = client.get("/cached/1", headers={"x-request-id": "cache-reader"})
        assert again.text == "page" and again.headers["x-cache"] in ("HIT", "MISS")
    lines = {line["http.request.id"]: line for line in _request_lines(_stop(process))}
    for rid, started in (("streamer", 200), ("cache-leaver", None)):
        assert lines[rid]["http.response.status_code"] == 499, lines[rid]
        assert lines[rid]["interlock.http.client_disconnected"] is True
        assert lines[rid].get("interlock.http.started_status") == started


def test_gunicorn_disconnect_mid_stream_is_the_same_499(tmp_path: Path) -> None:
    """WSGI has no disconnect event: a response the server stopped sending (its write to
    the gone client failed, it closed the iterable early) is the same 499 line."""
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": _pythonpath(), "INTERLOCK_TEST_APP": "wsgi"}
    gunicorn = Path(sys.executable).with_name("gunicorn")
    process = subprocess.Popen(
        [str(gunicorn), "-w", "1", "-b", f"127.0.0.1:{port}", "_http_server_apps:wsgi_app"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_up(base + "/metrics", process)
        streamer = _raw_request(
            base, b"GET /stream/1 HTTP/1.1\r\nHost: x\r\nX-Request-ID: streamer\r\n\r\n"
        )
        assert streamer.recv(4096).startswith(b"HTTP/1.1 200")
        _leave(streamer)
        with httpx.Client(base_url=base, timeout=10) as client:
            _wait_for(client, 'status="499"')
    finally:
        out = _stop(process)
    [line] = [line for line in _request_lines(out) if line["http.request.id"] == "streamer"]
    assert line["http.response.status_code"] == 499
    assert line["interlock.http.client_disconnected"] is True
    assert line["interlock.http.started_status"] == 200


def _order_outcomes(base: str, tmp_path: Path) -> None:
    """One order whose client stays, one whose client leaves before the status is sent."""
    with httpx.Client(base_url=base, timeout=10) as client:
        stayed = client.post("/order/1", headers={"x-request-id": "stayer"})
        assert stayed.status_code == 201
    gate = tmp_path / "gate"
    leaver = _raw_request(
        base,
        b"POST /order/2?gate=%s HTTP/1.1\r\nHost: x\r\nX-Request-ID: order-leaver\r\n"
        b"Content-Length: 0\r\n\r\n" % str(gate).encode(),
    )
    _leave(leaver)
    gate.touch()  # the handler answers 201 now, to a client that is gone
    with httpx.Client(base_url=base, timeout=10) as client:
        _wait_for(client, 'status="499"')


def _assert_leaver_not_committed(out: str) -> None:
    lines = {line["http.request.id"]: line for line in _request_lines(out)}
    stayer, leaver = lines["stayer"], lines["order-leaver"]
    assert (stayer["interlock.txn.outcome"], stayer["interlock.txn.cause"]) == (
        "committed",
        "status",
    )
    assert leaver["interlock.txn.outcome"] == "aborted", leaver
    assert leaver["interlock.txn.cause"] == "disconnect"
    assert leaver["http.response.status_code"] == 499
    assert leaver["interlock.http.client_disconnected"] is True


def test_uvicorn_a_client_gone_before_the_status_does_not_commit(
    uvicorn_server: tuple[str, subprocess.Popen[str]], tmp_path: Path
) -> None:
    """Issue 12: the handler never reads ``receive()``, so only the middleware can notice
    that the client left; its 201 must not commit the request transaction (it did)."""
    base, process = uvicorn_server
    _order_outcomes(base, tmp_path)
    _assert_leaver_not_committed(_stop(process))


def test_gunicorn_a_client_gone_before_the_status_does_not_commit(tmp_path: Path) -> None:
    """The same rule under WSGI (it committed: only ASGI had it)."""
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": _pythonpath(), "INTERLOCK_TEST_APP": "wsgi"}
    gunicorn = Path(sys.executable).with_name("gunicorn")
    process = subprocess.Popen(
        [str(gunicorn), "-w", "1", "-b", f"127.0.0.1:{port}", "_http_server_apps:wsgi_app"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_up(base + "/metrics", process)
        _order_outcomes(base, tmp_path)
    finally:
        out = _stop(process)
    _assert_leaver_not_committed(out)
