"""MySQL/MariaDB in two-phase commit: an XA branch on the app's connection, and a recovery
resource.

The branch runs its statements through a session (:mod:`interlock._xa._session`), which
knows the driver: under asyncio an aiomysql or asyncmy connection is awaited on the loop
and a PyMySQL one is driven on a thread of its own; the blocking API calls PyMySQL
directly. Calls on one branch are serialized, because a timed-out prepare may still be
running when the abort arrives.

Inside the branch, just before ``XA END``, a marker row ``(gtrid, bqual)`` goes into
``interlock_xa_branches``: it exists afterwards exactly when the branch committed
(:mod:`interlock._xa._markers`). Recovery (``XaRecovery``) uses its own blocking PyMySQL
connection, on a thread under asyncio.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from interlock._concurrency import AsyncMutex, async_run_blocking
from interlock._xa import (
    MARKER_INSERT,
    MARKER_RETENTION,
    MARKER_SELECT,
    MARKER_TABLE,
    NO_SUCH_TABLE,
    XAER_NOTA,
    XAER_OUTSIDE,
    XaRecovery,
    check_version,
    driver_error,
    server_errno,
    xa_xid,
)
from interlock._xa._session import async_mysql_session, where
from interlock.errors import ConfigError, HeuristicOutcome
from interlock.txn._records import BranchRef, PreparedBranch
from interlock.txn._xid import split_branch

logger = logging.getLogger("interlock.txn")

LOCK_WAIT_TIMEOUT = 1205  # ER_LOCK_WAIT_TIMEOUT, "Lock wait timeout exceeded"
_missing_marker: set[tuple[str, int, str]] = set()  # servers warned about once


class AsyncMySQLParticipant:
    """An XA branch on the app's connection; created by ``AsyncTransaction.mysql``.

    Attributes:
        conn: what ``tx.mysql`` returns, to do the branch's work with.
    """

    kind = "mysql"

    def __init__(self, conn: Any, resource: str, xid: str) -> None:
        parts = split_branch(xid)
        if parts is None:
            raise ValueError(f"not an interlock branch id: {xid!r}")
        self.resource = resource
        self.ref = ""
        self.gtrid, self.bqual = parts
        self.xid = xa_xid(*parts)
        self.state = "new"  # new, active, prepared, done
        self.marked = False
        self._session = async_mysql_session(conn)
        self.conn = self._session.conn
        self._mutex = AsyncMutex()

    async def begin(self, durability: str, lock_wait: float | None = None) -> None:
        """``XA START``; ``lock_wait`` (seconds, the transaction's remaining time) sets the
        session's ``innodb_lock_wait_timeout`` first (whole seconds, at least 1; it stays
        set on the session: each branch sets its own)."""
        async with self._mutex:
            check_version(self._session.raw, durability)
            if lock_wait is not None:
                seconds = max(1, int(lock_wait))
                await self._session.execute(f"SET SESSION innodb_lock_wait_timeout = {seconds}")
            try:
                await self._session.execute(f"XA START {self.xid}")
            except Exception as exc:
                if server_errno(exc) == XAER_OUTSIDE:
                    raise ConfigError(
                        "tx.mysql() got a connection with an open transaction; commit or "
                        "roll it back before enlisting the connection"
                    ) from exc
                raise
            self.state = "active"

    def blocked(self, exc: BaseException) -> bool:
        """True if ``exc`` is a statement of this branch that timed out waiting for a lock."""
        return self.state == "active" and server_errno(exc) == LOCK_WAIT_TIMEOUT

    async def prepare(self, xid: str) -> bool:
        async with self._mutex:
            try:
                await self._mark()
                await self._session.execute(f"XA END {self.xid}")
                await self._session.execute(f"XA PREPARE {self.xid}")
            except Exception as exc:
                if server_errno(exc) is None:
                    raise
                logger.info("MySQL refused to prepare %s:%s: %s", self.gtrid, self.bqual, exc)
                await self._rollback_quietly()
                return False
            self.state = "prepared"
            return True

    async def commit_one_phase(self, xid: str) -> bool:
        """``XA COMMIT … ONE PHASE`` (the transaction's only branch); False if refused."""
        async with self._mutex:
            try:
                await self._session.execute(f"XA END {self.xid}")
                await self._session.execute(f"XA COMMIT {self.xid} ONE PHASE")
            except Exception as exc:
                if server_errno(exc) is None:
                    raise
                logger.info("MySQL refused to commit %s:%s: %s", self.gtrid, self.bqual, exc)
                await self._rollback_quietly()
                return False
            self.state = "done"
            return True

    async def _mark(self) -> None:
        server = where(self._session.raw)
        if server in _missing_marker:
            return
        try:
            await self._session.execute(MARKER_INSERT, (self.gtrid, self.bqual))
            self.marked = True
        except Exception as exc:
            if server_errno(exc) != NO_SUCH_TABLE:
                raise
            _missing_marker.add(server)
            logger.warning(
                "table %s is missing on %s:%s/%s, so heuristic outcomes cannot be told there; "
                "run `interlock txn migrate` or register the resource for recovery",
                MARKER_TABLE,
                *server,
            )

    async def _rollback_quietly(self) -> None:
        for statement in (f"XA END {self.xid}", f"XA ROLLBACK {self.xid}"):
            try:
                await self._session.execute(statement)
            except Exception as exc:
                if not driver_error(exc):
                    raise
                logger.debug("%s failed", statement, exc_info=True)
        self.state = "done"

    async def _fate(self) -> str:
        """``committed`` if the branch's marker exists, ``aborted`` if not, else ``unknown``."""
        if not self.marked:
            return "unknown"
        found = await self._session.execute(MARKER_SELECT, (self.gtrid, self.bqual))
        await self._session.end_read()
        return "committed" if found else "aborted"

    async def commit(self, xid: str) -> None:
        async with self._mutex:
            try:
                await self._session.execute(f"XA COMMIT {self.xid}")
            except Exception as exc:
                if server_errno(exc) != XAER_NOTA:
                    raise
                fate = await self._fate()
                if fate != "committed":
                    raise HeuristicOutcome(
                        f"branch {self.gtrid}:{self.bqual} on {self.resource} was {fate} "
                        "although the decision is commit"
                    ) from exc
            self.state = "done"

    async def abort(self, xid: str) -> None:
        async with self._mutex:
            if self.state == "done":
                return
            if self.state == "active":
                try:
                    await self._session.execute(f"XA END {self.xid}")
                except Exception as exc:
                    if server_errno(exc) is None:
                        raise
            try:
                await self._session.execute(f"XA ROLLBACK {self.xid}")
            except Exception as exc:
                if server_errno(exc) != XAER_NOTA:
                    raise
                if await self._fate() == "committed":
                    raise HeuristicOutcome(
                        f"branch {self.gtrid}:{self.bqual} on {self.resource} was committed "
                        "although the decision is abort"
                    ) from exc
            self.state = "done"


class AsyncMySQLResource:
    """Recovery's view of one MySQL/MariaDB database.

    Args:
        name: the resource name used when enlisting (``tx.mysql(conn, resource=name)``).
        connect: a function returning a new PyMySQL connection, e.g.
            ``lambda: pymysql.connect(host=..., user=..., database=...)``.
        retention: seconds commit markers are kept (default 7 days).
    """

    kind = "mysql"

    def __init__(
        self, name: str, connect: Callable[[], Any], retention: float | None = None
    ) -> None:
        self.name = name
        self._recovery = XaRecovery(name, connect, retention or MARKER_RETENTION)

    async def check(self) -> None:
        await async_run_blocking(self._recovery.check)

    async def prepared(self, namespace: str) -> list[PreparedBranch]:
        return await async_run_blocking(self._recovery.prepared, namespace)

    async def finish(self, branch: PreparedBranch, commit: bool) -> str:
        return await async_run_blocking(self._recovery.finish, branch, commit)

    async def fate(self, gtrid: str, ref: BranchRef) -> str:
        return await async_run_blocking(self._recovery.fate, gtrid, ref.bqual)

    async def cleanup(self) -> None:
        await async_run_blocking(self._recovery.cleanup)

    async def aclose(self) -> None:
        await async_run_blocking(self._recovery.close)
