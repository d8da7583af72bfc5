"""Recovery's side of MySQL/MariaDB XA: list, resolve and purge our prepared branches.

:class:`XaRecovery` works over its own autocommit connection (blocking; the async API
runs it on threads); calls on it are serialized by a lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pymysql

from interlock._xa._markers import (
    MARKER_DDL,
    MARKER_DELETE,
    MARKER_EXPIRED,
    MARKER_SELECT,
    PURGE_EVERY,
)
from interlock._xa._server import (
    ACCESS_DENIED,
    LOCK_WAIT_TIMEOUT,
    NO_SUCH_TABLE,
    XAER_NOTA,
    server_errno,
    xa_xid,
)
from interlock.errors import ConfigError
from interlock.txn._records import PreparedBranch
from interlock.txn._xid import FORMAT_ID, owned_by, parse_gtrid

logger = logging.getLogger("interlock.txn")


class XaRecovery:
    """Recovery's view of one MySQL/MariaDB database (blocking).

    Args:
        name: the resource name used when enlisting (``tx.mysql(conn, resource=name)``).
        connect: a function returning a new PyMySQL connection (switched to autocommit).
        retention: seconds a commit marker is kept (heuristics are told within it).
    """

    def __init__(self, name: str, connect: Callable[[], Any], retention: float) -> None:
        self.name = name
        self._connect = connect
        self.retention = retention
        self._conn: Any = None
        self._lock = threading.Lock()
        self._next_purge = 0.0

    def _session(self) -> Any:
        if self._conn is not None and self._conn.open:
            return self._conn
        conn = self._connect()
        conn.autocommit(True)
        with conn.cursor() as cur:
            cur.execute("SET SESSION innodb_lock_wait_timeout = 2")  # never stall recovery
        self._conn = conn
        return conn

    def _execute(self, statement: str, args: Any = None) -> Any:
        try:
            with self._session().cursor() as cur:
                cur.execute(statement, args)
                return cur.fetchall()
        except pymysql.err.MySQLError as exc:
            if server_errno(exc) is None:
                self.close()
            raise

    def check(self) -> None:
        with self._lock:
            try:
                self._execute("XA RECOVER")
            except pymysql.err.MySQLError as exc:
                if server_errno(exc) in ACCESS_DENIED:
                    raise ConfigError(
                        f"resource {self.name!r}: the recovery user may not run XA RECOVER "
                        f"({exc}); on MySQL 8 `GRANT XA_RECOVER_ADMIN ON *.* TO <user>`"
                    ) from exc
                raise
            self._execute(MARKER_DDL)

    def prepared(self, namespace: str) -> list[PreparedBranch]:
        with self._lock:
            rows = self._execute("XA RECOVER")
        found = []
        for format_id, gtrid_length, _bqual_length, data in rows:
            if int(format_id) != FORMAT_ID:
                continue
            raw = data if isinstance(data, bytes) else str(data).encode()
            gtrid = raw[: int(gtrid_length)].decode(errors="replace")
            bqual = raw[int(gtrid_length) :].decode(errors="replace")
            info = parse_gtrid(gtrid)
            if info is None or not owned_by(gtrid, namespace):
                continue
            found.append(PreparedBranch(self.name, gtrid, bqual, info.created))
        return found

    def finish(self, branch: PreparedBranch, commit: bool) -> str:
        verb = "XA COMMIT" if commit else "XA ROLLBACK"
        with self._lock:
            try:
                self._execute(f"{verb} {xa_xid(branch.gtrid, branch.bqual)}")
            except pymysql.err.MySQLError as exc:
                if server_errno(exc) != XAER_NOTA:
                    raise
                # Listed a moment ago: still attached to its live session, or just resolved.
                rows = self._execute("XA RECOVER")
                wanted = (branch.gtrid + branch.bqual).encode()
                listed = any(
                    int(r[0]) == FORMAT_ID
                    and (r[3] if isinstance(r[3], bytes) else str(r[3]).encode()) == wanted
                    for r in rows
                )
                return "busy" if listed else "gone"
        return "done"

    def fate(self, gtrid: str, bqual: str) -> str:
        """``committed``/``aborted`` by the marker; ``unknown`` past the retention."""
        info = parse_gtrid(gtrid)
        with self._lock:
            try:
                rows = self._execute(MARKER_SELECT, (gtrid, bqual))
            except pymysql.err.MySQLError as exc:
                if server_errno(exc) == NO_SUCH_TABLE:
                    return "unknown"
                raise
        if rows:
            return "committed"
        if info is None or time.time() - info.created > self.retention * 0.9:
            return "unknown"
        return "aborted"

    def cleanup(self) -> None:
        """Delete markers older than the retention (at most every ``PURGE_EVERY`` s)."""
        now = time.monotonic()
        if now < self._next_purge:
            return
        with self._lock:
            try:
                # A plain read finds expired markers; deleting them by key never waits on
                # the (locked) marker row of a branch that is prepared right now.
                expired = self._execute(MARKER_EXPIRED, (int(self.retention),))
                if expired:
                    with self._session().cursor() as cur:
                        cur.executemany(MARKER_DELETE, list(expired))
            except pymysql.err.MySQLError as exc:
                if server_errno(exc) not in (NO_SUCH_TABLE, LOCK_WAIT_TIMEOUT):
                    raise
                logger.debug("purging commit markers of %s skipped: %s", self.name, exc)
        self._next_purge = now + PURGE_EVERY

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # already broken
                logger.debug("closing a recovery connection failed", exc_info=True)
