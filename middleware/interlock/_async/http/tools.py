"""What handlers find at ``scope["interlock"]`` (:class:`AsyncRequestTools`; the generated
``RequestTools`` at ``environ["interlock"]``) and the request's transaction.

A handler opens its request's transaction with ``tools.transaction(name)`` and enlists
participants; the middleware commits it when the response starts with a 2xx/3xx status and
aborts it otherwise (``interlock._async.http.cycle``). Tag invalidations made through
``tools.cache(name).invalidate_tag(tag)`` while it is open are deferred with ``on_commit``
and applied by the middleware after the commit, before the response is sent; an abort
drops them.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any

from interlock._async.cache.cache import AsyncCache
from interlock._async.client import AsyncInterlock
from interlock._async.lock.lease import AsyncLease
from interlock._async.lock.lock import _UNSET, AsyncLock, OnLost
from interlock._async.txn.branch import AsyncParticipant
from interlock._async.txn.participants.redis import AsyncRedisBranch
from interlock._async.txn.transaction import AsyncTransaction
from interlock.errors import TransactionError
from interlock.http._exchange import Exchange
from interlock.txn._state import State


class AsyncRequestTransaction:
    """The request's transaction, as ``tools.transaction(name)`` returns it.

    It forwards to the facade's transaction. The middleware commits or aborts it from the
    response status; ``commit()`` and ``abort()`` are there for handlers that must know the
    outcome before they answer. Used as a context manager, the block's exit does not
    commit: an exception in the block aborts at once, a clean exit leaves the decision to
    the response.

    Attributes:
        transaction: the underlying :class:`~interlock.AsyncTransaction`.
        deferred: how many invalidations were deferred while it was open.
        settled: the middleware has decided it (or seen the handler's decision).
    """

    __slots__ = ("_due", "deferred", "settled", "transaction")

    def __init__(self, transaction: AsyncTransaction) -> None:
        self.transaction = transaction
        self._due: list[tuple[AsyncCache, str | int]] = []
        self.deferred = 0
        self.settled = False

    @property
    def name(self) -> str:
        return self.transaction.name

    @property
    def xid(self) -> str:
        return self.transaction.xid

    @property
    def state(self) -> State:
        return self.transaction.state

    @property
    def reason(self) -> str | None:
        return self.transaction.reason

    @property
    def active(self) -> bool:
        """True until the transaction is committed or aborted."""
        return self.transaction.state is State.ACTIVE

    def redis(self, store: str = "default") -> AsyncRedisBranch:
        """The branch staging writes to the Redis store ``store`` (see ``tx.redis``)."""
        return self.transaction.redis(store)

    async def postgres(self, conn: Any, resource: str = "postgres") -> Any:
        """Enlist a psycopg connection; returns it, inside the branch."""
        return await self.transaction.postgres(conn, resource)

    async def mysql(self, conn: Any, resource: str = "mysql") -> Any:
        """Enlist a MySQL connection (see ``tx.mysql``); returns the one to work with."""
        return await self.transaction.mysql(conn, resource)

    def enlist(
        self, participant: AsyncParticipant, *, resource: str, kind: str = "custom"
    ) -> AsyncParticipant:
        """Add a custom participant (see ``Transaction.enlist``)."""
        return self.transaction.enlist(participant, resource=resource, kind=kind)

    def on_commit(self, callback: Callable[[], Any]) -> None:
        """Call ``callback()`` once the transaction has committed."""
        self.transaction.on_commit(callback)

    async def commit(self) -> None:
        """Commit now instead of at the response."""
        await self.transaction.commit()

    async def abort(self, reason: str = "client") -> None:
        """Abort now instead of at the response."""
        await self.transaction.abort(reason)

    def defer_invalidation(self, cache: AsyncCache, tag: str | int) -> None:
        """Invalidate ``tag`` of ``cache`` once the transaction commits; never on abort."""
        self.deferred += 1
        self.transaction.on_commit(lambda: self._due.append((cache, tag)))

    def take_due(self) -> list[tuple[AsyncCache, str | int]]:
        """The invalidations to apply now that the transaction committed."""
        due, self._due = self._due, []
        return due

    async def __aenter__(self) -> AsyncRequestTransaction:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is not None and self.active:
            await self.transaction.abort("client")

    def __repr__(self) -> str:
        return f"<RequestTransaction {self.name} {self.xid} {self.state.value}>"


class AsyncRequestCache:
    """``interlock.cache(name)`` whose ``invalidate_tag`` waits for the request's
    transaction while it is open; every other attribute is the cache's."""

    __slots__ = ("_cache", "_tools")

    def __init__(self, cache: AsyncCache, tools: AsyncRequestTools) -> None:
        self._cache = cache
        self._tools = tools

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cache, name)

    async def invalidate_tag(self, tag: str | int) -> None:
        """Invalidate ``tag`` now, or after commit while the request's transaction is open."""
        txn = self._tools.txn
        if txn is not None and txn.active:
            txn.defer_invalidation(self._cache, tag)
        else:
            await self._cache.invalidate_tag(tag)

    def __repr__(self) -> str:
        return f"<request view of {self._cache!r}>"


class AsyncRequestTools:
    """What handlers find at ``scope["interlock"]``.

    Attributes:
        interlock: the middleware's :class:`~interlock.AsyncInterlock`.
        lease: the lease held for the request by a :class:`~interlock.LockRule`, or ``None``.
        txn: the request's transaction, once :meth:`transaction` opened it.
    """

    __slots__ = ("_exchange", "interlock", "lease", "txn")

    def __init__(self, interlock: AsyncInterlock, exchange: Exchange) -> None:
        self.interlock = interlock
        self._exchange = exchange
        self.lease: AsyncLease | None = None
        self.txn: AsyncRequestTransaction | None = None

    @property
    def request_id(self) -> str:
        """The request id echoed in ``X-Request-ID``."""
        return self._exchange.request_id

    @property
    def trace_id(self) -> str:
        """The W3C trace id of the request."""
        return self._exchange.trace_id

    @property
    def span_id(self) -> str:
        """This request's span id."""
        return self._exchange.span_id

    @property
    def route(self) -> str | None:
        """The route template used as the metric label; set it when no framework does."""
        return self._exchange.route

    @route.setter
    def route(self, template: str) -> None:
        self._exchange.route = str(template)

    def lock(
        self,
        name: str,
        key: object = "",
        *,
        ttl: float | None = None,
        timeout: float | None = _UNSET,
        reentrant: bool = False,
        auto_renew: bool = True,
        on_lost: OnLost | None = None,
    ) -> AsyncLock:
        """``interlock.lock(...)``; the request's ids go with the holder info."""
        return self.interlock.lock(
            name,
            key,
            ttl=ttl,
            timeout=timeout,
            reentrant=reentrant,
            auto_renew=auto_renew,
            on_lost=on_lost,
        )

    def cache(self, name: str, **options: Any) -> AsyncRequestCache:
        """``interlock.cache(...)``; while the request's transaction is open, its
        ``invalidate_tag`` waits for the commit (and is dropped on abort)."""
        return AsyncRequestCache(self.interlock.cache(name, **options), self)

    def transaction(self, name: str, *, timeout: float | None = None) -> AsyncRequestTransaction:
        """The request's transaction: opened on the first call, the same one afterwards.

        The middleware commits it when the response starts with a 2xx/3xx status and
        aborts it otherwise (or on an exception, a client gone before the status, no
        response); a failed commit turns the response into a problem (409 or 503). See
        docs/middleware.md.

        Args:
            name: the transaction name (metric label).
            timeout: seconds by which every branch must have voted (the facade's default).

        Raises:
            TransactionError: another name than the open one, or the response started.
        """
        if self.txn is not None:
            if self.txn.name != name:
                raise TransactionError(
                    f"this request's transaction is {self.txn.name!r}; a request has one "
                    f"transaction, so tools.transaction({name!r}) cannot open another (use "
                    "interlock.transaction() for an independent one)"
                )
            return self.txn
        if self._exchange.finished or self._exchange.status is not None:
            raise TransactionError(
                f"tools.transaction({name!r}) after the response started: nothing would "
                "decide it; open it before answering, or use interlock.transaction()"
            )
        self.txn = AsyncRequestTransaction(self.interlock.transaction(name, timeout=timeout))
        return self.txn

    def tag(self, *tags: str) -> None:
        """Tag the response for the response cache, to purge it later by tag."""
        self._exchange.tags.extend(str(t) for t in tags)

    def note_handler_error(self, exc: BaseException) -> None:
        """For framework integrations: the framework answered ``exc`` with its own 500
        (the middleware then knows a branch's lock wait behind it)."""
        self._exchange.handler_error = exc

    def __repr__(self) -> str:
        return f"<RequestTools request_id={self.request_id}>"
