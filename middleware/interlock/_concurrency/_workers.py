"""Background work, side by side for async and sync code: a worker that runs one function in
the background (a task or a daemon thread), a pool of daemon threads for blocking calls, and
a strand: one thread that runs one object's blocking calls in order.

Part of :mod:`interlock._concurrency`, which re-exports every name.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import queue
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Any, TypeVar

_T = TypeVar("_T")


class AsyncWorker:
    """Runs one coroutine function in the background as an asyncio task."""

    def __init__(self, target: Callable[[], Awaitable[None]], name: str) -> None:
        self._target = target
        self._name = name
        self._task: asyncio.Task[None] | None = None

    @staticmethod
    def startable() -> bool:
        """True when :meth:`start` can run now (an event loop is running here)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return False
        return True

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._task = loop.create_task(self._target(), name=self._name)  # type: ignore[arg-type]

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def join(self, timeout: float) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        if task.get_loop() is not asyncio.get_running_loop():
            return  # started on another (finished) loop; nothing to await here
        done, _ = await asyncio.wait([task], timeout=timeout)
        if not done:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


class Worker:
    """Runs one function in the background as a daemon thread."""

    def __init__(self, target: Callable[[], Any], name: str) -> None:
        self._target = target
        self._name = name
        self._thread: threading.Thread | None = None

    @staticmethod
    def startable() -> bool:
        """True: a thread can always be started."""
        return True

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._target, name=self._name, daemon=True)
            self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def join(self, timeout: float) -> None:
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)


class _DaemonPool:
    """A small pool of daemon threads: a call stuck in a driver never blocks interpreter exit
    (``concurrent.futures`` joins its non-daemon workers at exit)."""

    def __init__(self, max_threads: int = 32) -> None:
        self._max = max_threads
        self._queue: queue.SimpleQueue[tuple[Future[Any], contextvars.Context, Callable[[], Any]]]
        self._queue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0

    def submit(self, fn: Callable[[], _T]) -> Future[_T]:
        future: Future[_T] = Future()
        self._queue.put((future, contextvars.copy_context(), fn))
        with self._lock:
            if self._idle == 0 and self._threads < self._max:
                self._threads += 1
                threading.Thread(target=self._work, name="interlock-blocking", daemon=True).start()
        return future

    def _work(self) -> None:
        while True:
            with self._lock:
                self._idle += 1
            future, context, fn = self._queue.get()
            with self._lock:
                self._idle -= 1
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(context.run(fn))
            except BaseException as exc:  # handed to the waiter, like concurrent.futures
                future.set_exception(exc)


_pool = _DaemonPool()


class Strand:
    """Runs blocking calls one at a time, in submission order, on a thread of its own.

    For an object that is not thread-safe, such as a PyMySQL connection: a call that goes
    on after its awaiting task was cancelled still finishes before the next one starts.
    Unlike the shared pool, a strand never waits for a free thread, so calls blocked on a
    row lock cannot starve the call that would release it. The thread exits after
    ``idle`` seconds without work and is started again by the next call.
    """

    def __init__(self, name: str, idle: float = 5.0) -> None:
        self._name = name
        self._idle = idle
        self._queue: queue.SimpleQueue[tuple[Future[Any], contextvars.Context, Callable[[], Any]]]
        self._queue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._running = False

    def submit(self, fn: Callable[[], _T]) -> Future[_T]:
        future: Future[_T] = Future()
        with self._lock:
            self._queue.put((future, contextvars.copy_context(), fn))
            if not self._running:
                self._running = True
                threading.Thread(target=self._work, name=self._name, daemon=True).start()
        return future

    async def run(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Await ``fn(*args)`` run on the strand (cancelling skips it unless it started)."""
        return await asyncio.wrap_future(self.submit(lambda: fn(*args)))

    def _work(self) -> None:
        while True:
            try:
                future, context, fn = self._queue.get(timeout=self._idle)
            except queue.Empty:
                with self._lock:  # submit() enqueues under the lock: no job is stranded
                    if self._queue.empty():
                        self._running = False
                        return
                continue
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(context.run(fn))
            except BaseException as exc:  # handed to the waiter, like concurrent.futures
                future.set_exception(exc)


async def async_run_blocking(fn: Callable[..., _T], *args: Any) -> _T:
    """Run a blocking call (e.g. PyMySQL) on a daemon thread without blocking the loop."""
    return await asyncio.wrap_future(_pool.submit(lambda: fn(*args)))


def run_blocking(fn: Callable[..., _T], *args: Any) -> _T:
    """Sync twin of :func:`async_run_blocking`: call ``fn`` directly."""
    return fn(*args)
