"""Issue 10 items 1 and 2: a lease's life — born with its TTL, renewed in time for short TTLs.

1. A waiter that got the lock after a long wait used to be handed a lease born lost: its
   local deadline counted from the start of the acquire call (1.5 s ago for a 1 s TTL), so
   ``check()`` raised ``LockLost("expired")`` while Redis showed it as the holder. The
   deadline now counts from the last command the grant cannot precede.
2. The renewer slept up to 1 s and was not woken for a new lease, so TTLs below ~1 s were
   lost (ttl 0.6 s: 4 of 5 holds). Each lease is now renewed at its own ttl/3, and TTLs the
   renewer cannot serve are refused when the lock is made.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import time
from collections.abc import Iterator

import pytest
from tests.lock.test_lock_processes import spawn

from interlock import AsyncInterlock, ConfigError, Interlock


@contextlib.contextmanager
def _holder(url: str, namespace: str, ttl: float, seconds: float) -> Iterator[int]:
    """A real process holding ("long", 1); yields its fence once it has the lock."""
    proc = spawn("hold", url, namespace, str(ttl), str(seconds))
    assert proc.stdout is not None
    try:
        line = proc.stdout.readline()  # the holder has the lock from here on
        assert line, "holder process died before taking the lock"
        yield int(json.loads(line)["fence"])
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        proc.stdout.close()


def test_lease_handed_over_after_a_long_wait_is_valid(redis_url: str) -> None:
    with (
        _holder(redis_url, "born-lost", ttl=1.0, seconds=1.5) as holder_fence,
        Interlock(redis_url, namespace="born-lost") as il,
    ):
        lease = il.lock("long", 1, ttl=1.0, timeout=10.0).acquire()
        assert lease is not None and lease.fence > holder_fence
        assert lease.wait > 1.0  # it really waited longer than its TTL
        lease.check()  # failed before the fix: LockLost("expired") at birth
        info = il.lock_info("long", 1)
        assert info is not None and info.fence == lease.fence
        lease.release()  # raised LockLost before the fix


@pytest.mark.anyio
async def test_async_lease_handed_over_after_a_long_wait_is_valid(redis_url: str) -> None:
    async def main(holder_fence: int) -> None:
        async with AsyncInterlock(redis_url, namespace="born-lost-a") as ail:
            lease = await ail.lock("long", 1, ttl=1.0, timeout=10.0).acquire()
            assert lease is not None and lease.fence > holder_fence
            assert lease.wait > 1.0
            lease.check()
            await lease.release()

    with _holder(redis_url, "born-lost-a", ttl=1.0, seconds=1.5) as holder_fence:
        await main(holder_fence)


@pytest.mark.parametrize("ttl", [0.3, 0.6, 1.2])
def test_short_ttls_are_renewed_in_time(redis_url: str, ttl: float) -> None:
    with (
        Interlock(redis_url, namespace=f"renew-{ttl}") as il,
        il.lock("background", 0, ttl=30.0),  # the renewer now sleeps a long pause
    ):
        for round_ in range(3):
            with il.lock("short", round_, ttl=ttl) as lease:
                time.sleep(ttl * 3)  # held for three TTLs: only renewals keep it
                lease.check()
                info = il.lock_info("short", round_)
                assert info is not None and info.fence == lease.fence


@pytest.mark.anyio
@pytest.mark.parametrize("ttl", [0.3, 0.6])
async def test_async_short_ttls_are_renewed_in_time(redis_url: str, ttl: float) -> None:
    async with (
        AsyncInterlock(redis_url, namespace=f"arenew-{ttl}") as ail,
        ail.lock("background", 0, ttl=30.0),
    ):
        for round_ in range(3):
            async with ail.lock("short", round_, ttl=ttl) as lease:
                await asyncio.sleep(ttl * 3)
                lease.check()


def test_ttl_too_short_to_renew_is_refused_with_the_fix() -> None:
    with Interlock("mem://renew-min") as il:
        with pytest.raises(ConfigError, match=r"ttl >= 0.3.*auto_renew=False"):
            il.lock("short", 1, ttl=0.1)
        lease = il.lock("short", 1, ttl=0.1, auto_renew=False).acquire()
        assert lease is not None
        lease.release()
