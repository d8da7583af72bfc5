"""Redis Sentinel: locks and cache through ``redis+sentinel://``, and a real failover.

The failover tests use a private master + replica + sentinel (``down-after-milliseconds
1000``). Bound: from SIGKILL of the master, the same client works again on the promoted
replica within ``FAILOVER_BOUND`` seconds (measured ~2.6 s here); in between, every lock call
fails closed with ``BackendUnavailable`` within ``CALL_BOUND`` seconds, never hangs.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from _services import RedisSentinel, redis_command
from interlock import AsyncInterlock, BackendUnavailable, ConfigError, Interlock

FAILOVER_BOUND = 15.0  # seconds from killing the master to the first successful lock
CALL_BOUND = 2.5  # seconds any single call may take while there is no master


@pytest.fixture
def sentinel() -> Iterator[RedisSentinel]:
    """A private master/replica/sentinel that a test may fail over."""
    with RedisSentinel() as service:
        yield service


def _client(url: str) -> Interlock:
    return Interlock(url, namespace=f"s{uuid.uuid4().hex[:8]}", socket_timeout=0.5,
                     connect_timeout=0.5)


def test_locks_and_cache_through_sentinel(redis_sentinel_url: str) -> None:
    il = Interlock(redis_sentinel_url, namespace=f"s{uuid.uuid4().hex[:8]}")
    other = Interlock(redis_sentinel_url, namespace=il.namespace)
    try:
        with il.lock("account", 1) as lease:
            info = other.lock_info("account", 1)
            assert info is not None and info.fence == lease.fence
            assert other.lock("account", 1, timeout=0.2).acquire(blocking=False) is None
        products = il.cache("products", ttl=30.0)
        assert products.get_or_load(7, lambda: {"id": 7}) == {"id": 7}
        assert other.cache("products", ttl=30.0).get(7) == {"id": 7}
    finally:
        il.close()
        other.close()


def test_async_locks_through_sentinel(redis_sentinel_url: str) -> None:
    async def main() -> None:
        ail = AsyncInterlock(redis_sentinel_url, namespace=f"s{uuid.uuid4().hex[:8]}")
        try:
            async with ail.lock("account", 1) as lease:
                info = await ail.lock_info("account", 1)
                assert info is not None and info.fence == lease.fence
        finally:
            await ail.aclose()

    asyncio.run(main())


def test_waiter_is_woken_on_the_master(redis_sentinel_url: str) -> None:
    il = _client(redis_sentinel_url)
    try:
        _assert_handoff(il)
    finally:
        il.close()


def _assert_handoff(il: Interlock) -> None:
    """A waiter is handed the lock on release quickly (its signal list), not by TTL timeout."""
    key = uuid.uuid4().hex
    lease = il.lock("handoff", key, ttl=30.0).acquire()
    assert lease is not None
    got: list[float] = []

    def wait() -> None:
        with il.lock("handoff", key, ttl=30.0, timeout=10.0):
            got.append(time.monotonic())

    thread = threading.Thread(target=wait, name="waiter")
    thread.start()
    time.sleep(0.5)  # the waiter is queued
    released = time.monotonic()
    lease.release()
    thread.join(12)
    assert got, "waiter never got the lock"
    assert got[0] - released < 2.0


@pytest.mark.parametrize("how", ["kill", "sentinel-failover"])
def test_failover_same_client_recovers_and_fails_closed_meanwhile(
    sentinel: RedisSentinel, how: str
) -> None:
    il = _client(sentinel.url)
    try:
        with il.lock("account", 1):
            pass
        _assert_handoff(il)
        heard: list[bytes] = []
        il.backend.subscribe("failover-probe", heard.append)  # pub/sub on the first master
        old = sentinel.master_port()
        started = time.monotonic()
        if how == "kill":
            sentinel.kill_master()
        else:
            assert sentinel.sentinel_command("SENTINEL", "FAILOVER", sentinel.service) == "OK"
        failures = 0
        attempt = 0
        while True:
            attempt += 1
            call = time.monotonic()
            try:
                lease = il.lock("account", f"k{attempt}", timeout=0.5).acquire()
            except BackendUnavailable:
                failures += 1
                lease = None
            assert time.monotonic() - call < CALL_BOUND, "a lock call hung during failover"
            if lease is not None:
                lease.release()
                if sentinel.master_port() != old:  # SENTINEL FAILOVER answers before it acts
                    break
            assert time.monotonic() - started < FAILOVER_BOUND, "no recovery after failover"
            time.sleep(0.1)
        recovered = time.monotonic() - started
        new = sentinel.wait_failover(old, timeout=5.0)
        assert new != old
        print(f"\n{how}: recovered after {recovered:.2f} s, {failures} BackendUnavailable")
        if how == "kill":
            assert failures > 0  # there was no master for a while: calls failed closed
        # hand-off still works, and the pub/sub listener followed the master to `new` (a
        # demoted master keeps its clients: the listener moves when commands see READONLY)
        _assert_handoff(il)
        deadline = time.monotonic() + 5.0
        while not heard and time.monotonic() < deadline:
            redis_command(new, "PUBLISH", "failover-probe", "after")
            time.sleep(0.1)
        assert heard, f"no pub/sub message from the new master {new}"
    finally:
        il.close()


def test_unknown_service_name_fails_closed_with_a_clear_message(
    redis_sentinel: RedisSentinel,
) -> None:
    url = redis_sentinel.url.replace(f"/{redis_sentinel.service}/", "/no-such-service/")
    il = _client(url)
    try:
        started = time.monotonic()
        with pytest.raises(BackendUnavailable, match="No master found for 'no-such-service'"):
            il.lock("account", 1).acquire()
        assert time.monotonic() - started < CALL_BOUND
    finally:
        il.close()


def test_unreachable_sentinels_fail_fast() -> None:
    il = _client("redis+sentinel://127.0.0.1:1,127.0.0.1:2/mymaster")
    try:
        started = time.monotonic()
        with pytest.raises(BackendUnavailable, match="sentinel"):
            il.lock("account", 1).acquire()
        assert time.monotonic() - started < CALL_BOUND
    finally:
        il.close()


@pytest.mark.parametrize(
    ("url", "fix"),
    [
        ("redis+sentinel://127.0.0.1:26379", "names no Sentinel service"),
        ("redis+sentinel://127.0.0.1:26379/", "redis\\+sentinel://"),
        ("redis+sentinel://127.0.0.1/mymaster", "host:port"),
        ("redis+sentinel://127.0.0.1:26379/mymaster/x", "numeric db"),
        ("rediss+sentinel://127.0.0.1:26379/mymaster/0?ssl=1", "query options"),
    ],
)
def test_bad_sentinel_urls_name_the_fix(url: str, fix: str) -> None:
    with pytest.raises(ConfigError, match=fix):
        Interlock(url)
