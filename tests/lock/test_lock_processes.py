"""Locks across real processes: exclusion, a paused holder, Redis dying under a waiter."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import redis

from interlock import BackendUnavailable, Interlock, LockLost, LockTimeout

WORKER = str(Path(__file__).with_name("_lock_worker.py"))


def spawn(*args: str, stdin: int | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, WORKER, *args],
        stdin=stdin,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )


def test_mutual_exclusion_across_processes(redis_url: str) -> None:
    namespace = f"mx{uuid.uuid4().hex[:8]}"
    counter = f"{namespace}:counter"
    workers = [spawn("count", redis_url, namespace, counter, "250") for _ in range(4)]
    for worker in workers:
        with worker:
            assert worker.wait(timeout=120) == 0
    with redis.Redis.from_url(redis_url) as raw:
        assert int(raw.get(counter) or 0) == 1000


def test_paused_holder_loses_lease_and_its_fenced_write_is_rejected(redis_url: str) -> None:
    namespace = f"ph{uuid.uuid4().hex[:8]}"
    holder = spawn("pause", redis_url, namespace, stdin=subprocess.PIPE)
    assert holder.stdout is not None and holder.stdin is not None
    first = json.loads(holder.stdout.readline())
    os.kill(holder.pid, signal.SIGSTOP)
    try:
        il = Interlock(redis_url, namespace=namespace)
        started = time.monotonic()
        with il.lock("doc", 1, timeout=5.0) as lease:  # waits out the frozen holder's TTL
            assert time.monotonic() - started < 3.0
            assert lease.fence > first["fence"]
            il.fenced_set("doc-1", b"second", lease.fence)
    finally:
        os.kill(holder.pid, signal.SIGCONT)
    with holder:
        holder.stdin.write("go\n")
        holder.stdin.flush()
        outcome = json.loads(holder.stdout.readline())
        assert holder.wait(timeout=10) == 0
    assert outcome["check"].startswith("lost")
    assert outcome["write"] == "rejected"
    assert il.fenced_get("doc-1") == (b"second", lease.fence)
    il.close()


def test_redis_killed_while_waiting_then_back(fresh_redis) -> None:  # type: ignore[no-untyped-def]
    namespace = f"rk{uuid.uuid4().hex[:8]}"
    holder_client = Interlock(fresh_redis.url, namespace=namespace, socket_timeout=0.5)
    waiter_client = Interlock(fresh_redis.url, namespace=namespace, socket_timeout=0.5)
    holder = holder_client.lock("acct", 1, ttl=5.0).acquire()
    assert holder is not None
    outcome: list[tuple[type[BaseException], float]] = []

    def wait() -> None:
        started = time.monotonic()
        try:
            waiter_client.lock("acct", 1, timeout=3.0).acquire()
        except (BackendUnavailable, LockTimeout) as exc:
            outcome.append((type(exc), time.monotonic() - started))

    thread = threading.Thread(target=wait)
    thread.start()
    deadline = time.monotonic() + 5
    while not waiter_client.registry.get_sample_value(  # type: ignore[union-attr]
        "interlock_lock_waiting", {"lock": "acct"}
    ):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    fresh_redis.kill()
    thread.join(10)
    assert outcome, "the waiter must give up, not hang"
    assert outcome[0][1] < 4.5
    fresh_redis.start()
    # the same clients work again without a restart; the old lease died with Redis' memory
    with pytest.raises(LockLost):
        holder.release()
    with waiter_client.lock("acct", 1, timeout=5.0) as lease:
        assert lease.fence > 0
    with holder_client.lock("acct", 1, timeout=5.0) as lease:
        assert lease.fence > 0
    holder_client.close()
    waiter_client.close()
