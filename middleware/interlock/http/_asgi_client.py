"""Watching the client of an ASGI request while interlock makes it wait.

While a request queues for its lock, or waits for a cached response being loaded, nobody
calls ``receive()``, so a client that gives up is not noticed: its handler would still run
once the lock is free. :class:`ClientWatch` reads the client's messages ahead during such
a wait, one at a time, and keeps them for the application, which later gets every message
in order. An ``http.disconnect`` read ahead ends the wait at once: the lock acquire is
cancelled (a lease handed over meanwhile is passed on) and the handler is not run. Body
chunks read ahead are held only up to ``READ_AHEAD_BYTES``; past that the watch stops
reading (and a disconnect during the rest of that wait goes unnoticed until the
application reads). :meth:`probe` does one such read when the response's status is known,
so that a client already gone does not get its request transaction committed.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable
from typing import Any, TypeVar

from interlock.http._exchange import ClientGone as ClientGone
from interlock.http._exchange import Exchange
from interlock.http.types import Message, Receive

T = TypeVar("T")

READ_AHEAD_BYTES = 64 * 1024


class ClientWatch:
    """The request's ``receive``, with read-ahead during :meth:`wait`."""

    __slots__ = ("_buffer", "_ex", "_held", "_pending", "_receive")

    def __init__(self, receive: Receive, ex: Exchange) -> None:
        self._receive = receive
        self._ex = ex
        self._buffer: deque[Message] = deque()
        self._held = 0  # body bytes read ahead and not yet taken
        self._pending: asyncio.Task[Message] | None = None

    async def receive(self) -> Message:
        """The next message from the client (read-ahead ones first)."""
        if self._buffer:
            message = self._buffer.popleft()
            self._held -= len(message.get("body", b""))
        elif self._pending is not None:
            task, self._pending = self._pending, None
            message = await task
        else:
            message = await self._receive()
        self._seen(message)
        return message

    async def wait(self, step: Awaitable[T]) -> T:
        """``await step`` unless the client disconnects first: then ``step`` is cancelled
        (a lock acquire undoes itself: a lease handed over meanwhile is passed on) and
        :class:`ClientGone` is raised.

        ``step`` runs in the caller's task (locks know their holder by task); a helper
        task reads ahead and cancels the caller when the client leaves.
        """
        me = asyncio.current_task()
        assert me is not None
        watcher = asyncio.ensure_future(self._watch(me))
        try:
            return await step
        except asyncio.CancelledError:
            if self._ex.disconnected and me.cancelling() == 1:
                me.uncancel()
                raise ClientGone from None
            raise
        finally:
            watcher.cancel()  # it awaits the read through asyncio.wait: the read lives on

    async def _watch(self, waiter: asyncio.Task[Any]) -> None:
        while (reading := self._read_ahead()) is not None:
            await asyncio.wait({reading})
            if reading.exception() is not None:
                return  # kept as pending: the application's next receive() raises it
            if self._keep(reading.result()):
                waiter.cancel()
                return

    async def probe(self) -> None:
        """Notice a client already gone, without waiting for one to leave.

        Reads ahead one message if none is pending and lets it arrive if it already can:
        a server that knows its client is gone answers ``http.disconnect`` at once. The
        read stays pending otherwise, for the application or :meth:`close`.
        """
        reading = self._read_ahead()
        if reading is None:
            return
        await asyncio.sleep(0)  # one turn of the loop: a ready answer completes the read
        if reading.done() and not reading.cancelled() and reading.exception() is None:
            self._keep(reading.result())

    def close(self) -> None:
        """The request is over: stop reading ahead."""
        if self._pending is not None and not self._pending.done():
            self._pending.cancel()
        self._pending = None

    def _keep(self, message: Message) -> bool:
        """Hold a message read ahead for the application; True if it is a disconnect."""
        self._pending = None
        self._buffer.append(message)
        self._held += len(message.get("body", b""))
        if message["type"] != "http.disconnect":
            return False
        self._seen(message)
        return True

    def _read_ahead(self) -> asyncio.Task[Message] | None:
        if self._pending is None and self._held < READ_AHEAD_BYTES and not self._ex.disconnected:
            self._pending = asyncio.ensure_future(self._receive())
        return self._pending

    def _seen(self, message: Message) -> None:
        if message["type"] == "http.disconnect" and not self._ex.finished_body:
            self._ex.disconnected = True
