"""The direct hot path (scripts and GETs on connections of interlock's own, see
``_async/backend/direct.py``): same bytes as redis-py, and never a reply read by the wrong call.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid

import pytest
import redis.connection

from interlock import AsyncInterlock, BackendUnavailable, Interlock
from interlock.backends._resp import pack_command, pack_script_call
from interlock.backends._script import Arg, Script
from services import RedisSentinel, RedisServer, redis_command

ECHO = Script("echo", "return ARGV[1]")
# Busy for ARGV[1] ms of server time, then answer ARGV[2] (Redis runs one script at a time).
SLOW = Script(
    "slow",
    "local t = redis.call('TIME') local stop = t[1] * 1000000 + t[2] + ARGV[1] * 1000 "
    "repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] >= stop return ARGV[2]",
)
SET = Script("set", "return redis.call('SET', KEYS[1], ARGV[1])")


@pytest.mark.parametrize(
    "parts",
    [
        ("EVALSHA", "a" * 40, 2, "k:{x}:h", "k:{x}:q", "token", 30000, "host|1|rid|tid"),
        ("GET", "caf\u00e9 \U0001f600"),
        ("SET", b"\r\n\x00\xff", b"", ""),
        ("X", 0, -1, 2**63, -(2**70), 1.5, -0.0, 1e-300, 123456789.123),
    ],
)
def test_packing_matches_redis_py(parts: tuple[Arg, ...]) -> None:
    assert pack_command(parts) == b"".join(redis.connection.Connection().pack_command(*parts))


@pytest.mark.parametrize("keys", [[], ["k:{x}"], ["k:{x}", "k:{x}:q", "caf\u00e9"]])
def test_script_calls_pack_as_one_command(keys: list[str]) -> None:
    args: list[Arg] = ["token", 30000, b"\x00", 1.5, ""]
    for _ in range(2):  # the second call reuses the packed prefix
        packed = pack_script_call("EVALSHA", "a" * 40, keys, args)
        assert packed == pack_command(("EVALSHA", "a" * 40, len(keys), *keys, *args))


def test_packing_refuses_what_redis_py_refuses() -> None:
    with pytest.raises(TypeError, match="bool"):
        pack_command(("SET", "k", True))
    with pytest.raises(TypeError, match="NoneType"):
        pack_command(("SET", "k", None))  # type: ignore[arg-type]


def test_a_timed_out_reply_is_never_read_by_the_next_call(fresh_redis: RedisServer) -> None:
    il = Interlock(fresh_redis.url, namespace="direct", socket_timeout=0.2)
    try:
        assert il.backend.run(ECHO, [], ["warm"]) == b"warm"  # one idle connection now
        with pytest.raises(BackendUnavailable):
            il.backend.run(SLOW, [], [400, "late"])
        # another connection is answered once the script is done (Redis runs one command at
        # a time): the late reply has been sent by then, on the abandoned connection
        assert fresh_redis.command("PING") == "PONG"
        for n in range(5):
            assert il.backend.run(ECHO, [], [f"mine-{n}"]) == f"mine-{n}".encode()
    finally:
        il.close()


@pytest.mark.anyio
async def test_a_cancelled_call_leaves_no_reply_behind(fresh_redis: RedisServer) -> None:
    ail = AsyncInterlock(fresh_redis.url, namespace="direct")
    try:
        assert await ail.backend.run(ECHO, [], ["warm"]) == b"warm"
        slow = asyncio.ensure_future(ail.backend.run(SLOW, [], [300, "late"]))
        await asyncio.sleep(0.05)
        slow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await slow
        assert fresh_redis.command("PING") == "PONG"  # the script is done: its reply was sent
        replies = await asyncio.gather(
            *(ail.backend.run(ECHO, [], [f"mine-{n}"]) for n in range(5))
        )
        assert replies == [f"mine-{n}".encode() for n in range(5)]
    finally:
        await ail.aclose()


def test_a_forked_child_never_shares_the_parents_connections(redis_url: str) -> None:
    il = Interlock(redis_url, namespace="direct")
    assert il.backend.run(ECHO, [], ["warm"]) == b"warm"  # the parent holds an idle connection
    pid = os.fork()
    if pid == 0:  # child: any reply meant for the parent would fail the comparison
        ok = all(il.backend.run(ECHO, [], [f"c{n}"]) == f"c{n}".encode() for n in range(300))
        os._exit(0 if ok else 1)
    try:
        for n in range(300):
            assert il.backend.run(ECHO, [], [f"p{n}"]) == f"p{n}".encode()
    finally:
        _, status = os.waitpid(pid, 0)
        il.close()
    assert os.waitstatus_to_exitcode(status) == 0


def test_sentinel_commands_reach_the_master(redis_sentinel: RedisSentinel) -> None:
    il = Interlock(redis_sentinel.url, namespace="direct")
    key, value = f"direct:{uuid.uuid4().hex}", uuid.uuid4().hex
    try:
        assert il.backend.run(SET, [key], [value]) in (b"OK", "OK", True)
        assert il.backend.execute("GET", key) == value.encode()
    finally:
        il.close()
    assert redis_sentinel.master is not None
    assert redis_command(redis_sentinel.master.port, "GET", key) == value


@pytest.mark.anyio
async def test_each_asyncio_call_keeps_its_own_time_limit(fresh_redis: RedisServer) -> None:
    ail = AsyncInterlock(fresh_redis.url, namespace="direct", socket_timeout=0.5)
    try:
        assert await ail.backend.run(ECHO, [], ["warm"]) == b"warm"  # under the 0.5 s timeout
        started = time.monotonic()
        with pytest.raises(BackendUnavailable):  # a shorter bound than the previous call's
            await ail.backend.run(SLOW, [], [300, "late"], budget=0.1)
        assert 0.09 <= time.monotonic() - started < 0.25
        started = time.monotonic()  # then a longer one than that: not cut to the old bound
        assert await ail.backend.run(SLOW, [], [200, "in time"]) == b"in time"
        assert time.monotonic() - started >= 0.19
        started = time.monotonic()
        with pytest.raises(BackendUnavailable):  # and the socket timeout still applies
            await ail.backend.run(SLOW, [], [800, "late"])
        assert 0.45 <= time.monotonic() - started < 0.7
    finally:
        await ail.aclose()
