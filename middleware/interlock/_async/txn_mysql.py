"""MySQL/MariaDB in two-phase commit: XA branches on the app's PyMySQL connection and a
recovery resource. PyMySQL is blocking, so the async API runs every call on a thread
(``async_run_blocking``); the XA logic itself is in :mod:`interlock.txn._xa`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from interlock._synchronization import async_run_blocking
from interlock.txn._records import BranchRef, PreparedBranch
from interlock.txn._xa import MARKER_RETENTION, XaBranch, XaRecovery
from interlock.txn._xid import split_branch


class AsyncMySQLParticipant:
    """An XA branch on the app's connection; created by ``AsyncTransaction.mysql``."""

    kind = "mysql"

    def __init__(self, conn: Any, resource: str, xid: str) -> None:
        parts = split_branch(xid)
        if parts is None:
            raise ValueError(f"not an interlock branch id: {xid!r}")
        self.resource = resource
        self.ref = ""
        self._branch = XaBranch(conn, parts[0], parts[1], resource)

    async def begin(self, durability: str) -> None:
        await async_run_blocking(self._branch.start, durability)

    async def prepare(self, xid: str) -> bool:
        return await async_run_blocking(self._branch.prepare)

    async def commit_one_phase(self, xid: str) -> bool:
        return await async_run_blocking(self._branch.commit_one_phase)

    async def commit(self, xid: str) -> None:
        await async_run_blocking(self._branch.commit)

    async def abort(self, xid: str) -> None:
        await async_run_blocking(self._branch.abort)


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
