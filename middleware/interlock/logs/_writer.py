"""Writing lines off the caller's thread: the handler, its sink protocol, the stream writer.

:class:`QueueingHandler` formats each record in the caller's thread (so the request
context is intact) and hands the line to a :class:`LineSink`: the :class:`LineWriter`
of a stream, or an :class:`~interlock.logs.ElasticsearchSink`.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections import deque
from collections.abc import Callable
from typing import IO, Protocol


class LineWriter:
    """A daemon thread writing formatted lines in batches, so callers never block on I/O.

    Callers append to a deque (no lock, no thread wake-up); the thread writes what has
    gathered every ``interval`` seconds, or sooner once ``batch`` lines wait. When
    ``size`` lines wait, further lines are dropped and counted.
    """

    def __init__(
        self,
        stream: IO[str],
        size: int,
        on_drop: Callable[[], None],
        interval: float = 0.05,
        batch: int = 256,
    ) -> None:
        self.stream = stream
        self.size = size
        self.on_drop = on_drop
        self.interval = interval
        self.batch = batch
        self.dropped = 0
        self._stopping = False
        self._start()
        # a forked child (gunicorn's workers) has no writer thread: start its own
        os.register_at_fork(after_in_child=_restart_in_child(weakref.ref(self)))

    def _start(self) -> None:
        self._lines: deque[str] = deque()  # in a forked child: the parent writes its own
        self._wake = threading.Event()
        self.thread = threading.Thread(target=self._run, name="interlock-log-writer", daemon=True)
        self.thread.start()

    def put(self, line: str) -> None:
        lines = self._lines
        if len(lines) >= self.size:
            self.dropped += 1
            self.on_drop()
            return
        lines.append(line)
        if len(lines) == self.batch:
            self._wake.set()

    def _run(self) -> None:
        lines, wake = self._lines, self._wake
        while True:
            wake.wait(self.interval)
            wake.clear()
            stopping = self._stopping
            while lines:
                chunk: list[str] = []
                while lines and len(chunk) < 4096:
                    chunk.append(lines.popleft())
                try:
                    self.stream.write("\n".join(chunk) + "\n")
                    self.stream.flush()
                except Exception:  # a closed or broken stream: count, keep draining
                    self.dropped += len(chunk)
            if stopping:
                return

    def stop(self) -> None:
        """Write what is pending and end the thread."""
        self._stopping = True
        self._wake.set()
        self.thread.join(timeout=5.0)


def _restart_in_child(ref: weakref.ref[LineWriter]) -> Callable[[], None]:
    def restart() -> None:
        writer = ref()
        if writer is not None and not writer._stopping:
            writer._start()

    return restart


class LineSink(Protocol):
    """Where :class:`QueueingHandler` puts formatted lines: ``put`` must never block."""

    dropped: int

    def put(self, line: str) -> None: ...

    def stop(self) -> None: ...


class QueueingHandler(logging.Handler):
    """Formats in the caller's thread (request context intact), writes on another.

    Args:
        writer: the sink taking each line: the stream writer of
            :func:`interlock.logs.configure_logging` or an
            :class:`~interlock.logs.ElasticsearchSink`.
    """

    # set on the handler of a server log config (``interlock.logs.uvicorn_log_config``),
    # which configure_logging() then keeps instead of adding a second one
    server_config = False

    def __init__(self, writer: LineSink) -> None:
        super().__init__()
        self.writer = writer

    @property
    def dropped(self) -> int:
        return self.writer.dropped

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self.writer.put(line)

    def close(self) -> None:
        self.writer.stop()
        super().close()
