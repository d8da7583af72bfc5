"""``interlock top``: held locks, their waiters and holders, read back from real backends."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import signal
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from interlock import Interlock
from interlock._context import request_context
from interlock.cli import main
from interlock.cli._top_view import LockRow, make_snapshot, render
from interlock.lock import lock_keys
from services import RedisServer, free_port


def _ns() -> str:
    return f"top{uuid.uuid4().hex[:10]}"


def _top(capsys: pytest.CaptureFixture[str], url: str, ns: str, *extra: str) -> str:
    assert main(["top", "--url", url, "--namespace", ns, *extra]) == 0
    return capsys.readouterr().out


def _snapshot(capsys: pytest.CaptureFixture[str], url: str, ns: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(_top(capsys, url, ns, "--json"))
    return data


def _until(check: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


@pytest.fixture
def client(redis_url: str) -> Iterator[Interlock]:
    il = Interlock(redis_url, namespace=_ns())
    yield il
    il.close()


def test_holder_and_waiter_then_gone_after_release(
    client: Interlock, capsys: pytest.CaptureFixture[str]
) -> None:
    url, ns = client.settings.url, client.namespace
    waiter_client = Interlock(url, namespace=ns)
    lease = client.lock("account", 42, ttl=10.0).acquire()
    assert lease is not None
    waited: list[int] = []

    def wait_for_it() -> None:  # a real waiter: queued, blocking in acquire
        with waiter_client.lock("account", 42, timeout=5.0) as second:
            waited.append(second.fence)

    waiter = threading.Thread(target=wait_for_it)
    waiter.start()
    try:
        _until(lambda: _snapshot(capsys, url, ns)["waiting"] == 1, "the waiter to queue")
        data = _snapshot(capsys, url, ns)
        [row] = data["locks"]
        assert (row["name"], row["key"], row["fence"]) == ("account", "42", lease.fence)
        assert row["pid"] == os.getpid() and row["host"] == socket.gethostname()
        assert row["waiters"] == 1 and row["oldest_waiter"].endswith(f":{os.getpid()}")
        assert 0 <= row["held_for"] < 10 and 0 < row["ttl_left"] <= 10
        assert row["oldest_wait"] is not None and row["oldest_wait"] <= row["held_for"]
        assert (data["held"], data["orphans"], data["more"]) == (1, 0, False)

        text = _top(capsys, url, ns, "--once")
        header, columns, line = text.splitlines()
        assert f"namespace {ns}" in header and url in header and "1 held, 1 waiting" in header
        assert columns.split() == [
            "LOCK", "KEY", "FENCE", "HOLDER", "HELD", "TTL", "WAITERS", "OLDEST", "REQUEST",
        ]  # fmt: skip
        cells = line.split()
        assert cells[:4] == ["account", "42", str(lease.fence), f"{row['host']}:{os.getpid()}"]
        assert cells[6] == "1"
    finally:
        lease.release()
        waiter.join(timeout=10)
        waiter_client.close()
    assert waited and waited[0] > lease.fence  # the waiter got it, then released it
    assert _snapshot(capsys, url, ns)["locks"] == []
    assert "0 held, 0 waiting" in _top(capsys, url, ns, "--once")


def test_most_waiters_first_and_queues_without_holder(
    client: Interlock, capsys: pytest.CaptureFixture[str]
) -> None:
    url, ns = client.settings.url, client.namespace
    older = client.lock("orders", "a b/c", ttl=10.0).acquire()
    busy = client.lock("orders", ("eu", 7), ttl=10.0).acquire()
    assert older is not None and busy is not None
    # a queue whose holder just went away (the documented key layout of lock.lock_keys)
    _, _, queue, details = lock_keys(ns, "stock", "sku-9")
    seconds, micros = client.backend.execute("TIME")
    arrived = int(seconds) * 1_000_000 + int(micros) - 2_000_000  # server µs, 2 s ago
    client.backend.execute("ZADD", queue, arrived, "t1", arrived + 1, "t2")
    client.backend.execute("HSET", details, "t1", "9999999999999||10000|elsewhere|77||")
    client.backend.execute("PEXPIRE", queue, 10_000)
    client.backend.execute("PEXPIRE", details, 10_000)

    data = _snapshot(capsys, url, ns)
    names = [(r["name"], r["key"], r["waiters"]) for r in data["locks"]]
    assert names == [("stock", "sku-9", 2), ("orders", "a b/c", 0), ("orders", "eu:7", 0)]
    orphan = data["locks"][0]
    assert orphan["fence"] is None and orphan["host"] is None
    assert orphan["oldest_waiter"] == "elsewhere:77" and 2 <= orphan["oldest_wait"] < 5
    assert (data["held"], data["waiting"], data["orphans"]) == (2, 2, 1)
    text = _top(capsys, url, ns, "--once", "--limit", "1")
    assert "1 queue(s) without holder" in text and "(top 1 of 3)" in text
    assert "(no holder)" in text and "eu:7" not in text
    older.release()
    busy.release()
    client.backend.execute("DEL", queue, details)


def test_cluster_scans_every_master(
    redis_cluster_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ns = _ns()
    with Interlock(redis_cluster_url, namespace=ns) as il:
        leases = [il.lock("account", i, ttl=10.0).acquire() for i in range(12)]
        cluster: Any = il.backend._client  # type: ignore[attr-defined]
        masters = {cluster.get_node_from_key(lock_keys(ns, "account", str(i))[0]).name
                   for i in range(12)}  # fmt: skip
        assert len(masters) == 3  # the keys really are spread over the cluster
        data = _snapshot(capsys, redis_cluster_url, ns)
        shown = {(r["key"], r["fence"]) for r in data["locks"]}
        assert shown == {(str(i), lease.fence) for i, lease in enumerate(leases) if lease}
        for lease in leases:
            assert lease is not None
            lease.release()
    assert _snapshot(capsys, redis_cluster_url, ns)["locks"] == []


def test_mem_shows_this_process_only_and_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    ns = _ns()
    with Interlock("mem://", namespace=ns) as il:
        leases = [il.lock("job", i, ttl=10.0).acquire() for i in range(11)]
        text = _top(capsys, "mem://", ns, "--once", "--limit", "1")
        assert "mem:// is per-process" in text and "(more)" in text
        for lease in leases:
            assert lease is not None
            lease.release()


def test_password_is_never_printed(
    redis_factory: Callable[..., RedisServer], capsys: pytest.CaptureFixture[str]
) -> None:
    # an ACL user with a password; the suite's readiness probe needs the default user open
    server = redis_factory(config={"user": "app on >s3cr3t-pw ~* &* +@all"})
    url = f"redis://app:s3cr3t-pw@127.0.0.1:{server.port}/0"
    ns = _ns()
    with Interlock(url, namespace=ns) as il, il.lock("account", 1, ttl=10.0) as lease:
        out = _top(capsys, url, ns, "--once")
        assert str(lease.fence) in out and "app:***@127.0.0.1" in out
        data = _snapshot(capsys, url, ns)
        assert data["url"] == f"redis://app:***@127.0.0.1:{server.port}/0"
        assert main(["top", "--url", url.replace("s3cr3t-pw", "wr0ng-pw"), "--once"]) == 1
        bad_sentinel = "redis+sentinel://app:s3cr3t-pw@127.0.0.1:x/mymaster"
        assert main(["top", "--url", bad_sentinel, "--once"]) == 2
    captured = capsys.readouterr()
    for secret in ("s3cr3t-pw", "wr0ng-pw"):
        assert secret not in captured.out + captured.err
    assert "interlock top: Redis unavailable" in captured.err
    assert "sentinel address" in captured.err and "app:***@" in captured.err


@pytest.mark.parametrize(
    ("option", "fix"), [("--interval=0", "--interval 1.0"), ("--limit=-3", "--limit 50")]
)
def test_bad_options_exit_2_naming_the_fix(
    option: str, fix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["top", "--url", "mem://", option])
    assert exited.value.code == 2 and fix in capsys.readouterr().err
    assert main(["top", "--url", "mem://", "--namespace", "bad ns", "--once"]) == 2
    assert "namespace='bad ns' is invalid" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://127.0.0.1:99999/0", "port '99999' of host '127.0.0.1'"),
        ("redis://127.0.0.1:6379/abc", "database 'abc'"),
    ],
)
def test_bad_urls_exit_2_naming_the_bad_part(
    url: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["top", "--url", url, "--once"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_a_db_the_server_lacks_exits_1_with_the_fix(
    redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["top", "--url", redis_url.rsplit("/", 1)[0] + "/99", "--once"]) == 1
    assert "the URL selects db 99: the server has 16" in capsys.readouterr().err


def test_backend_down_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["top", "--url", f"redis://127.0.0.1:{free_port()}/0", "--once"]) == 1
    assert "Redis unavailable" in capsys.readouterr().err


def _live(url: str, ns: str, stdout: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "interlock.cli", "top", "--url", url, "--namespace", ns]
    return subprocess.Popen(
        [*command, "--interval", "0.05"],
        stdout=stdout,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )


def _read_until(read: Callable[[], bytes], needle: bytes, count: int) -> bytes:
    seen = b""
    while seen.count(needle) < count:
        chunk = read()
        assert chunk, f"top ended early: {seen!r}"
        seen += chunk
    return seen


def test_live_view_refreshes_from_another_process_until_ctrl_c(client: Interlock) -> None:
    url, ns = client.settings.url, client.namespace
    with client.lock("account", 5, ttl=10.0) as lease:
        piped = _live(url, ns, subprocess.PIPE)  # not a terminal: snapshots, blank lines
        out = piped.stdout
        assert out is not None
        text = _read_until(lambda: out.read1(), b"interlock top", 3)
        piped.send_signal(signal.SIGINT)
        assert piped.wait(timeout=10) == 0
        out.close()
        assert b"\n\ninterlock top" in text and b"\x1b[" not in text
        assert str(lease.fence).encode() in text

        controller, terminal = pty.openpty()  # a terminal: the screen is cleared each time
        shown = _live(url, ns, terminal)
        os.close(terminal)
        try:
            text = _read_until(lambda: os.read(controller, 65536), b"\x1b[H\x1b[2J", 2)
            shown.send_signal(signal.SIGINT)
            assert shown.wait(timeout=10) == 0
        finally:
            os.close(controller)
        assert str(lease.fence).encode() in text


# -- fitting the terminal, and q ---------------------------------------------------------

RID = "e4e4b81ccb23d51cb215372f38da10c8"  # the middleware's generated request ids: 32 hex
LONG_RID = "0b41d2a9-e7f8-4c1f-9a55-0b41d2a9e7f8-req"  # an accepted X-Request-ID: 40


def _rows() -> list[LockRow]:
    return [
        LockRow("account", "42", 1795693690341753, "web-2.prod.example.internal", 4711, 41.2,
                8.4, 3, 39.8, "web-1:1", RID, None),
        LockRow("inventory", "sku-9:warehouse-east-4", 1795693712004518, "worker-3", 212, 0.12,
                29.9, 0, None, None, LONG_RID, None),
        LockRow("stock", "sku-9", None, None, None, None, None, 1, 0.04, "web-1:9", None, None),
    ]  # fmt: skip


@pytest.mark.parametrize("width", [80, 72, 60, 50])
def test_table_fits_the_terminal_and_never_cuts_request_ids(width: int) -> None:
    snap = make_snapshot("shop", "redis://:pw@redis:6379/0", _rows(), 50, False, [])

    text = render(snap, width, "(q quits)")

    lines = text.splitlines()
    assert max(len(line) for line in lines) <= width, text
    assert RID in text and LONG_RID in text, text  # whole: pasteable into Kibana
    titles = next(line for line in lines if line.startswith("LOCK"))
    assert titles.split()[-1] == "REQUEST", text


def test_least_useful_columns_go_first() -> None:
    snap = make_snapshot("shop", "redis://redis:6379/0", _rows()[:1], 50, False, [])

    wide = render(snap)  # a pipe: every column, nothing cut
    at_80 = render(snap, 80)

    assert wide.splitlines()[1].split() == [
        "LOCK", "KEY", "FENCE", "HOLDER", "HELD", "TTL", "WAITERS", "OLDEST", "REQUEST",
    ]  # fmt: skip
    assert "web-2.prod.example.internal:4711" in wide and "1795693690341753" in wide
    titles = next(line for line in at_80.splitlines() if line.startswith("LOCK")).split()
    assert titles == ["LOCK", "KEY", "HOLDER", "HELD", "TTL", "WAITERS", "REQUEST"], at_80
    assert "(hidden to fit: FENCE, OLDEST; --json has all)" in at_80


def test_live_view_fits_an_80_column_terminal_and_q_quits(client: Interlock) -> None:
    url, ns = client.settings.url, client.namespace
    with request_context(request_id=RID), client.lock("account", 7, ttl=10.0):
        controller, terminal = pty.openpty()
        fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        command = [sys.executable, "-m", "interlock.cli", "top", "--url", url, "--namespace", ns]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        env.pop("COLUMNS", None)
        shown = subprocess.Popen(
            [*command, "--interval", "0.05"],
            stdin=terminal, stdout=terminal, stderr=terminal, env=env,
        )  # fmt: skip
        os.close(terminal)
        try:
            seen = _read_until(lambda: os.read(controller, 65536), b"\x1b[H\x1b[2J", 3)
            os.write(controller, b"q")
            assert shown.wait(timeout=5) == 0  # q quits the live view
        finally:
            if shown.poll() is None:
                shown.kill()
                shown.wait(timeout=5)
            os.close(controller)
    frame = seen.decode().split("\x1b[H\x1b[2J")[2]  # a whole frame
    lines = frame.replace("\r\n", "\n").strip("\n").split("\n")
    assert max(len(line) for line in lines) <= 80, frame
    assert RID in frame and "(q quits)" in frame, frame
