"""Calling several things at once, side by side for async and sync code: run callables
concurrently (``call_all``), single-flight (``Flight``), call a sync-or-async function
(``call``) and check that a function can be cached.

Part of :mod:`interlock._concurrency`, which re-exports every name.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

from interlock._concurrency._workers import _pool

_T = TypeVar("_T")


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
