"""A TCP fault proxy on loopback: latency, stalls, resets, refused and blackholed links.

The proxy forwards ``127.0.0.1:<port>`` to an upstream ``host:port`` on an asyncio loop of
its own thread, so blocking tests and asyncio code can both steer it. Faults change at run
time and apply to connections already open::

    with FaultProxy("127.0.0.1", 6379) as proxy:
        Interlock(f"redis://127.0.0.1:{proxy.port}/0")
        proxy.latency(0.2, jitter=0.05)   # each chunk, each direction
        proxy.stall()                     # half-open: bytes stop, sockets stay open
        proxy.blackhole()                 # new and open links: accepted, never answered
        proxy.reset()                     # RST every open connection
        proxy.refuse()                    # new connections are closed at once
        proxy.partition(2.0)              # stall + refuse for 2 s, then healthy
        proxy.clear()                     # healthy again
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import threading
import time
from collections.abc import Coroutine
from types import TracebackType
from typing import Any

__all__ = ["FaultProxy"]

_CHUNK = 65536


class FaultProxy:
    """Forward a local port to ``upstream``, with faults switched on and off at run time."""

    def __init__(
        self, host: str, port: int, *, seed: int | None = None, listen_port: int = 0
    ) -> None:
        self.upstream = (host, port)
        self.port = listen_port  # 0: a free port, known after start()
        self._random = random.Random(seed)
        self._delay = 0.0
        self._jitter = 0.0
        self._stalled = False
        self._refusing = False
        self._until = 0.0  # a partition's end (monotonic), 0 when none
        self._closing = False
        self._links: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        self._thread.start()
        self._server = self._call(asyncio.start_server(self._accept, "127.0.0.1", self.port))
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self.reset()
            self._server = None
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._cancel_tasks(), self._loop).result(5)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
        if not self._loop.is_closed() and not self._loop.is_running():
            self._loop.close()

    async def _cancel_tasks(self) -> None:
        self._closing = True  # stalled pipes give up; aborted links end the others
        self._reset_all()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        if tasks:
            await asyncio.wait(tasks, timeout=2.0)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- faults ----------------------------------------------------------------------------

    def clear(self) -> None:
        """Healthy: no delay, bytes flow, new connections are accepted."""
        self._delay = self._jitter = 0.0
        self._stalled = self._refusing = False
        self._until = 0.0

    def latency(self, seconds: float, jitter: float = 0.0) -> None:
        """Delay every chunk by ``seconds`` ± ``jitter`` in each direction."""
        self._delay, self._jitter = seconds, jitter

    def stall(self) -> None:
        """Half-open links: bytes stop flowing both ways, sockets stay open."""
        self._stalled = True

    def blackhole(self) -> None:
        """Accept connections and never answer (a stall that also swallows new links)."""
        self._stalled = True

    def refuse(self) -> None:
        """Close new connections at once (the upstream looks down)."""
        self._refusing = True

    def partition(self, seconds: float) -> None:
        """Stall open links and refuse new ones for ``seconds``, then heal by itself."""
        self._until = time.monotonic() + seconds

    def reset(self) -> None:
        """Abort every open connection with a TCP RST."""
        self._loop.call_soon_threadsafe(self._reset_all)

    @property
    def connections(self) -> int:
        return len(self._links) // 2

    # -- forwarding ------------------------------------------------------------------------

    def _call(self, coro: Coroutine[Any, Any, asyncio.Server]) -> asyncio.Server:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    def _partitioned(self) -> bool:
        return self._until > time.monotonic()

    def _reset_all(self) -> None:
        for writer in list(self._links):
            sock = writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
            writer.transport.abort()
        self._links.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._refusing or self._partitioned():
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            return
        self._links.update((writer, up_writer))
        await asyncio.gather(  # (each pipe ends on EOF, an abort or close())
            self._pipe(reader, up_writer), self._pipe(up_reader, writer),
            return_exceptions=True,
        )
        for end in (writer, up_writer):
            self._links.discard(end)
            end.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            data = await reader.read(_CHUNK)
            if not data:
                return
            while (self._stalled or self._partitioned()) and not self._closing:
                await asyncio.sleep(0.01)
            if self._closing:
                return
            if self._delay or self._jitter:
                pause = self._delay + self._random.uniform(-self._jitter, self._jitter)
                await asyncio.sleep(max(pause, 0.0))
            writer.write(data)
            await writer.drain()
