"""A Redis restart under a held lock (issue 10 item 4): no two holders, with or without AOF.

Without persistence a restart forgets every lock. The old holder must stop believing in its
lease before the restarted server grants the lock to anyone else: the server refuses fresh
grants for ``RESTART_GRACE_S`` after it starts, and every holder re-checks its leases as soon
as its pub/sub connection is back (reason ``restart`` when the server's run_id changed).
With AOF (``appendfsync always``) the lease survives the restart and is not declared lost.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from interlock import Interlock, LockTimeout
from interlock.lock import RESTART_GRACE_S
from services import RedisServer

WORKER = str(Path(__file__).with_name("_lock_worker.py"))


def read(proc: subprocess.Popen[str], timeout: float = 30.0) -> dict[str, Any]:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, f"worker {proc.args} said nothing for {timeout}s"
    line = proc.stdout.readline()
    assert line, f"worker {proc.args} exited with {proc.wait(5)}"
    return json.loads(line)  # type: ignore[no-any-return]


@pytest.fixture
def holder() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []

    def spawn(*args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, WORKER, "hold-check", *args],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
        started.append(proc)
        return proc

    yield spawn
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        assert proc.stdout is not None
        proc.stdout.close()


def restart(server: RedisServer) -> None:
    server.kill()
    server.start()


@pytest.mark.parametrize("kind", ["sync", "async", "no-renew"])
def test_restart_without_persistence_never_gives_two_holders(
    fresh_redis: RedisServer, holder: Callable[..., subprocess.Popen[str]], kind: str
) -> None:
    namespace = f"rs{uuid.uuid4().hex[:8]}"
    old = holder(fresh_redis.url, namespace, kind)
    old_fence = read(old)["fence"]
    il = Interlock(fresh_redis.url, namespace=namespace, socket_timeout=0.5)
    restart(fresh_redis)
    restarted = time.time()
    lease = il.lock("restart", 1, ttl=6.0, timeout=10.0).acquire()
    assert lease is not None
    granted_at = lease.fence / 1e6  # no fence counter after the restart: server time, in µs
    lost = read(old)
    print(
        f"{kind}: old holder lost its lease {(lost['lost_at'] - restarted) * 1000:.0f} ms "
        f"after the restart, the new grant came {(granted_at - restarted) * 1000:.0f} ms after"
    )
    assert lost["reason"] == "restart"
    assert lost["lost_at"] < granted_at, "two holders at once"
    assert lease.fence > old_fence  # fences stay monotonic across the restart
    assert granted_at - restarted < RESTART_GRACE_S + 1.0
    lease.release()
    il.close()


def test_restart_with_aof_keeps_the_lease(
    redis_factory: Callable[..., RedisServer], holder: Callable[..., subprocess.Popen[str]]
) -> None:
    server = redis_factory(config={"appendonly": "yes", "appendfsync": "always"})
    namespace = f"ra{uuid.uuid4().hex[:8]}"
    old = holder(server.url, namespace, "sync")
    old_fence = read(old)["fence"]
    restart(server)
    il = Interlock(server.url, namespace=namespace, socket_timeout=0.5)
    with pytest.raises(LockTimeout):  # the restored lock is still held
        il.lock("restart", 1, ttl=6.0, timeout=1.0).acquire()
    assert old.stdout is not None
    assert not select.select([old.stdout], [], [], 0)[0], "the old holder declared it lost"
    old.kill()
    old.wait(10)
    with il.lock("restart", 1, ttl=6.0, timeout=10.0) as lease:  # lapses after its ttl
        assert lease.fence > old_fence
    il.close()
