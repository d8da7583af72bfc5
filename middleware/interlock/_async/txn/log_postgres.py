"""The PostgreSQL decision log: decisions in a table, written in autocommit with
``synchronous_commit=on`` on a server that must run with ``fsync=on`` (checked).

The table is created on first use (``create=True``) or by ``interlock txn migrate``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

from interlock._async.txn.log import validate_durability
from interlock.errors import BackendError, BackendUnavailable, ConfigError, DurabilityError
from interlock.txn._records import Decision, decode_decision, encode_decision

logger = logging.getLogger("interlock.txn")
_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?$")


class AsyncPostgresDecisionLog:
    """Decisions in a PostgreSQL table (see module docstring).

    Args:
        dsn: libpq connection string or ``postgresql://`` URL.
        namespace: the interlock namespace; rows of other namespaces are never touched.
        durability: ``strict`` refuses a server with ``fsync=off``; ``relaxed`` warns.
        table: table name, optionally schema-qualified.
        create: create the table on first use (else run ``interlock txn migrate``).
        connect_timeout: seconds to open a connection.
    """

    def __init__(
        self,
        dsn: str,
        namespace: str,
        *,
        durability: str = "strict",
        table: str = "interlock_txn_decisions",
        create: bool = True,
        connect_timeout: float = 5.0,
    ) -> None:
        if not _TABLE.match(table):
            raise ConfigError(f"table={table!r} is invalid; use an identifier or schema.table")
        self.dsn = dsn
        self.namespace = namespace
        self.durability = validate_durability(durability)
        self.table = table
        self.create = create
        self.connect_timeout = connect_timeout
        self._ident = sql.Identifier(*table.split("."))
        self._idle: list[psycopg.AsyncConnection[Any]] = []
        # Which server and database hold the table (set by check()); a branch on the same
        # database can commit the decision itself (last-resource commit).
        self.identity: tuple[str, str, str] | None = None
        self._qualified: sql.Identifier | None = None

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        try:
            conn = await psycopg.AsyncConnection.connect(
                self.dsn, autocommit=True, connect_timeout=max(1, int(self.connect_timeout))
            )
        except psycopg.Error as exc:
            raise BackendUnavailable(f"decision log PostgreSQL unreachable: {exc}") from exc
        # Our own session commits synchronously whatever the server default is.
        await conn.execute("SET synchronous_commit TO on")
        return conn

    async def _query(
        self, query: str | sql.SQL | sql.Composed, params: Sequence[Any] = ()
    ) -> list[Any]:
        try:
            conn = self._idle.pop()
        except IndexError:
            conn = await self._connect()
        try:
            cur = await conn.execute(query, params)
            rows: list[Any] = await cur.fetchall() if cur.description else []
        except psycopg.Error as exc:
            await conn.close()
            if isinstance(exc, psycopg.OperationalError):
                raise BackendUnavailable(f"decision log PostgreSQL failed: {exc}") from exc
            raise BackendError(f"decision log PostgreSQL error: {exc}") from exc
        if len(self._idle) < 16:
            self._idle.append(conn)
        else:
            await conn.close()
        return rows

    def ddl(self) -> list[sql.Composed]:
        """The statements that create the decision table (idempotent)."""
        index = sql.Identifier(f"{self.table.split('.')[-1]}_namespace_created")
        return [
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} ("
                " xid text PRIMARY KEY,"
                " namespace text NOT NULL,"
                " name text NOT NULL,"
                " outcome text NOT NULL CHECK (outcome IN ('commit', 'abort')),"
                " created double precision NOT NULL,"
                " record text NOT NULL)"
            ).format(self._ident),
            sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (namespace, created)").format(
                index, self._ident
            ),
        ]

    async def migrate(self) -> None:
        """Create the decision table if it does not exist."""
        for statement in self.ddl():
            await self._query(statement)

    async def check(self) -> None:
        rows = await self._query(
            "SELECT current_setting('fsync'), current_setting('full_page_writes')"
        )
        fsync, full_page_writes = rows[0]
        if fsync != "on" or full_page_writes != "on":
            refused = DurabilityError(
                f"the PostgreSQL decision log runs with fsync={fsync} "
                f"full_page_writes={full_page_writes}: a server crash could lose a commit "
                "decision and leave a transaction half committed. Turn both on in "
                "postgresql.conf"
            )
            if self.durability == "strict":
                raise refused
            logger.warning(str(refused), extra={"event.action": "txn-log-not-durable"})
        if self.create:
            await self.migrate()
        rows = await self._query(
            "SELECT extract(epoch FROM pg_postmaster_start_time())::text, current_database(),"
            " c.oid::bigint, n.nspname, c.relname"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.oid = to_regclass(%s)",
            [self.table],
        )
        if rows:
            started, database, oid, schema, relation = rows[0]
            self.identity = (str(started), str(database), str(oid))
            self._qualified = sql.Identifier(str(schema), str(relation))

    def last_resource_statements(
        self, decision: Decision, forget: Sequence[str] = ()
    ) -> list[tuple[sql.Composed, list[Any]]]:
        """The statements that record ``decision`` inside a branch's own transaction on
        this database (last-resource commit): committed with the branch's work, or not at
        all. A plain INSERT: if a decision is recorded already (a recovery tombstone), it
        fails and the branch's COMMIT becomes a rollback, so the first decision still wins.
        """
        if self.identity is None or self._qualified is None:
            raise BackendError("the decision log has not been checked; call check() first")
        table = self._qualified
        statements: list[tuple[sql.Composed, list[Any]]] = [
            # Durable at COMMIT whatever the app's session or the server default says.
            (sql.SQL("SET LOCAL synchronous_commit TO on").format(), []),
        ]
        if forget:
            statements.append(
                (
                    sql.SQL("DELETE FROM {} WHERE namespace = %s AND xid = ANY(%s)").format(table),
                    [self.namespace, list(forget)],
                )
            )
        statements.append(
            (
                sql.SQL(
                    "INSERT INTO {} (xid, namespace, name, outcome, created, record)"
                    " VALUES (%s, %s, %s, %s, %s, %s)"
                ).format(table),
                [
                    decision.xid,
                    self.namespace,
                    decision.name,
                    decision.outcome,
                    decision.created,
                    encode_decision(decision),
                ],
            )
        )
        return statements

    async def decide(self, decision: Decision, forget: Sequence[str] = ()) -> Decision:
        record = encode_decision(decision)
        query = sql.SQL(
            "WITH forgotten AS (DELETE FROM {t} WHERE namespace = %s AND xid = ANY(%s)),"
            " inserted AS ("
            " INSERT INTO {t} (xid, namespace, name, outcome, created, record)"
            " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (xid) DO NOTHING RETURNING record)"
            " SELECT record FROM inserted UNION ALL SELECT record FROM {t} WHERE xid = %s"
        ).format(t=self._ident)
        params = [
            self.namespace,
            list(forget),
            decision.xid,
            self.namespace,
            decision.name,
            decision.outcome,
            decision.created,
            record,
            decision.xid,
        ]
        rows = await self._query(query, params)
        if not rows:  # a concurrent insert committed after our snapshot: read it now
            found = await self.get(decision.xid)
            if found is None:
                raise BackendError(f"decision of {decision.xid} neither recorded nor found")
            return found
        return decision if rows[0][0] == record else decode_decision(rows[0][0])

    async def get(self, xid: str) -> Decision | None:
        query = sql.SQL("SELECT record FROM {} WHERE xid = %s").format(self._ident)
        rows = await self._query(query, [xid])
        return decode_decision(rows[0][0]) if rows else None

    async def forget(self, xids: Sequence[str]) -> None:
        if xids:
            query = sql.SQL("DELETE FROM {} WHERE namespace = %s AND xid = ANY(%s)")
            await self._query(query.format(self._ident), [self.namespace, list(xids)])

    async def list(self) -> list[Decision]:
        query = sql.SQL("SELECT record FROM {} WHERE namespace = %s ORDER BY created")
        rows = await self._query(query.format(self._ident), [self.namespace])
        return [decode_decision(row[0]) for row in rows]

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.close()
