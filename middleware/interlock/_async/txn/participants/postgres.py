"""PostgreSQL in two-phase commit: a participant on the app's psycopg connection, and a
recovery resource that finds and resolves our prepared transactions.

A branch is psycopg's two-phase transaction with the branch id as PostgreSQL's gid
(``PREPARE TRANSACTION 'il:…:1'``). Just before preparing, the branch reads its local
transaction id; recorded with the decision, it later tells (``txid_status``) whether a
branch that vanished was committed or rolled back, so an "unknown gid" in phase two is
resolved by asking the database rather than guessed, and a branch resolved by hand
against the decision is reported as a heuristic outcome.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Awaitable, Callable  # noqa: F401, RUF100 (sync twin: unused)
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.pq import TransactionStatus

from interlock.errors import ConfigError, HeuristicOutcome
from interlock.txn._records import BranchRef, PreparedBranch
from interlock.txn._xid import gtrid_prefix, owned_by, parse_gtrid, split_branch

logger = logging.getLogger("interlock.txn")
Connect = Callable[[], Awaitable[psycopg.AsyncConnection[Any]]]

# Connections known to allow PREPARE, with, per decision table, their identity: postmaster
# start time, database, the table's oid — None if this session may not insert and delete
# there. A branch whose identity is the PostgreSQL decision log's commits last with it.
Identity = tuple[str, str, str]
_checked: weakref.WeakKeyDictionary[Any, dict[str | None, Identity | None]] = (
    weakref.WeakKeyDictionary()
)

PREPARED_DISABLED = (
    "PostgreSQL at {where} has max_prepared_transactions = 0, so it cannot take part in "
    "two-phase commit: set max_prepared_transactions (at least the number of concurrent "
    "transactions, e.g. equal to max_connections) in postgresql.conf or with "
    "`ALTER SYSTEM SET max_prepared_transactions = 100`, then restart PostgreSQL"
)

# The branch's lock wait: the transaction's remaining time, or the session's own
# lock_timeout when that is shorter (0 = none). Transaction-local: gone at COMMIT/PREPARE.
_CAP_LOCK_WAIT = (
    "SELECT set_config('lock_timeout',"
    " (CASE WHEN t > 0 AND t < %(ms)s THEN t ELSE %(ms)s END)::bigint::text, true)"
    " FROM (SELECT extract(epoch FROM current_setting('lock_timeout')::interval) * 1000 AS t)"
    " AS session"
)


def _where(conn: Any) -> str:
    info = conn.info
    return f"{info.host}:{info.port}/{info.dbname}"


def _forget_tpc(conn: psycopg.AsyncConnection[Any]) -> None:
    # psycopg keeps its two-phase state (``_tpc``, set by every psycopg connection) when
    # COMMIT/ROLLBACK PREPARED fails; the branch is finished either way (or in recovery's
    # hands), so free the connection for new work.
    conn._tpc = None


async def _fate(conn: psycopg.AsyncConnection[Any], ref: str) -> str:
    """``committed``, ``aborted``, ``prepared`` or ``unknown`` for local txid ``ref``."""
    if not ref.isdigit():
        return "unknown"
    cur = await conn.execute("SELECT txid_status(%s)", [int(ref)])
    row = await cur.fetchone()
    if not conn.autocommit:
        await conn.rollback()
    status = row[0] if row else None
    if status == "in progress":
        return "prepared"
    return status if status in ("committed", "aborted") else "unknown"


class AsyncPostgresParticipant:
    """A branch on the app's connection; created by ``AsyncTransaction.postgres``."""

    kind = "postgres"

    def __init__(
        self, conn: psycopg.AsyncConnection[Any], resource: str, last_resource: bool = True
    ) -> None:
        self.conn = conn
        self.resource = resource
        self.last_resource = last_resource  # may commit last, with the decision
        self.identity: Identity | None = None
        self.ref = ""
        self.prepared = False
        self.finished = False  # committed or rolled back in one phase

    async def begin(
        self, xid: str, table: str | None = None, lock_wait: float | None = None
    ) -> None:
        """Start the branch: check the connection and the server, then ``tpc_begin``.

        ``table`` is the PostgreSQL decision log's table, if any: the branch learns whether
        it is on the log's database (its :attr:`identity`) in the same check query.
        ``lock_wait`` (seconds, the transaction's remaining time) caps the branch's
        ``lock_timeout``, transaction-local; a shorter one of the session is kept.
        """
        conn = self.conn
        if conn.autocommit:
            raise ConfigError(
                "tx.postgres() needs a connection with autocommit=False; two-phase "
                "transactions cannot run in autocommit mode"
            )
        if conn.info.transaction_status != TransactionStatus.IDLE:
            raise ConfigError(
                "tx.postgres() got a connection with an open transaction; commit or roll it "
                "back before enlisting the connection"
            )
        await conn.tpc_begin(xid)
        if lock_wait is not None:
            await conn.execute(_CAP_LOCK_WAIT, {"ms": max(1, int(lock_wait * 1000))})
        known = _checked.get(conn)
        if known is not None and table in known:
            self.identity = known[table]
            return
        cur = await conn.execute(
            "SELECT current_setting('max_prepared_transactions')::int,"
            " extract(epoch FROM pg_postmaster_start_time())::text, current_database(),"
            " to_regclass(%s)::oid::bigint, CASE WHEN to_regclass(%s) IS NULL THEN false"
            " ELSE has_table_privilege(to_regclass(%s), 'INSERT, DELETE') END",
            [table, table, table],
        )
        row = await cur.fetchone()
        if not row or row[0] <= 0:
            await conn.tpc_rollback()
            raise ConfigError(PREPARED_DISABLED.format(where=_where(conn)))
        if table is not None and row[3] is not None and row[4]:
            self.identity = (str(row[1]), str(row[2]), str(row[3]))
        known = _checked.setdefault(conn, {})
        if table is None or row[3] is not None:  # else ask again once the table exists
            known[table] = self.identity

    def blocked(self, exc: BaseException) -> bool:
        """True if ``exc`` is a statement of this branch that timed out waiting for a lock."""
        return (
            isinstance(exc, pg_errors.LockNotAvailable)
            and self.conn.info.transaction_status == TransactionStatus.INERROR
        )

    async def prepare(self, xid: str) -> bool:
        conn = self.conn
        if conn.info.transaction_status == TransactionStatus.INERROR:
            # PREPARE TRANSACTION would silently act as ROLLBACK: the branch failed earlier.
            return False
        try:
            # One round trip: the local id (to tell the branch's fate later) and PREPARE.
            async with conn.pipeline():
                cur = await conn.execute("SELECT txid_current()")
                await conn.tpc_prepare()
        except psycopg.Error as exc:
            if exc.sqlstate is not None and not conn.broken:
                logger.info("PostgreSQL refused to prepare %s: %s", xid, exc)
                return False  # refused by the server (constraint, serialization, ...)
            raise
        row = await cur.fetchone()
        self.ref = str(row[0]) if row else ""
        self.prepared = True
        return True

    async def commit_one_phase(self, xid: str) -> bool:
        """Commit without prepare (the transaction's only branch): a plain COMMIT."""
        conn = self.conn
        self.finished = True
        if conn.info.transaction_status == TransactionStatus.INERROR:
            await conn.tpc_rollback()
            return False
        try:
            await conn.tpc_commit()
        except psycopg.Error as exc:
            _forget_tpc(conn)
            if exc.sqlstate is not None and not conn.broken:
                logger.info("PostgreSQL refused to commit %s: %s", xid, exc)
                return False  # e.g. a deferred constraint: rolled back
            raise
        return True

    async def commit_last(self, xid: str, statements: list[tuple[Any, list[Any]]]) -> bool:
        """Last-resource commit: run ``statements`` (the decision insert) in the branch's
        unprepared transaction and COMMIT it, in one round trip.

        Returns:
            True once committed (the branch's work and the decision, atomically); False
            when the server refused and rolled everything back (e.g. a decision, such as a
            recovery tombstone, was recorded already; a deferred constraint).

        Raises:
            psycopg.Error: the connection failed; whether it committed is unknown.
        """
        conn = self.conn
        self.finished = True
        if conn.info.transaction_status == TransactionStatus.INERROR:
            await conn.tpc_rollback()
            return False
        try:
            async with conn.pipeline():
                for query, params in statements:
                    await conn.execute(query, params)
                await conn.tpc_commit()
        except psycopg.Error as exc:
            _forget_tpc(conn)
            if exc.sqlstate is not None and not conn.broken:
                logger.info("PostgreSQL refused the last-resource commit of %s: %s", xid, exc)
                await conn.rollback()
                return False
            raise
        return True

    async def commit(self, xid: str) -> None:
        conn = self.conn
        try:
            await conn.tpc_commit()
        except psycopg.Error as exc:
            _forget_tpc(conn)
            if conn.broken or conn.closed or not isinstance(exc, pg_errors.UndefinedObject):
                raise
            fate = await _fate(conn, self.ref)
            if fate == "committed":
                return  # committed already (e.g. by recovery)
            raise HeuristicOutcome(
                f"branch {xid} on {self.resource} was {fate} although the decision is commit"
            ) from exc

    async def abort(self, xid: str) -> None:
        conn = self.conn
        if self.finished:
            return
        if conn.closed or conn.broken:
            _forget_tpc(conn)
            if self.prepared:
                raise ConnectionError(f"connection of prepared branch {xid} is gone")
            return  # the server rolled the unprepared branch back when the session ended
        try:
            await conn.tpc_rollback()
        except psycopg.Error as exc:
            _forget_tpc(conn)
            if conn.broken or conn.closed or not isinstance(exc, pg_errors.UndefinedObject):
                raise
            if await _fate(conn, self.ref) == "committed":
                raise HeuristicOutcome(
                    f"branch {xid} on {self.resource} was committed although the decision is abort"
                ) from exc


class AsyncPostgresResource:
    """Recovery's view of one PostgreSQL database.

    Args:
        name: the resource name used when enlisting (``tx.postgres(conn, resource=name)``).
        connect: a ``postgresql://`` URL / libpq string, or a function returning a new
            connection (recovery switches it to autocommit).
    """

    kind = "postgres"

    def __init__(self, name: str, connect: str | Connect) -> None:
        self.name = name
        self._connect = connect
        self._conn: psycopg.AsyncConnection[Any] | None = None

    async def _session(self) -> psycopg.AsyncConnection[Any]:
        conn = self._conn
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        if isinstance(self._connect, str):
            conn = await psycopg.AsyncConnection.connect(self._connect, autocommit=True)
        else:
            conn = await self._connect()
            await conn.set_autocommit(True)
        self._conn = conn
        return conn

    async def check(self) -> None:
        conn = await self._session()
        cur = await conn.execute("SELECT current_setting('max_prepared_transactions')::int")
        row = await cur.fetchone()
        if not row or row[0] <= 0:
            raise ConfigError(PREPARED_DISABLED.format(where=_where(conn)))

    async def prepared(self, namespace: str) -> list[PreparedBranch]:
        conn = await self._session()
        cur = await conn.execute(
            "SELECT gid FROM pg_prepared_xacts"
            " WHERE database = current_database() AND starts_with(gid, %s)",
            [gtrid_prefix(namespace)],
        )
        found = []
        for (gid,) in await cur.fetchall():
            parts = split_branch(gid)
            if parts is None or not owned_by(parts[0], namespace):
                continue
            found.append(PreparedBranch(self.name, parts[0], parts[1], _created(parts[0])))
        return found

    async def finish(self, branch: PreparedBranch, commit: bool) -> str:
        """Commit or roll back a prepared branch: ``done``, ``gone`` or ``busy``."""
        conn = await self._session()
        verb = "COMMIT PREPARED {}" if commit else "ROLLBACK PREPARED {}"
        gid = f"{branch.gtrid}:{branch.bqual}"
        try:
            await conn.execute(sql.SQL(verb).format(sql.Literal(gid)))
        except pg_errors.UndefinedObject:
            return "gone"
        except pg_errors.ObjectInUse:
            return "busy"  # its coordinator is finishing it right now
        return "done"

    async def fate(self, gtrid: str, ref: BranchRef) -> str:
        return await _fate(await self._session(), ref.ref)

    async def cleanup(self) -> None:
        """Nothing to clean: PostgreSQL keeps no markers."""

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()


def _created(gtrid: str) -> float:
    info = parse_gtrid(gtrid)
    return info.created if info is not None else 0.0
