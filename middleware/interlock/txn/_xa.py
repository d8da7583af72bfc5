"""MySQL/MariaDB XA through PyMySQL (blocking; the async API runs these on threads).

One :class:`XaBranch` drives one branch on the app's connection; :class:`XaRecovery`
lists and resolves our prepared branches over its own autocommit connection. Calls on a
connection are serialized by a lock, because a timed-out prepare may still be running on
a thread when the abort arrives.

Inside each branch, just before ``XA END``, a marker row ``(gtrid, bqual)`` goes into
``interlock_xa_branches``: it exists afterwards exactly when the branch committed, which
tells recovery the fate of a branch that vanished (MySQL keeps no other record). Markers
are deleted after a retention period. Without the table (``interlock txn migrate`` or a
registered recovery resource creates it) branches still work; fates read ``unknown``.

This module holds :class:`XaBranch` and re-exports the rest: server details in
``_xa_server``, commit markers in ``_xa_markers``, :class:`XaRecovery` in ``_xa_recovery``.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import pymysql

from interlock.errors import ConfigError, HeuristicOutcome
from interlock.txn._xa_markers import (
    MARKER_DDL,
    MARKER_DELETE,
    MARKER_EXPIRED,
    MARKER_INSERT,
    MARKER_RETENTION,
    MARKER_SELECT,
    MARKER_TABLE,
    PURGE_EVERY,
    marker_fate,
)
from interlock.txn._xa_recovery import XaRecovery
from interlock.txn._xa_server import (
    ACCESS_DENIED,
    LOCK_WAIT_TIMEOUT,
    NO_SUCH_TABLE,
    ROLLED_BACK,
    XAER_NOTA,
    XAER_OUTSIDE,
    check_version,
    server_errno,
    xa_xid,
)

__all__ = [
    "ACCESS_DENIED",
    "LOCK_WAIT_TIMEOUT",
    "MARKER_DDL",
    "MARKER_DELETE",
    "MARKER_EXPIRED",
    "MARKER_INSERT",
    "MARKER_RETENTION",
    "MARKER_SELECT",
    "MARKER_TABLE",
    "NO_SUCH_TABLE",
    "PURGE_EVERY",
    "ROLLED_BACK",
    "XAER_NOTA",
    "XAER_OUTSIDE",
    "XaBranch",
    "XaRecovery",
    "check_version",
    "marker_fate",
    "server_errno",
    "xa_xid",
]

logger = logging.getLogger("interlock.txn")

_missing_marker: set[tuple[str, int, str]] = set()  # servers warned about once


class XaBranch:
    """One XA branch on the app's PyMySQL connection."""

    def __init__(self, conn: Any, gtrid: str, bqual: str, resource: str) -> None:
        self.conn = conn
        self.gtrid = gtrid
        self.bqual = bqual
        self.resource = resource
        self.xid = xa_xid(gtrid, bqual)
        self.state = "new"  # new, active, prepared, done
        self.marked = False
        self._lock = threading.Lock()

    def _execute(self, statement: str, args: Any = None) -> Any:
        with self.conn.cursor() as cur:
            cur.execute(statement, args)
            return cur.fetchall()

    def start(self, durability: str) -> None:
        with self._lock:
            check_version(self.conn, durability)
            try:
                self._execute(f"XA START {self.xid}")
            except pymysql.err.MySQLError as exc:
                if server_errno(exc) == XAER_OUTSIDE:
                    raise ConfigError(
                        "tx.mysql() got a connection with an open transaction; commit or "
                        "roll it back before enlisting the connection"
                    ) from exc
                raise
            self.state = "active"

    def prepare(self) -> bool:
        with self._lock:
            try:
                self._mark()
                self._execute(f"XA END {self.xid}")
                self._execute(f"XA PREPARE {self.xid}")
            except pymysql.err.MySQLError as exc:
                if server_errno(exc) is None:
                    raise
                logger.info("MySQL refused to prepare %s:%s: %s", self.gtrid, self.bqual, exc)
                self._rollback_quietly()
                return False
            self.state = "prepared"
            return True

    def commit_one_phase(self) -> bool:
        """``XA COMMIT … ONE PHASE`` (the transaction's only branch); False if refused."""
        with self._lock:
            try:
                self._execute(f"XA END {self.xid}")
                self._execute(f"XA COMMIT {self.xid} ONE PHASE")
            except pymysql.err.MySQLError as exc:
                if server_errno(exc) is None:
                    raise
                logger.info("MySQL refused to commit %s:%s: %s", self.gtrid, self.bqual, exc)
                self._rollback_quietly()
                return False
            self.state = "done"
            return True

    def _mark(self) -> None:
        where = self._server()
        if where in _missing_marker:
            return
        try:
            self._execute(MARKER_INSERT, (self.gtrid, self.bqual))
            self.marked = True
        except pymysql.err.MySQLError as exc:
            if server_errno(exc) != NO_SUCH_TABLE:
                raise
            _missing_marker.add(where)
            logger.warning(
                "table %s is missing on %s:%s/%s, so heuristic outcomes cannot be told there; "
                "run `interlock txn migrate` or register the resource for recovery",
                MARKER_TABLE,
                *where,
            )

    def _server(self) -> tuple[str, int, str]:
        db = self.conn.db
        return (str(self.conn.host), int(self.conn.port), db.decode() if db else "")

    def _rollback_quietly(self) -> None:
        for statement in (f"XA END {self.xid}", f"XA ROLLBACK {self.xid}"):
            try:
                self._execute(statement)
            except pymysql.err.MySQLError:
                logger.debug("%s failed", statement, exc_info=True)
        self.state = "done"

    def commit(self) -> None:
        with self._lock:
            try:
                self._execute(f"XA COMMIT {self.xid}")
            except pymysql.err.MySQLError as exc:
                if server_errno(exc) != XAER_NOTA:
                    raise
                fate = marker_fate(self.conn, self.gtrid, self.bqual, self.marked)
                if fate != "committed":
                    raise HeuristicOutcome(
                        f"branch {self.gtrid}:{self.bqual} on {self.resource} was {fate} "
                        "although the decision is commit"
                    ) from exc
            self.state = "done"

    def abort(self) -> None:
        with self._lock:
            if self.state == "done":
                return
            if self.state == "active":
                try:
                    self._execute(f"XA END {self.xid}")
                except pymysql.err.MySQLError as exc:
                    if server_errno(exc) is None:
                        raise
            try:
                self._execute(f"XA ROLLBACK {self.xid}")
            except pymysql.err.MySQLError as exc:
                if server_errno(exc) != XAER_NOTA:
                    raise
                if marker_fate(self.conn, self.gtrid, self.bqual, self.marked) == "committed":
                    raise HeuristicOutcome(
                        f"branch {self.gtrid}:{self.bqual} on {self.resource} was committed "
                        "although the decision is abort"
                    ) from exc
            self.state = "done"
