"""One request's lock, transaction and end, the same for both drivers.

:class:`AsyncRequestCycle` is created per request by a driver's responder (the generated
``RequestCycle`` by the WSGI one); the driver moves the bytes and calls these steps:
:meth:`~AsyncRequestCycle.acquire` before the handler, :meth:`~AsyncRequestCycle.decide`
when the response's status is known (before anything reaches the client),
:meth:`~AsyncRequestCycle.failed` when the handler raised,
:meth:`~AsyncRequestCycle.release` once the body is complete, and
:meth:`~AsyncRequestCycle.end` when the request is over, whatever happened.

The request's transaction commits when its response starts with a 2xx/3xx status and
the client is still there; it aborts on any other status, an exception, no response, or a
client seen gone before the status (docs/middleware.md, *Request-scoped transactions*).
One of interlock's own exceptions leaving the handler before the response started (or
answered by its framework's 500) is answered with its documented problem
(``interlock.http._problems``), the same under both drivers.
"""

from __future__ import annotations

from interlock import _context
from interlock._async.client import AsyncInterlock
from interlock._async.http.tools import AsyncRequestTools, AsyncRequestTransaction
from interlock._async.lock.lease import AsyncLease
from interlock._concurrency import async_shielded
from interlock.errors import BackendError, LockLost, LockTimeout
from interlock.http._core import HttpCore
from interlock.http._exchange import Exchange
from interlock.http._problems import escaped_problem
from interlock.http._responses import Problem
from interlock.http._txn import abort_cause, commits, failure_problem, record, settled


class AsyncRequestCycle:
    """The steps around one request's handler (see the module docstring).

    Attributes:
        ex: the request's state.
        tools: what the handler finds at ``scope["interlock"]``.
    """

    __slots__ = ("_held", "_token", "core", "ex", "tools")

    def __init__(self, interlock: AsyncInterlock, core: HttpCore, ex: Exchange) -> None:
        self.core = core
        self.ex = ex
        self.tools = AsyncRequestTools(interlock, ex)
        self._held: AsyncLease | None = None  # released at most once
        self._token = _context.enter(ex.context)

    async def acquire(self) -> Problem | None:
        """Take the lock of the request's :class:`~interlock.LockRule`, if one applies;
        the problem to answer instead of running the handler (``None``: go on)."""
        if self.ex.lock is None:
            return None
        rule, params = self.ex.lock
        lock = self.tools.interlock.lock(rule.name, rule.resource(params), **rule.options)
        try:
            self._held = self.tools.lease = await lock.acquire()
        except (LockTimeout, BackendError) as exc:
            problem = self.core.lock_failed(self.ex, exc)
            if problem is not None:
                self.ex.status = problem.status
            return problem
        return None

    async def release(self) -> None:
        """Release the rule's lease (once): the body is complete or the request over."""
        lease, self._held = self._held, None
        if lease is None:
            return
        try:
            await lease.release()
        except LockLost as exc:  # the response is out; the log line tells the story
            _context.record("lock", lost=True, lost_reason=lease.lost_reason or str(exc))
        except BackendError as exc:  # the lease expires by itself
            _context.record("lock", release_error=type(exc).__name__)

    async def decide(self) -> Problem | None:
        """The status is known (``ex.status``): commit or abort the request's transaction
        before anything reaches the client; the problem to send instead if it failed, or
        if the framework answered one of interlock's documented failures with its 500."""
        ex = self.ex
        txn = self._undecided()
        problem = await self._settle(txn) if txn is not None else None
        failure = ex.handler_error if (ex.status or 500) >= 500 else None
        if failure is not None:  # nothing committed: a problem now answers the failure
            problem = problem or self._escaped(failure)
            if problem is not None:
                ex.error, ex.error_answered = failure, True
        if problem is not None:
            ex.status = problem.status
        return problem

    async def failed(self, exc: BaseException) -> Problem | None:
        """The handler raised ``exc``: abort the transaction if nothing was answered yet;
        the problem to answer if ``exc`` is one of interlock's documented failures
        (``interlock.http._problems``) or a branch's lock wait. ``None`` once the response
        started (the stream is cut; the log line says why) and for any other error."""
        ex = self.ex
        ex.error = exc
        if ex.status is not None or not isinstance(exc, Exception):
            return None
        txn = self._undecided()
        problem = await self._settle(txn, abort_cause(ex), exc) if txn is not None else None
        problem = problem or self._escaped(exc)
        if problem is not None:  # documented: a problem, not a crash
            ex.status, ex.error_answered = problem.status, True
        return problem

    async def end(self) -> None:
        """The request is over: abort a transaction still open, release the lease."""
        try:
            txn = self._undecided()
            if txn is not None:
                await self._settle(txn, abort_cause(self.ex))
        finally:
            await self.release()

    @property
    def holding(self) -> bool:
        """The rule's lease is held (not released yet)."""
        return self._held is not None

    @property
    def idle(self) -> bool:
        """Nothing left for :meth:`end` to do: no lease held, no transaction undecided."""
        txn = self.tools.txn
        return self._held is None and (txn is None or txn.settled)

    @property
    def deciding(self) -> bool:
        """:meth:`decide` has work: an undecided transaction, or a handler failure that
        the framework answered with its own 500."""
        txn = self.tools.txn
        return self.ex.handler_error is not None or (txn is not None and not txn.settled)

    @property
    def undecided(self) -> bool:
        """A request transaction is open and not decided yet."""
        return self._undecided() is not None

    def finish(self) -> None:
        """Record the metrics and write the log line; leave the request's context."""
        try:
            self.core.finish(self.ex)
        finally:
            _context.leave(self._token)

    def _escaped(self, exc: BaseException) -> Problem | None:
        txn = self.tools.txn
        if txn is None:
            return escaped_problem(exc, self.ex.request_id)
        return escaped_problem(exc, self.ex.request_id, txn=txn.name, xid=txn.xid)

    def _undecided(self) -> AsyncRequestTransaction | None:
        txn = self.tools.txn
        return txn if txn is not None and not txn.settled else None

    async def _settle(
        self,
        txn: AsyncRequestTransaction,
        cause: str | None = None,
        error: BaseException | None = None,
    ) -> Problem | None:
        """Commit or abort ``txn``; the problem to send if the commit failed or the
        handler's failure (``error``, or the one its framework answered with a 500) was a
        branch's lock wait. ``cause`` given: the request ends without a response (abort);
        otherwise the status decides, unless the client is already gone."""
        ex = self.ex
        txn.settled = True
        commit = False
        if not txn.active:
            cause = "handler"  # it called commit() or abort() itself
        elif cause is None:
            commit = commits(ex.status or 500) and not ex.disconnected
            cause = "disconnect" if ex.disconnected else "status"
        try:
            if commit:
                failed: Problem | None = await async_shielded(self._commit(txn))
                return failed
            if txn.active:
                failure = error if error is not None else ex.handler_error
                blocked = await async_shielded(txn.transaction.abort_for(failure))
                if blocked is not None:
                    return failure_problem(ex, txn, blocked)
            return None
        finally:
            settled(ex, txn, cause, await self._invalidate(txn))

    async def _commit(self, txn: AsyncRequestTransaction) -> Problem | None:
        try:
            await txn.transaction.commit()
        except Exception as exc:  # aborted, in doubt, heuristic: all mapped to a problem
            return failure_problem(self.ex, txn, exc)
        return None

    async def _invalidate(self, txn: AsyncRequestTransaction) -> int:
        """Apply the invalidations deferred until the commit (none after an abort)."""
        applied = 0
        for cache, tag in txn.take_due():
            try:
                await cache.invalidate_tag(tag)
                applied += 1
            except Exception as exc:  # committed all the same; the log line says so
                record(self.ex, invalidate_error=type(exc).__name__)
        return applied
