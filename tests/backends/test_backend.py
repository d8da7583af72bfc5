"""Backends against real Redis: outages, hangs, TLS with ACL users, and quiet waiting."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from _waits import aqueued, queued
from interlock import AsyncInterlock, BackendUnavailable, Interlock, LockTimeout
from services import RedisServer, free_port, make_tls


def test_redis_down_fails_fast_with_backend_unavailable() -> None:
    il = Interlock(f"redis://127.0.0.1:{free_port()}/0", connect_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(BackendUnavailable):
        il.lock("account", 1).acquire()
    assert time.monotonic() - started < 1.5
    il.close()


def test_unreachable_cluster_fails_fast_with_backend_unavailable() -> None:
    il = Interlock(
        f"redis+cluster://127.0.0.1:{free_port()},127.0.0.1:{free_port()}", connect_timeout=0.5
    )
    started = time.monotonic()
    with pytest.raises(BackendUnavailable):
        il.lock("account", 1).acquire()
    with pytest.raises(BackendUnavailable):
        il.backend.execute("GET", "k")
    assert time.monotonic() - started < 3.0
    il.close()


def test_hung_redis_times_out_then_recovers(fresh_redis: RedisServer) -> None:
    il = Interlock(fresh_redis.url, namespace="hang", socket_timeout=0.3)
    with il.lock("account", 1):
        pass
    fresh_redis.pause()
    try:
        started = time.monotonic()
        with pytest.raises(BackendUnavailable):
            il.lock("account", 2).acquire()
        assert time.monotonic() - started < 1.5
    finally:
        fresh_redis.resume()
    with il.lock("account", 3) as lease:
        assert lease.fence > 0
    il.close()


def test_rediss_with_acl_user_in_url(
    redis_factory: Callable[..., RedisServer], tmp_path: Path
) -> None:
    tls = make_tls(tmp_path)
    tls_port = free_port()
    server = redis_factory(
        config={
            "tls-port": str(tls_port),
            "tls-cert-file": tls["cert"],
            "tls-key-file": tls["key"],
            "tls-ca-cert-file": tls["ca"],
            "tls-auth-clients": "no",
            "user": "app on >s3cret ~* &* +@all",
        }
    )
    assert server.running
    url = f"rediss://app:s3cret@127.0.0.1:{tls_port}/0?ssl_ca_certs={tls['ca']}"
    il = Interlock(url, namespace="tls")
    with il.lock("account", 1) as lease:
        info = il.lock_info("account", 1)
        assert info is not None and info.fence == lease.fence
    il.close()
    wrong = Interlock(url.replace("s3cret", "wrong"), namespace="tls")
    with pytest.raises(BackendUnavailable):
        wrong.lock("account", 1).acquire()
    wrong.close()


def _calls(server: RedisServer, command: str) -> int:
    stats = server.command("INFO", "commandstats")
    for line in str(stats).splitlines():
        if line.startswith(f"cmdstat_{command}:"):
            return int(line.split("calls=")[1].split(",")[0])
    return 0


def _evalsha_calls(server: RedisServer) -> int:
    return _calls(server, "evalsha")


def test_waiting_costs_no_commands_per_unit_of_time(fresh_redis: RedisServer) -> None:
    namespace = f"q{uuid.uuid4().hex[:8]}"
    holder = Interlock(fresh_redis.url, namespace=namespace)
    waiter = Interlock(fresh_redis.url, namespace=namespace)
    lease = holder.lock("account", 1, ttl=30.0).acquire()
    assert lease is not None
    deadline = time.monotonic() + 5  # its first lease is re-checked once it subscribed
    while not holder.locks.watching:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    before, pops = _evalsha_calls(fresh_redis), _calls(fresh_redis, "blpop")
    errors: list[LockTimeout] = []
    thread = threading.Thread(
        target=lambda: _expect_timeout(waiter, errors), name="waiter"
    )
    thread.start()
    thread.join(10)
    assert len(errors) == 1
    # the queued attempt, one BLPOP on its signal list for the 2 s, and leaving the queue
    assert _evalsha_calls(fresh_redis) - before <= 2
    assert _calls(fresh_redis, "blpop") - pops == 1
    lease.release()
    holder.close()
    waiter.close()


def _expect_timeout(il: Interlock, errors: list[LockTimeout]) -> None:
    try:
        il.lock("account", 1, timeout=2.0).acquire()
    except LockTimeout as exc:
        errors.append(exc)


def test_blocking_and_asyncio_waiters_share_one_fifo_queue(fresh_redis: RedisServer) -> None:
    """A thread waits on its signal list, a task on pub/sub: both are handed the lock, in order."""
    namespace = f"m{uuid.uuid4().hex[:8]}"
    holder = Interlock(fresh_redis.url, namespace=namespace)
    lease = holder.lock("account", 1).acquire()
    assert lease is not None
    order: list[str] = []

    def blocking() -> None:
        il = Interlock(fresh_redis.url, namespace=namespace)
        with il.lock("account", 1, timeout=10.0):
            order.append("thread")
            time.sleep(0.05)
        il.close()

    async def task() -> None:
        ail = AsyncInterlock(fresh_redis.url, namespace=namespace)
        await aqueued(ail, "account", 1)  # queue behind the thread
        async with ail.lock("account", 1, timeout=10.0):
            order.append("task")
        await ail.aclose()

    thread = threading.Thread(target=blocking, name="blocking-waiter")
    thread.start()
    # a loop of its own in a second thread, on purpose: a blocking and an asyncio waiter at once
    runner = threading.Thread(target=lambda: asyncio.run(task()), name="asyncio-waiter")
    runner.start()
    queued(holder, "account", 1, count=2)  # the thread, then the task
    released = time.monotonic()
    lease.release()
    thread.join(10)
    runner.join(10)
    assert order == ["thread", "task"]
    assert time.monotonic() - released < 2.0  # hand-offs, not TTL expiry (30 s)
    holder.close()
