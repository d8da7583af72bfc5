"""One round trip on a connection of our own: the hot path of scripts and plain reads.

redis-py's client path (command lookup, retry wrapper, pool bookkeeping with a readiness
check, observability hooks) costs about 20 µs a command on a small VM — several times what a
lock script runs inside Redis. For single-node and Sentinel backends the hot commands are
packed in one go (:func:`~interlock.backends._resp.pack_command`) and sent on a connection
from a free list of redis-py connections built from the client's pool settings, so TLS,
ACL auth, RESP3 and Sentinel master discovery stay redis-py's. Each connection is then used
through a wire (:mod:`interlock.backends._wire`): under asyncio a protocol of our own on the
connection's transport, which skips redis-py's asyncio reads and writes as well.

Discipline: a connection goes back to the free list only after a whole reply was read (a
Redis error reply included). Anything else — timeout, cancellation, broken socket —
disconnects it, so no reply can be left pending for the next caller. A broken connection
also disconnects the idle ones (Redis restarted or failed over: they are stale too) and is
retried once, as the client path retries.
"""

from __future__ import annotations

import os
import time
from contextlib import suppress
from typing import Any

from redis import exceptions as redis_errors
from redis.maint_notifications import MaintNotificationsConfig

from interlock.backends._wire import AsyncWire, async_open_wire

_NO_MAINT = MaintNotificationsConfig(enabled=False)


class AsyncDirect:
    """A free list of connections for single commands (``_sync`` is generated)."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool
        self._idle: list[AsyncWire] = []
        self._pid = os.getpid()
        self._closed = False

    async def _take(self, deadline: float | None) -> AsyncWire:
        if self._pid != os.getpid():  # forked: the parent's sockets are not ours to use
            self._idle = []
            self._pid = os.getpid()
        if self._idle:
            return self._idle.pop()
        pool = self._pool
        # the handshake in one round trip (HELLO): CLIENT MAINT_NOTIFICATIONS (refused by
        # open-source Redis anyway) and two CLIENT SETINFO would each take one more, each
        # under the same timeout, so a caller's deadline could be overrun several times
        options = {
            **pool.connection_kwargs,
            "driver_info": None,
            "maint_notifications_config": _NO_MAINT,
        }
        if deadline is not None:  # connecting (and its handshake) counts against the deadline
            for name in ("socket_connect_timeout", "socket_timeout"):
                options[name] = _bounded(options.get(name), deadline)
        conn = pool.connection_class(**options)
        try:
            # connect() explicitly: a Sentinel connection resolves the master there, while
            # a send on an unconnected one would go to the default address
            await conn.connect()
            if deadline is not None and time.monotonic() >= deadline:  # AUTH, SELECT, ...
                raise redis_errors.TimeoutError("connecting took the whole time left")
            return await async_open_wire(conn, pool.connection_kwargs.get("socket_timeout"))
        except BaseException:
            await conn.disconnect()
            raise

    async def call(
        self, command: bytes, read_timeout: float | None = None, budget: float | None = None
    ) -> Any:
        """Send one packed command and return its reply (redis-py's errors propagate).

        ``read_timeout`` replaces the socket timeout for the reply (blocking commands);
        ``budget`` bounds the whole call — connecting, the reply and the one retry — in
        seconds, so a caller with a deadline (a lock acquire) is never held past it by a
        slow or silent link: the call then fails with redis-py's ``TimeoutError``.
        """
        deadline = None if budget is None else time.monotonic() + budget
        if read_timeout is None:
            read_timeout = self._pool.connection_kwargs.get("socket_timeout")
        retried = False
        while True:
            wire = await self._take(deadline)  # connecting retries once (the pool's Retry)
            try:
                timeout = read_timeout if deadline is None else _bounded(read_timeout, deadline)
                reply = await wire.request(command, timeout)
            except redis_errors.ResponseError:
                await self._put(wire)  # an error reply: the connection is in step
                raise
            except redis_errors.ConnectionError:
                await wire.aclose()
                await self._disconnect_idle()  # Redis restarted or failed over: all stale
                if retried or (deadline is not None and time.monotonic() >= deadline):
                    raise
                retried = True
                continue
            except BaseException:
                await wire.aclose()  # a reply may be pending: never reuse
                raise
            await self._put(wire)
            return reply

    async def _put(self, wire: AsyncWire) -> None:
        if self._closed:
            await wire.aclose()
        elif self._pid == os.getpid():
            self._idle.append(wire)

    async def _disconnect_idle(self) -> None:
        idle, self._idle = self._idle, []
        for wire in idle:
            with suppress(Exception):  # already broken: nothing left to release
                await wire.aclose()

    async def aclose(self) -> None:
        self._closed = True
        await self._disconnect_idle()


def _bounded(timeout: float | None, deadline: float) -> float:
    """``timeout`` cut to the time left before ``deadline`` (at least 1 ms: 0 means none)."""
    left = max(deadline - time.monotonic(), 0.001)
    return left if timeout is None else min(timeout, left)
