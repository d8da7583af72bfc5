"""One request and its reply on a connection of the direct path: where sync and asyncio differ.

``_async/backend/direct.py`` opens an :class:`AsyncWire` on each redis-py connection it has
set up (TLS, AUTH/ACL, RESP3 ``HELLO``, ``SELECT``, Sentinel's master discovery: all
redis-py's); its generated sync twin opens a :class:`Wire`. Both have one method that
matters, ``request(payload, timeout)``: write one packed command, return its whole reply,
or raise redis-py's ``TimeoutError`` when it does not come in time (the connection must then
be closed: the late reply is still on its way), ``ConnectionError`` when the link broke, or
the ``ResponseError`` (``NoScriptError``, ...) that Redis answered (the connection is in step).

Why the asyncio side is its own: redis-py's asyncio connection writes through
``asyncio.wait_for`` (a task per write on Python 3.11), reads through a ``StreamReader``
(a copy and a wake-up per chunk) inside ``asyncio.timeout``, and each of those costs event
loop iterations; that was a third of an uncontended lock cycle. :class:`AsyncWire` takes the
connection's transport over once redis-py has connected it (``transport.set_protocol``):
the payload goes to the transport in one write, hiredis parses what ``data_received`` gets,
the whole reply resolves one future, and the wire's one timer bounds the wait. Closing goes through
redis-py (``disconnect()``); the connection's stream protocol is still told when the
transport is gone, so redis-py's close completes as before.

The sync side stays redis-py's connection: its client path was the cost there, not its
socket reads (``read_response(timeout=...)`` raises on time-outs).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from typing import Any

import hiredis
from redis import exceptions as redis_errors
from redis._parsers.base import BaseParser

__all__ = ["AsyncWire", "Wire", "async_open_wire", "open_wire"]

_NOT_ENOUGH_DATA = object()
_EARLY = 0.0005  # seconds a timer may fire before its deadline (the loop's clock resolution)
_PUSH = getattr(hiredis, "PushNotification", ())  # RESP3 out-of-band (hiredis >= 3.2)


class AsyncWire(asyncio.Protocol):
    """A connected redis-py asyncio connection whose transport now talks to this protocol."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        options: dict[str, Any] = {
            "protocolError": redis_errors.InvalidResponse,
            "replyError": BaseParser.parse_error,
            "notEnoughData": _NOT_ENOUGH_DATA,
        }
        encoder = conn.encoder
        if encoder.decode_responses:
            options["encoding"] = encoder.encoding
            options["errors"] = encoder.encoding_errors
        self._parser = hiredis.Reader(**options)
        self._waiter: asyncio.Future[Any] | None = None
        self._deadline = math.inf  # of the current request (loop time)
        self._timer: asyncio.TimerHandle | None = None
        self._broken: Exception | None = None
        self._loop = asyncio.get_running_loop()
        writer = conn._writer
        self._stream_protocol: asyncio.BaseProtocol = writer._protocol
        self._transport: asyncio.Transport = writer.transport
        if conn._reader._buffer:  # something arrived that no request asked for
            self._broken = redis_errors.ConnectionError("unexpected data after connecting")
        self._transport.set_protocol(self)

    async def request(self, payload: bytes, timeout: float | None) -> Any:
        """Send ``payload`` (one packed command) and return its reply; see the module."""
        if self._broken is not None:
            raise self._broken
        if asyncio.get_running_loop() is not self._loop:  # e.g. a second asyncio.run()
            self._broken = redis_errors.ConnectionError("connection of another event loop")
            raise self._broken
        if self._parser.has_data():  # a reply nobody asked for: out of step
            raise redis_errors.ConnectionError("unexpected reply on an idle connection")
        loop = self._loop
        waiter = self._waiter = loop.create_future()
        self._transport.write(payload)
        if timeout is None:
            self._deadline = math.inf
        else:
            deadline = self._deadline = loop.time() + timeout
            if self._timer is None or self._timer.when() > deadline:  # else: it re-arms
                if self._timer is not None:
                    self._timer.cancel()
                self._timer = loop.call_at(deadline, self._on_timer)
        try:
            reply = await waiter
        finally:
            self._waiter = None
        if isinstance(reply, redis_errors.ResponseError | redis_errors.ConnectionError):
            raise reply  # (a LOADING reply is a ConnectionError to redis-py)
        return reply

    def _on_timer(self) -> None:
        """The wire's one timer: it fires at or before the current request's deadline
        (arming a timer per request and cancelling it was a tenth of a round trip's CPU)."""
        self._timer = None
        waiter = self._waiter
        if waiter is None or waiter.done() or self._deadline == math.inf:
            return  # idle (the timer is armed again by the next request) or no time limit
        if self._loop.time() >= self._deadline - _EARLY:
            waiter.set_exception(redis_errors.TimeoutError("Timeout reading from socket"))
        else:  # armed for an earlier request: now for this one's deadline
            self._timer = self._loop.call_at(self._deadline, self._on_timer)

    async def aclose(self) -> None:
        """Close the connection (redis-py's ``disconnect``)."""
        self._broken = self._broken or redis_errors.ConnectionError("connection closed")
        if asyncio.get_running_loop() is not self._loop:  # its loop may be gone: just drop it
            with contextlib.suppress(Exception):
                self._transport.abort()
            return
        await self.conn.disconnect()

    # -- asyncio.Protocol ------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self._parser.feed(data)
        waiter = self._waiter
        if waiter is None or waiter.done():
            return  # out of step: the next request finds it buffered and refuses
        try:
            reply = self._parser.gets()
            while isinstance(reply, _PUSH):  # not a reply to us (none subscribe here)
                reply = self._parser.gets()
        except redis_errors.InvalidResponse as exc:
            self._broken = redis_errors.ConnectionError(f"invalid reply: {exc}")
            waiter.set_exception(self._broken)
            self._transport.abort()
            return
        if reply is not _NOT_ENOUGH_DATA:
            waiter.set_result(reply)

    def eof_received(self) -> bool:
        return False  # the transport closes; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        detail = f": {exc}" if exc is not None else ""
        self._broken = redis_errors.ConnectionError(f"Connection closed by server{detail}")
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(self._broken)
        self._stream_protocol.connection_lost(exc)  # redis-py's close waits for this


async def async_open_wire(conn: Any, socket_timeout: float | None) -> AsyncWire:
    """Take over ``conn`` (connected by redis-py); ``socket_timeout`` is its normal timeout."""
    conn.socket_timeout = socket_timeout  # (redis-py's own reads, if any, use it)
    return AsyncWire(conn)


class Wire:
    """The sync twin: one request and its reply on a redis-py connection."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def request(self, payload: bytes, timeout: float | None) -> Any:
        conn = self.conn
        conn.send_packed_command([payload], check_health=False)
        if timeout is None:  # (sync redis-py reads timeout=None as "no timeout")
            return conn.read_response()
        return conn.read_response(timeout=timeout)

    def close(self) -> None:
        self.conn.disconnect()


def open_wire(conn: Any, socket_timeout: float | None) -> Wire:
    """Wrap ``conn``, giving it back its normal socket timeout after a bounded set-up (the
    socket and hiredis' parser keep their own copy of the timeout)."""
    conn.socket_timeout = socket_timeout
    sock = getattr(conn, "_sock", None)
    if sock is not None:
        sock.settimeout(socket_timeout)
    parser = getattr(conn, "_parser", None)
    if parser is not None and hasattr(parser, "_socket_timeout"):
        parser._socket_timeout = socket_timeout
    return Wire(conn)
