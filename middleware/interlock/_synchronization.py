"""The few primitives where async and sync code differ, side by side.

Code under ``interlock/_async/`` uses only the ``Async*`` / ``async_*`` names below;
``scripts/unasync.py`` turns them into the plain names for ``interlock/_sync/``. This is
the only module that touches ``asyncio`` and ``threading`` scheduling directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import queue
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

_T = TypeVar("_T")


def async_current_owner() -> int:
    """Identity of the running asyncio task (the unit that holds a lease)."""
    task = asyncio.current_task()
    return id(task) if task is not None else threading.get_ident()


def current_owner() -> int:
    """Identity of the running thread (the unit that holds a lease)."""
    return threading.get_ident()


# Whether a lock waiter may block a connection of its own while it waits. A blocking waiter
# owns its thread, so a signal list (BLPOP) wakes it with no thread hop; asyncio waiters are
# cheap tasks, possibly thousands, so they share the one pub/sub connection instead.
async_dedicated_waits = False
dedicated_waits = True


async def async_sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


def sleep(seconds: float) -> None:
    time.sleep(seconds)


class AsyncEvent:
    """An asyncio event that may be set from any thread (e.g. a pub/sub callback)."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._loop = asyncio.get_running_loop()

    def set(self) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self._event.set()
        elif not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._event.set)

    def clear(self) -> None:
        self._event.clear()

    def is_set(self) -> bool:
        return self._event.is_set()

    async def wait(self, timeout: float | None = None) -> bool:
        """Wait until set or ``timeout`` seconds pass; True if the event is set."""
        if self._event.is_set():
            return True
        if timeout is not None and timeout <= 0:
            return False
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._event.wait()
        return self._event.is_set()


async def async_shielded(awaitable: Awaitable[Any]) -> Any:
    """Finish ``awaitable`` even if the calling task is being cancelled."""
    return await asyncio.shield(awaitable)


def shielded(value: Any) -> Any:
    """Sync twin of :func:`async_shielded`: the call already ran to completion."""
    return value


class Event:
    """A threading event with the same interface as :class:`AsyncEvent`."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def clear(self) -> None:
        self._event.clear()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        if timeout is not None and timeout <= 0:
            return self._event.is_set()
        return self._event.wait(timeout)


class AsyncMutex:
    """A task lock (asyncio.Lock) for local mutual exclusion."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> None:
        await self._lock.acquire()

    async def __aexit__(self, *exc: object) -> None:
        self._lock.release()


class Mutex:
    """A thread lock with the same interface as :class:`AsyncMutex`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def __enter__(self) -> None:
        self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


class AsyncWorker:
    """Runs one coroutine function in the background as an asyncio task."""

    def __init__(self, target: Callable[[], Awaitable[None]], name: str) -> None:
        self._target = target
        self._name = name
        self._task: asyncio.Task[None] | None = None

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


async def async_run_blocking(fn: Callable[..., _T], *args: Any) -> _T:
    """Run a blocking call (e.g. PyMySQL) on a daemon thread without blocking the loop."""
    return await asyncio.wrap_future(_pool.submit(lambda: fn(*args)))


def run_blocking(fn: Callable[..., _T], *args: Any) -> _T:
    """Sync twin of :func:`async_run_blocking`: call ``fn`` directly."""
    return fn(*args)


async def async_call_all(
    calls: Sequence[Callable[[], Awaitable[Any]]], timeout: float | None, *, cancel: bool = True
) -> list[Any]:
    """Run ``calls`` concurrently; each result, raised exception or ``TimeoutError()``.

    Calls unfinished after ``timeout`` seconds get a ``TimeoutError`` result and are
    cancelled, or with ``cancel=False`` left to finish in the background.
    """
    tasks = [asyncio.ensure_future(call()) for call in calls]
    if not tasks:
        return []
    done, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        if cancel:
            task.cancel()
        else:
            _background.add(task)
            task.add_done_callback(_background.discard)
    if cancel and pending:
        await asyncio.wait(pending)
    results: list[Any] = []
    for task in tasks:
        if task not in done:
            results.append(TimeoutError(f"no answer within {timeout:g}s"))
        elif task.cancelled():
            results.append(TimeoutError("cancelled"))
        else:
            results.append(task.exception() or task.result())
    return results


_background: set[asyncio.Task[Any]] = set()


def call_all(
    calls: Sequence[Callable[[], Any]], timeout: float | None, *, cancel: bool = True
) -> list[Any]:
    """Sync twin of :func:`async_call_all`: the first call runs in this thread, the others
    on daemon threads. Threads cannot be cancelled, so calls still running after
    ``timeout`` always finish in the background (``cancel`` is accepted for symmetry)."""
    if not calls:
        return []
    started = time.monotonic()
    futures = [_pool.submit(call) for call in calls[1:]]
    results: list[Any] = []
    try:
        results.append(calls[0]())
    except Exception as exc:
        results.append(exc)
    for future in futures:
        remaining = None if timeout is None else max(0.0, timeout - (time.monotonic() - started))
        try:
            results.append(future.result(remaining))
        except TimeoutError:
            results.append(TimeoutError(f"no answer within {timeout:g}s"))
        except Exception as exc:
            results.append(exc)
    return results


# -- cache: shared loads, loader calls, decorator checks -----------------------------------

_flights: set[asyncio.Task[Any]] = set()


def _settled(task: asyncio.Task[Any]) -> None:
    _flights.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved: a failure nobody awaited is not reported by asyncio


class AsyncFlight:
    """One piece of work whose outcome concurrent callers share (single-flight).

    The work runs as its own task: a caller that is cancelled stops waiting, but the work
    goes on for the others (and still fills the cache).
    """

    def __init__(self) -> None:
        self._task: asyncio.Task[Any] | None = None

    def start(
        self, work: Callable[[], Coroutine[Any, Any, Any]], background: bool = False
    ) -> None:
        """Start ``work`` now; ``background`` is implied (the caller is never blocked)."""
        task = asyncio.get_running_loop().create_task(work())
        _flights.add(task)
        task.add_done_callback(_settled)
        self._task = task

    async def wait(self) -> Any:
        """The work's result, or its exception re-raised."""
        assert self._task is not None, "start() first"
        return await asyncio.shield(self._task)

    async def settle(self, timeout: float) -> None:
        """Give unfinished work ``timeout`` seconds, then cancel it."""
        task = self._task
        if task is None or task.done() or task.get_loop() is not asyncio.get_running_loop():
            return
        done, _ = await asyncio.wait([task], timeout=timeout)
        if not done:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


class Flight:
    """Sync twin of :class:`AsyncFlight`: the first caller's thread does the work (or a
    daemon thread, in the background) and the others block on its future."""

    def __init__(self) -> None:
        self._future: Future[Any] = Future()

    def start(self, work: Callable[[], Any], background: bool = False) -> None:
        if background:
            context = contextvars.copy_context()
            thread = threading.Thread(
                target=context.run, args=(self._run, work), name="interlock-cache", daemon=True
            )
            thread.start()
        else:
            self._run(work)

    def _run(self, work: Callable[[], Any]) -> None:
        try:
            self._future.set_result(work())
        except BaseException as exc:  # handed to every caller by wait()
            self._future.set_exception(exc)

    def wait(self) -> Any:
        return self._future.result()

    def settle(self, timeout: float) -> None:
        with contextlib.suppress(BaseException):
            self._future.result(timeout)


async def async_call(function: Callable[[], Any]) -> Any:
    """Call a loader; await what it returns when that is awaitable (sync or async loaders)."""
    result = function()
    if inspect.isawaitable(result):
        result = await result
    return result


def call(function: Callable[[], Any]) -> Any:
    """Sync twin of :func:`async_call`: an awaitable result is a mistake, reported as such."""
    result = function()
    if inspect.isawaitable(result):
        if inspect.iscoroutine(result):
            result.close()
        raise TypeError(
            f"loader {function!r} returned an awaitable; the sync Cache needs a plain "
            "function (use AsyncInterlock(...).cache(...) for async loaders)"
        )
    return result


def async_check_cacheable(function: Callable[..., Any]) -> None:
    """``AsyncCache.cached`` decorates coroutine functions."""
    if not inspect.iscoroutinefunction(function):
        raise TypeError(
            f"AsyncCache.cached decorates async functions, and {function!r} is not one; "
            "use the sync Interlock(...).cache(...).cached for plain functions"
        )


def check_cacheable(function: Callable[..., Any]) -> None:
    """``Cache.cached`` decorates plain functions."""
    if inspect.iscoroutinefunction(function):
        raise TypeError(
            f"Cache.cached decorates plain functions, and {function!r} is async; "
            "use AsyncInterlock(...).cache(...).cached for coroutine functions"
        )
