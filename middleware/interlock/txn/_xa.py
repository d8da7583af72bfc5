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
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import pymysql

from interlock.errors import ConfigError, DurabilityError, HeuristicOutcome
from interlock.txn._records import PreparedBranch
from interlock.txn._xid import FORMAT_ID, owned_by, parse_gtrid

logger = logging.getLogger("interlock.txn")

MARKER_TABLE = "interlock_xa_branches"
MARKER_RETENTION = 7 * 86400.0  # seconds a commit marker is kept
MARKER_DDL = (
    "CREATE TABLE IF NOT EXISTS interlock_xa_branches ("
    " gtrid VARBINARY(64) NOT NULL,"
    " bqual VARBINARY(64) NOT NULL,"
    " created TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,"
    " PRIMARY KEY (gtrid, bqual),"
    " KEY created (created)"
    ") ENGINE=InnoDB"
)
MARKER_INSERT = "INSERT INTO interlock_xa_branches (gtrid, bqual) VALUES (%s, %s)"
MARKER_SELECT = "SELECT 1 FROM interlock_xa_branches WHERE gtrid = %s AND bqual = %s"
MARKER_EXPIRED = (
    "SELECT gtrid, bqual FROM interlock_xa_branches"
    " WHERE created < NOW() - INTERVAL %s SECOND LIMIT 5000"
)
MARKER_DELETE = "DELETE FROM interlock_xa_branches WHERE gtrid = %s AND bqual = %s"

# Server error numbers (mysqld_error.h).
XAER_NOTA = 1397  # unknown XID
XAER_OUTSIDE = 1400  # some work is done outside the global transaction
NO_SUCH_TABLE = 1146
LOCK_WAIT_TIMEOUT = 1205
PURGE_EVERY = 600.0  # seconds between purges of old commit markers
ACCESS_DENIED = (1044, 1045, 1142, 1227)
ROLLED_BACK = (1402, 1613, 1614, 1213, 1205)  # XA_RB*, deadlock, lock wait timeout
_SAFE = re.compile(r"^[A-Za-z0-9_.~:-]{1,64}$")

_missing_marker: set[tuple[str, int, str]] = set()  # servers warned about once


def server_errno(exc: BaseException) -> int | None:
    """The server's error number, or ``None`` for client-side/connection errors."""
    if isinstance(exc, pymysql.err.MySQLError) and exc.args and isinstance(exc.args[0], int):
        number: int = exc.args[0]
        return number if number >= 1000 and number < 2000 else None
    return None


def xa_xid(gtrid: str, bqual: str) -> str:
    """The XA id literal ``'gtrid','bqual',formatID`` (ids are checked, never user text)."""
    if not _SAFE.match(gtrid) or not _SAFE.match(bqual):
        raise ValueError(f"invalid XA id {gtrid!r}, {bqual!r}")
    return f"'{gtrid}','{bqual}',{FORMAT_ID}"


def check_version(conn: Any, durability: str) -> None:
    """Refuse servers that roll prepared branches back when the session disconnects.

    MariaDB before 10.5.2 and MySQL before 5.7.7 do: a coordinator crash after prepare
    would then lose the branch while the others commit.
    """
    raw = str(getattr(conn, "server_version", "") or "")
    mariadb = "mariadb" in raw.lower()
    text = raw.split("-", 2)[1] if raw.startswith("5.5.5-") and mariadb else raw
    numbers = tuple(int(n) for n in re.findall(r"\d+", text.split("-")[0])[:3])
    if len(numbers) < 3:
        return
    minimum = (10, 5, 2) if mariadb else (5, 7, 7)
    if numbers < minimum:
        message = (
            f"{'MariaDB' if mariadb else 'MySQL'} {'.'.join(map(str, numbers))} rolls prepared "
            "XA branches back when the client disconnects, so a coordinator crash could "
            f"leave a transaction half committed; upgrade to {'.'.join(map(str, minimum))} "
            "or later (or pass durability='relaxed')"
        )
        if durability == "strict":
            raise DurabilityError(message)
        logger.warning(message)


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


def marker_fate(conn: Any, gtrid: str, bqual: str, marked: bool = True) -> str:
    """``committed`` if the branch's marker exists, ``aborted`` if not, else ``unknown``."""
    if not marked:
        return "unknown"
    with conn.cursor() as cur:
        cur.execute(MARKER_SELECT, (gtrid, bqual))
        found = cur.fetchone() is not None
    if not conn.get_autocommit():
        conn.rollback()
    return "committed" if found else "aborted"


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
