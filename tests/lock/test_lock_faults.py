"""Issue 10 item 5: acquire returns within its timeout + a small slack under network faults.

Every case goes through the real TCP fault proxy (``interlock.chaos._proxy``) to a real
redis-server. Before the fix each round trip was bounded by ``socket_timeout`` (here 2 s),
not by the time left, so a 0.2 s acquire on a blackholed link raised after ~2 s.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from interlock import AsyncInterlock, BackendUnavailable, Interlock, LockTimeout
from interlock.chaos._proxy import FaultProxy
from services import RedisServer

# What the docs promise (docs/locks.md) is <= 50 ms measured on an idle machine; the
# assertion allows for a loaded CI box of 2 cores, still far below socket_timeout (2 s).
SLACK = 0.25
TIMEOUT = 0.3
SOCKET_TIMEOUT = 2.0

FAULTS: dict[str, Callable[[FaultProxy], None]] = {
    "latency": lambda p: p.latency(1.0),
    "stall": FaultProxy.stall,
    "blackhole": FaultProxy.blackhole,
    "partition": lambda p: p.partition(5.0),
}


@pytest.fixture
def proxy(redis_server: RedisServer) -> Iterator[FaultProxy]:
    with FaultProxy("127.0.0.1", redis_server.port) as p:
        yield p


def _url(proxy: FaultProxy) -> str:
    return f"redis://127.0.0.1:{proxy.port}/0"


def _sync_attempt(il: Interlock, key: str, timeout: float) -> tuple[float, BaseException]:
    started = time.monotonic()
    with pytest.raises((LockTimeout, BackendUnavailable)) as info:
        il.lock("faults", key, ttl=5.0, timeout=timeout).acquire()
    return time.monotonic() - started, info.value


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_sync_acquire_is_bounded_by_its_timeout(proxy: FaultProxy, fault: str) -> None:
    il = Interlock(_url(proxy), namespace=f"faults-{fault}", socket_timeout=SOCKET_TIMEOUT)
    try:
        with il.lock("faults", "warm", ttl=5.0):  # a pooled connection exists already
            pass
        FAULTS[fault](proxy)
        elapsed, _ = _sync_attempt(il, "k", TIMEOUT)
        assert elapsed <= TIMEOUT + SLACK, f"{fault}: acquire took {elapsed:.3f} s"
    finally:
        proxy.clear()
        il.close()


def test_sync_contended_acquire_is_bounded_when_the_link_stalls(proxy: FaultProxy) -> None:
    """Queued behind a holder, then the link stalls: the wait still ends on time."""
    holder = Interlock(_url(proxy), namespace="faults-queue", socket_timeout=SOCKET_TIMEOUT)
    waiter = Interlock(_url(proxy), namespace="faults-queue", socket_timeout=SOCKET_TIMEOUT)
    try:
        lease = holder.lock("faults", "q", ttl=5.0).acquire()
        assert lease is not None
        proxy.latency(0.15)  # every round trip is slow but alive
        elapsed, error = _sync_attempt(waiter, "q", TIMEOUT)
        assert elapsed <= TIMEOUT + SLACK + 0.15, f"took {elapsed:.3f} s ({error!r})"
    finally:
        proxy.clear()
        holder.close()
        waiter.close()


@pytest.mark.anyio
@pytest.mark.parametrize("fault", sorted(FAULTS))
async def test_async_acquire_is_bounded_by_its_timeout(proxy: FaultProxy, fault: str) -> None:
    async def main() -> float:
        ail = AsyncInterlock(
            _url(proxy), namespace=f"afaults-{fault}", socket_timeout=SOCKET_TIMEOUT
        )
        try:
            async with ail.lock("faults", "warm", ttl=5.0):
                pass
            FAULTS[fault](proxy)
            started = time.monotonic()
            with pytest.raises((LockTimeout, BackendUnavailable)):
                await ail.lock("faults", "k", ttl=5.0, timeout=TIMEOUT).acquire()
            return time.monotonic() - started
        finally:
            proxy.clear()
            await ail.aclose()

    elapsed = await main()
    assert elapsed <= TIMEOUT + SLACK, f"{fault}: async acquire took {elapsed:.3f} s"


def test_a_timed_out_connection_is_not_reused(proxy: FaultProxy) -> None:
    """A reply that arrives after its caller gave up must never answer the next command."""
    il = Interlock(_url(proxy), namespace="faults-late", socket_timeout=SOCKET_TIMEOUT)
    try:
        proxy.latency(0.5)
        _sync_attempt(il, "late", 0.1)
        proxy.clear()
        with il.lock("faults", "other", ttl=5.0, timeout=1.0) as lease:
            assert lease.fence >= 1
            info = il.lock_info("faults", "other")
            assert info is not None and info.fence == lease.fence
    finally:
        proxy.clear()
        il.close()


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_cold_contended_acquire_under_latency_ends_on_time(
    redis_server: RedisServer, kind: str
) -> None:
    """A waiter with no pooled connection, behind a holder, on a slow link. Before the fix
    it overran by up to 1.16 s: the connection handshake took four round trips (HELLO,
    CLIENT MAINT_NOTIFICATIONS, two CLIENT SETINFO) each under the same timeout, the
    pause after a slow attempt used the time left *before* it, and the final cancel got
    its own 50 ms floor on top of the last attempt's."""
    holder = Interlock(redis_server.url, namespace=f"cold-{kind}")
    lease = holder.lock("faults", "c", ttl=30.0).acquire()
    assert lease is not None
    overruns: list[tuple[float, float, float]] = []
    with FaultProxy("127.0.0.1", redis_server.port) as proxy:
        for latency in (0.05, 0.1, 0.2):
            proxy.latency(latency)
            for timeout in (0.2, 0.5, 1.0):
                url = _url(proxy)
                started = time.monotonic()
                if kind == "sync":
                    il = Interlock(url, namespace=f"cold-{kind}", socket_timeout=SOCKET_TIMEOUT)
                    with pytest.raises((LockTimeout, BackendUnavailable)):
                        il.lock("faults", "c", ttl=5.0, timeout=timeout).acquire()
                    elapsed = time.monotonic() - started
                    il.close()
                else:
                    elapsed = await _cold_async(url, kind, timeout)
                overruns.append((elapsed - timeout, latency, timeout))
    lease.release()
    holder.close()
    print("worst overruns (s, latency, timeout):", sorted(overruns)[-3:])
    assert max(overruns)[0] <= 0.1, sorted(overruns)[-3:]


async def _cold_async(url: str, kind: str, timeout: float) -> float:
    ail = AsyncInterlock(url, namespace=f"cold-{kind}", socket_timeout=SOCKET_TIMEOUT)
    started = time.monotonic()
    try:
        with pytest.raises((LockTimeout, BackendUnavailable)):
            await ail.lock("faults", "c", ttl=5.0, timeout=timeout).acquire()
        return time.monotonic() - started
    finally:
        await ail.aclose()
