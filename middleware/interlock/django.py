"""Django integration: :func:`tools`, the one way a Django view reaches its request tools.

Django runs sync and async views under both ASGI and WSGI, and the middleware that
wraps the app is the one of the server protocol: under ASGI the tools are async (at
``request.scope["interlock"]``), under WSGI blocking (at ``request.META["interlock"]``).
``tools(request)`` finds them wherever they are and hands each kind of view the API it
can call::

    from interlock.django import tools

    def withdraw(request, account_id):                 # a sync view (Django's default)
        t = tools(request)
        with t.lock("audit", account_id) as lease: ...
        tx = t.transaction("checkout")
        tx.postgres(connection.connection).execute("UPDATE ...")

    async def withdraw_async(request, account_id):     # an async view
        t = tools(request)
        async with t.lock("audit", account_id) as lease: ...

=================  ==========================================  ===========================
view / server      ``tools(request)`` is                       ``tx.postgres(conn)`` takes
=================  ==========================================  ===========================
sync, WSGI         the middleware's blocking tools             ``psycopg.Connection``
sync, ASGI         blocking tools over the async ones          ``psycopg.Connection``
async, ASGI        the middleware's async tools                ``psycopg.AsyncConnection``
async, WSGI        awaitable tools over the blocking ones      ``psycopg.Connection``
=================  ==========================================  ===========================

The bridges use asgiref (a Django dependency): a sync view under ASGI runs in a worker
thread, and each call goes to the event loop with ``async_to_sync``; the database work of a
branch (prepare, commit) runs on interlock's threads. An async view under WSGI runs in a
per-request event loop; each call runs the blocking API in the request's thread with
``sync_to_async(thread_sensitive=True)``, so locks stay owned by that thread.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

from interlock._async.http.tools import AsyncRequestTools
from interlock._concurrency import async_run_blocking
from interlock._django_cache import InterlockCache
from interlock._sync.http.tools import RequestTools
from interlock.errors import ConfigError

__all__ = ["InterlockCache", "tools"]


def tools(request: Any) -> Any:
    """The request's interlock tools, in the API of the calling view (sync or async).

    Args:
        request: the Django ``HttpRequest`` (WSGI or ASGI).

    Returns:
        ``RequestTools`` (or a bridge with the same methods): ``request_id``,
        ``trace_id``, ``span_id``, ``lease``, ``route``, ``lock()``, ``cache()``,
        ``transaction()``, ``tag()`` — blocking in a sync view, awaitable in an async one.

    Raises:
        ConfigError: no interlock middleware wraps the Django application.
    """
    found = request.META.get("interlock")
    if found is None:
        scope = getattr(request, "scope", None)
        found = scope.get("interlock") if isinstance(scope, dict) else None
    if not isinstance(found, (AsyncRequestTools, RequestTools)):
        raise ConfigError(
            "no interlock middleware around this Django app: wrap it, e.g. "
            "application = InterlockMiddleware(get_asgi_application(), interlock=ail) in "
            "asgi.py or InterlockWSGIMiddleware(get_wsgi_application(), interlock=il) in wsgi.py"
        )
    in_loop = _in_event_loop()
    if isinstance(found, AsyncRequestTools):
        return found if in_loop else BlockingTools(found)
    return AwaitableTools(found) if in_loop else found


def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


# -- sync views under ASGI: blocking calls into the async tools -----------------------------


def _to_sync(function: Callable[..., Any]) -> Callable[..., Any]:
    from asgiref.sync import async_to_sync

    return async_to_sync(function)


class _Blocking:
    """The blocking face of an async interlock object (a lease, a cache, the facade)."""

    __slots__ = ("_target",)

    def __init__(self, target: Any) -> None:
        self._target = target

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if inspect.iscoroutinefunction(value):
            return _to_sync(value)
        return value

    def __repr__(self) -> str:
        return f"<blocking {self._target!r}>"


class _BlockingCache(_Blocking):
    __slots__ = ()

    def get_or_load(self, key: object, loader: Callable[[], Any], **options: Any) -> Any:
        """``Cache.get_or_load``; ``loader`` runs in the view's thread."""
        from asgiref.sync import sync_to_async

        return _to_sync(self._target.get_or_load)(
            key, sync_to_async(loader, thread_sensitive=True), **options
        )


class _BlockingLock:
    """A lock of the async facade, used with ``with`` or ``acquire()`` from a sync view."""

    __slots__ = ("_leases", "_lock")

    def __init__(self, lock: Any) -> None:
        self._lock = lock
        self._leases: list[Any] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._lock, name)

    def acquire(self, *args: Any, **kwargs: Any) -> Any:
        lease = _to_sync(self._lock.acquire)(*args, **kwargs)
        return None if lease is None else _Blocking(lease)

    def __enter__(self) -> Any:
        lease = _to_sync(self._lock.acquire)()
        self._leases.append(lease)
        return _Blocking(lease)

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        _to_sync(self._lock.exit_lease)(self._leases.pop(), exc is not None)


class _Threaded:
    """A blocking 2PC participant driven by the async coordinator: calls run on threads.

    The participant's optional capabilities (``interlock._async.txn.branch``: one-phase
    and last-resource commit, ``ref``, ``refusal``, ``blocked``) show through: the
    coordinator's ``isinstance`` checks see the wrapped participant's members.
    """

    def __init__(self, participant: Any) -> None:
        self.participant = participant

    async def prepare(self, xid: str) -> bool:
        return bool(await async_run_blocking(self.participant.prepare, xid))

    async def commit(self, xid: str) -> None:
        await async_run_blocking(self.participant.commit, xid)

    async def abort(self, xid: str) -> None:
        await async_run_blocking(self.participant.abort, xid)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self.participant, name)  # ref, refusal, identity, last_resource
        if name in ("commit_one_phase", "commit_last"):

            async def threaded(*args: Any) -> Any:
                return await async_run_blocking(value, *args)

            return threaded
        return value


class BlockingTransaction:
    """The request's transaction for a sync view under ASGI.

    The coordinator is the async one the middleware decides; the branches are the
    blocking participants, on the view's own (blocking) connections.
    """

    __slots__ = ("_request_txn",)

    def __init__(self, request_txn: Any) -> None:
        self._request_txn = request_txn

    def __getattr__(self, name: str) -> Any:  # name, xid, state, reason, active, on_commit
        return getattr(self._request_txn, name)

    def redis(self, store: str = "default") -> Any:
        return self._request_txn.redis(store)

    def postgres(self, conn: Any, resource: str = "postgres", *, last_resource: bool = True) -> Any:
        """Enlist a blocking psycopg connection; returns it, inside the branch."""
        from interlock._sync.txn.participants.postgres import PostgresParticipant

        txn = self._request_txn.transaction
        start = txn.next_branch()
        participant = PostgresParticipant(conn, resource, last_resource)
        table = start.decision_table if last_resource else None
        participant.begin(start.xid, table, start.lock_wait)  # row lock waits capped
        txn.add_branch(_Threaded(participant), resource, participant.kind, start.bqual)
        return conn

    def mysql(self, conn: Any, resource: str = "mysql") -> Any:
        """Enlist a PyMySQL connection as an XA branch; returns it, inside the branch."""
        from interlock._sync.txn.participants.mysql import MySQLParticipant

        txn = self._request_txn.transaction
        start = txn.next_branch()
        participant = MySQLParticipant(conn, resource, start.xid)
        participant.begin(start.durability, start.lock_wait)
        txn.add_branch(_Threaded(participant), resource, participant.kind, start.bqual)
        return conn

    def enlist(self, participant: Any, *, resource: str, kind: str = "custom") -> Any:
        """Add a blocking custom participant (``prepare``/``commit``/``abort``)."""
        self._request_txn.enlist(_Threaded(participant), resource=resource, kind=kind)
        return participant

    def commit(self) -> None:
        _to_sync(self._request_txn.commit)()

    def abort(self, reason: str = "client") -> None:
        _to_sync(self._request_txn.abort)(reason)

    def __enter__(self) -> BlockingTransaction:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is not None and self._request_txn.active:
            self.abort("client")

    def __repr__(self) -> str:
        return f"<blocking {self._request_txn!r}>"


class _BridgedTools:
    """The request tools of the other API: what :class:`BlockingTools` and
    :class:`AwaitableTools` share; each names the wrappers that bridge its calls."""

    __slots__ = ("_tools",)
    _wrap: Callable[[Any], Any]  # for the interlock and the lease
    _lock: Callable[[Any], Any]
    _cache: Callable[[Any], Any]

    def __init__(self, request_tools: Any) -> None:
        self._tools = request_tools

    request_id = property(lambda self: self._tools.request_id)
    trace_id = property(lambda self: self._tools.trace_id)
    span_id = property(lambda self: self._tools.span_id)

    @property
    def interlock(self) -> Any:
        """The middleware's interlock, with methods of this view's kind."""
        return self._wrap(self._tools.interlock)

    @property
    def lease(self) -> Any:
        lease = self._tools.lease
        return None if lease is None else self._wrap(lease)

    @property
    def route(self) -> str | None:
        route: str | None = self._tools.route
        return route

    @route.setter
    def route(self, template: str) -> None:
        self._tools.route = template

    def lock(self, name: str, key: object = "", **options: Any) -> Any:
        return self._lock(self._tools.lock(name, key, **options))

    def cache(self, name: str, **options: Any) -> Any:
        return self._cache(self._tools.cache(name, **options))

    def tag(self, *tags: str) -> None:
        self._tools.tag(*tags)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} request_id={self.request_id}>"


class BlockingTools(_BridgedTools):
    """The request tools for a sync view under ASGI: the async tools, called blocking."""

    __slots__ = ()
    _wrap, _lock, _cache = _Blocking, _BlockingLock, _BlockingCache

    def __init__(self, request_tools: AsyncRequestTools) -> None:
        super().__init__(request_tools)

    def transaction(self, name: str, *, timeout: float | None = None) -> BlockingTransaction:
        return BlockingTransaction(self._tools.transaction(name, timeout=timeout))


# -- async views under WSGI: awaitable calls into the blocking tools ------------------------


def _to_async(function: Callable[..., Any]) -> Callable[..., Any]:
    from asgiref.sync import sync_to_async

    return sync_to_async(function, thread_sensitive=True)


class _Awaitable:
    """The awaitable face of a blocking interlock object (a lease, a cache, the facade)."""

    __slots__ = ("_target",)

    def __init__(self, target: Any) -> None:
        self._target = target

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if callable(value) and not name.startswith("_"):
            return _to_async(value)
        return value

    def __repr__(self) -> str:
        return f"<awaitable {self._target!r}>"


class _AwaitableCache(_Awaitable):
    __slots__ = ()

    async def get_or_load(self, key: object, loader: Callable[[], Any], **options: Any) -> Any:
        """``AsyncCache.get_or_load``; an async ``loader`` runs on the view's loop."""
        from asgiref.sync import async_to_sync

        load = async_to_sync(loader) if inspect.iscoroutinefunction(loader) else loader
        return await _to_async(self._target.get_or_load)(key, load, **options)


class _AwaitableLock:
    __slots__ = ("_leases", "_lock")

    def __init__(self, lock: Any) -> None:
        self._lock = lock
        self._leases: list[Any] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._lock, name)

    async def acquire(self, *args: Any, **kwargs: Any) -> Any:
        lease = await _to_async(self._lock.acquire)(*args, **kwargs)
        return None if lease is None else _Awaitable(lease)

    async def __aenter__(self) -> Any:
        lease = await _to_async(self._lock.acquire)()
        self._leases.append(lease)
        return _Awaitable(lease)

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        await _to_async(self._lock.exit_lease)(self._leases.pop(), exc is not None)


class AwaitableTransaction:
    """The request's transaction for an async view under WSGI (blocking connections)."""

    __slots__ = ("_request_txn",)

    def __init__(self, request_txn: Any) -> None:
        self._request_txn = request_txn

    def __getattr__(self, name: str) -> Any:  # name, xid, state, reason, active, on_commit
        return getattr(self._request_txn, name)

    def redis(self, store: str = "default") -> Any:
        return self._request_txn.redis(store)

    async def postgres(self, conn: Any, resource: str = "postgres") -> Any:
        """Enlist a blocking psycopg connection (Django's); returns it."""
        return await _to_async(self._request_txn.postgres)(conn, resource)

    async def mysql(self, conn: Any, resource: str = "mysql") -> Any:
        """Enlist a PyMySQL connection; returns it."""
        return await _to_async(self._request_txn.mysql)(conn, resource)

    def enlist(self, participant: Any, *, resource: str, kind: str = "custom") -> Any:
        return self._request_txn.enlist(participant, resource=resource, kind=kind)

    async def commit(self) -> None:
        await _to_async(self._request_txn.commit)()

    async def abort(self, reason: str = "client") -> None:
        await _to_async(self._request_txn.abort)(reason)

    async def __aenter__(self) -> AwaitableTransaction:
        return self

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is not None and self._request_txn.active:
            await self.abort("client")

    def __repr__(self) -> str:
        return f"<awaitable {self._request_txn!r}>"


class AwaitableTools(_BridgedTools):
    """The request tools for an async view under WSGI: the blocking tools, awaited."""

    __slots__ = ()
    _wrap, _lock, _cache = _Awaitable, _AwaitableLock, _AwaitableCache

    def __init__(self, request_tools: RequestTools) -> None:
        super().__init__(request_tools)

    def transaction(self, name: str, *, timeout: float | None = None) -> AwaitableTransaction:
        return AwaitableTransaction(self._tools.transaction(name, timeout=timeout))
