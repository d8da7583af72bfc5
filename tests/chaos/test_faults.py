"""Real faults on real processes, links and servers; each counted once and logged twice."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from interlock.chaos import (
    FaultProxy,
    FaultRecorder,
    KillProcess,
    NetworkFault,
    PauseProcess,
    PidSource,
    RestartServer,
)
from interlock.chaos._faults import Fault, FaultTimes, alive, run_fault
from interlock.metrics import Metrics
from interlock.testing import capture_logs
from services import RedisServer, ServiceError
from services._process import wait_until


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait(10)


def _run(fault: Fault, registry: CollectorRegistry, during: Callable[[], None]) -> FaultTimes:
    """Run ``fault`` on a thread; ``during`` runs while it is active; returns its times."""
    times, stop = FaultTimes(), threading.Event()
    thread = threading.Thread(
        target=run_fault, args=(fault, FaultRecorder(Metrics(registry))),
        kwargs={"after": 0.0, "start": time.monotonic(), "stop": stop, "times": times},
    )  # fmt: skip
    thread.start()
    try:
        wait_until(lambda: times.injected is not None, 10, "the injection")
        during()
    finally:
        stop.set()  # cut the hold short: the fault must still be undone
        thread.join(30)
    assert times.ended is not None and not times.error, times
    return times


def _count(registry: CollectorRegistry, kind: str, target: str) -> float:
    value = registry.get_sample_value(
        "interlock_chaos_injected_total", {"kind": kind, "target": target}
    )
    return value or 0.0


def test_pause_stops_then_resumes_and_is_counted_and_logged(
    sleeper: subprocess.Popen[bytes],
) -> None:
    registry = CollectorRegistry()
    fault = PauseProcess("worker", PidSource(pid=sleeper.pid), duration=30)
    with capture_logs("interlock.chaos") as logs:
        _run(fault, registry, lambda: wait_until(lambda: _state(sleeper.pid) == "T", 5, "T"))
    assert _state(sleeper.pid) in ("S", "R")  # SIGCONT on the way out
    assert _count(registry, "pause", "worker") == 1
    injected, ended = logs.records
    assert injected["event.action"] == "chaos-injected" and injected["log.level"] == "warning"
    assert (injected["interlock.chaos.kind"], injected["interlock.chaos.target"]) == (
        "pause", "worker")  # fmt: skip
    assert injected["interlock.chaos.duration"] == 30.0 and str(sleeper.pid) in injected["message"]
    assert ended["event.action"] == "chaos-ended" and ended["interlock.chaos.kind"] == "pause"
    assert 0 <= ended["interlock.chaos.duration"] < 30  # cut short by the stop


def test_kill_by_pid_command(sleeper: subprocess.Popen[bytes], tmp_path: Path) -> None:
    registry = CollectorRegistry()
    pidfile = tmp_path / "worker.pid"
    pidfile.write_text(f"{sleeper.pid}\n")
    fault = KillProcess("worker", PidSource(pid_command=f"cat {pidfile}"))
    _run(fault, registry, lambda: None)
    assert sleeper.wait(5) == -9
    assert not alive(sleeper.pid) and _count(registry, "kill", "worker") == 1


def test_a_missing_process_is_an_error_not_a_crash() -> None:
    registry = CollectorRegistry()
    times, stop = FaultTimes(), threading.Event()
    fault = KillProcess("ghost", PidSource(pid_command="true"))
    run_fault(fault, FaultRecorder(Metrics(registry)), after=0, start=time.monotonic(),
              stop=stop, times=times)  # fmt: skip
    assert "no pid found" in times.error and times.ended is not None


def _echo_connection(conn: socket.socket) -> None:
    with conn:
        try:
            while data := conn.recv(1024):
                conn.sendall(data)
        except OSError:  # the proxy reset the link
            return


def _echo_server() -> tuple[socket.socket, threading.Thread]:
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=_echo_connection, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return server, thread


def _echo(port: int, timeout: float) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(b"ping")
        return sock.recv(16)


@pytest.mark.parametrize("kind", ["net-partition", "net-stall", "net-reset"])
def test_network_faults_cut_the_link_and_heal(kind: str) -> None:
    server, _ = _echo_server()
    registry = CollectorRegistry()
    try:
        with FaultProxy("127.0.0.1", server.getsockname()[1]) as proxy:
            assert _echo(proxy.port, 2) == b"ping"
            fault = NetworkFault(kind, "echo", proxy, duration=30)

            def broken() -> None:
                try:
                    answer = _echo(proxy.port, 0.3)
                except OSError:  # timed out, reset
                    return
                assert answer == b"", answer  # or closed at once

            _run(fault, registry, broken)
            assert _echo(proxy.port, 2) == b"ping"
    finally:
        server.close()
    assert _count(registry, kind, "echo") == 1


def test_network_latency_delays_each_way() -> None:
    server, _ = _echo_server()
    try:
        with FaultProxy("127.0.0.1", server.getsockname()[1], seed=1) as proxy:
            fault = NetworkFault("net-latency", "echo", proxy, 30, latency=0.1, jitter=0.02)

            def slow() -> None:
                began = time.monotonic()
                assert _echo(proxy.port, 2) == b"ping"
                assert time.monotonic() - began >= 0.16  # two chunks, 100 ± 20 ms each

            _run(fault, CollectorRegistry(), slow)
    finally:
        server.close()


def _kill_by_info(server: RedisServer) -> None:
    """Kill the Redis a fault restarted (not the fixture's child) by the pid it reports."""
    info = server.command("INFO", "server")
    pid = int(info.split("process_id:")[1].split()[0])
    subprocess.run(["kill", "-9", str(pid)], check=False)
    wait_until(lambda: not alive(pid), 10, "the restarted redis to die")


@pytest.mark.parametrize("aof", [True, False], ids=["aof", "no-aof"])
def test_server_restart_with_and_without_aof(
    redis_factory: Callable[..., RedisServer], aof: bool
) -> None:
    config = {"appendonly": "yes", "appendfsync": "always"} if aof else {}
    server = redis_factory(config=config)
    server.command("SET", "kept", "1")
    registry = CollectorRegistry()
    assert server.pid is not None
    fault = RestartServer(
        "redis", PidSource(pid=server.pid), duration=30, ready=("127.0.0.1", server.port),
        argv=server._command() if aof else None,
        restart=None if aof else " ".join(f"'{a}'" for a in server._command()),
    )  # fmt: skip

    def down() -> None:
        with pytest.raises(ConnectionRefusedError):
            server.command("PING", timeout=0.5)

    try:
        _run(fault, registry, down)
        wait_until(lambda: _answers(server), 10, "PONG once the dataset is loaded")
        assert server.command("GET", "kept") == ("1" if aof else None)
    finally:
        _kill_by_info(server)
    assert _count(registry, "server-restart", "redis") == 1


def _answers(server: RedisServer) -> bool:
    """PING answers PONG; ``LOADING`` (an AOF being replayed after the restart) is not yet."""
    try:
        return bool(server.command("PING") == "PONG")
    except ServiceError as exc:
        if str(exc).startswith("LOADING"):
            return False
        raise
