"""One round trip on a connection of our own: the hot path of scripts and plain reads.

redis-py's client path (command lookup, retry wrapper, pool bookkeeping with a readiness
check, observability hooks) costs about 20 µs a command on a small VM — several times what a
lock script runs inside Redis. For single-node and Sentinel backends the hot commands are
packed in one go (:func:`~interlock.backends._resp.pack_command`) and sent on a connection
from a free list of redis-py connections built from the client's pool settings, so TLS,
ACL auth, RESP3 and Sentinel master discovery stay redis-py's.

Discipline: a connection goes back to the free list only after a whole reply was read (a
Redis error reply included). Anything else — timeout, cancellation, broken socket —
disconnects it, so no reply can be left pending for the next caller. A broken connection
also disconnects the idle ones (Redis restarted or failed over: they are stale too) and is
retried once, as the client path retries.
"""

from __future__ import annotations

import os
from contextlib import suppress
from typing import Any

from redis import exceptions as redis_errors


class AsyncDirect:
    """A free list of connections for single commands (``_sync`` is generated)."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool
        self._idle: list[Any] = []
        self._pid = os.getpid()
        self._closed = False

    async def _take(self) -> Any:
        if self._pid != os.getpid():  # forked: the parent's sockets are not ours to use
            self._idle = []
            self._pid = os.getpid()
        if self._idle:
            return self._idle.pop()
        pool = self._pool
        conn = pool.connection_class(**pool.connection_kwargs)
        try:
            # connect() explicitly: a Sentinel connection resolves the master there, while
            # a send on an unconnected one would go to the default address
            await conn.connect()
        except BaseException:
            await conn.disconnect()
            raise
        return conn

    async def call(self, command: bytes, read_timeout: float | None = None) -> Any:
        """Send one packed command and return its reply (redis-py's errors propagate).

        ``read_timeout`` replaces the socket timeout for the reply (blocking commands).
        """
        retried = False
        while True:
            conn = await self._take()  # connecting retries once by itself (the pool's Retry)
            try:
                await conn.send_packed_command([command], check_health=False)
                if read_timeout is None:  # (sync redis-py reads None as "no timeout")
                    reply = await conn.read_response()
                else:
                    reply = await conn.read_response(timeout=read_timeout)
            except redis_errors.ResponseError:
                await self._put(conn)  # an error reply: the connection is in step
                raise
            except redis_errors.ConnectionError:
                await conn.disconnect()
                await self._disconnect_idle()  # Redis restarted or failed over: all stale
                if retried:
                    raise
                retried = True
                continue
            except BaseException:
                await conn.disconnect()  # a reply may be pending: never reuse
                raise
            await self._put(conn)
            return reply

    async def _put(self, conn: Any) -> None:
        if self._closed:
            await conn.disconnect()
        elif self._pid == os.getpid():
            self._idle.append(conn)

    async def _disconnect_idle(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            with suppress(Exception):  # already broken: nothing left to release
                await conn.disconnect()

    async def aclose(self) -> None:
        self._closed = True
        await self._disconnect_idle()
