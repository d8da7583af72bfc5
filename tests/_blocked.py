"""A stock row held by someone else's prepared branch, on PostgreSQL or MariaDB: what a
Redis stop mid-order leaves behind until recovery resolves it (issue 11 item 5).

The app's connections carry a lock wait of their own (:data:`SERVER_WAIT`), standing in for
the servers' defaults (none on PostgreSQL, 50 s on MariaDB): without the transaction's cap
an order waits that long, then fails with a generic error.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pymysql

SKU = "sku-1"
SERVER_WAIT = 8  # seconds the app's sessions wait for a row lock by themselves


class Stock:
    """A ``stock (sku, qty)`` table with one row, on ``kind`` (``postgres`` or ``mysql``)."""

    def __init__(self, kind: str, server: Any) -> None:
        self.kind = kind
        self.server = server
        self.table = f"stock_{uuid.uuid4().hex[:10]}"
        self.update = f"UPDATE {self.table} SET qty = qty - 1 WHERE sku = %s"

    def _admin(self, statement: str, args: Any = None) -> Any:
        if self.kind == "postgres":
            with psycopg.connect(self.server.dsn, autocommit=True) as conn:
                cur = conn.execute(statement, args)
                return cur.fetchall() if cur.description else None
        with pymysql.connect(**self.server.params, autocommit=True) as conn, conn.cursor() as cur:
            cur.execute(statement, args)
            return cur.fetchall()

    def create(self) -> None:
        engine = "" if self.kind == "postgres" else " ENGINE=InnoDB"
        self._admin(f"CREATE TABLE {self.table} (sku varchar(20) PRIMARY KEY, qty int){engine}")
        self._admin(f"INSERT INTO {self.table} VALUES (%s, 5)", [SKU])

    def drop(self) -> None:
        self._admin(f"DROP TABLE IF EXISTS {self.table}")

    def qty(self) -> int:
        ((qty,),) = self._admin(f"SELECT qty FROM {self.table} WHERE sku = %s", [SKU])
        return int(qty)

    def connect(self) -> Any:
        """The app's blocking connection (autocommit off, its own lock wait)."""
        if self.kind == "postgres":
            return psycopg.connect(
                self.server.dsn, options=f"-c statement_timeout={SERVER_WAIT * 1000}"
            )
        return pymysql.connect(
            **self.server.params,
            init_command=f"SET SESSION innodb_lock_wait_timeout = {SERVER_WAIT}",
        )

    def use(self, conn: Any) -> None:
        """The handler's statement, on an enlisted blocking connection."""
        if self.kind == "postgres":
            conn.execute(self.update, [SKU])
        else:
            with conn.cursor() as cur:
                cur.execute(self.update, [SKU])

    async def ause(self, conn: Any) -> None:
        """The handler's statement, on an enlisted connection under asyncio."""
        if self.kind == "postgres":
            await conn.execute(self.update, [SKU])
        else:
            async with conn.cursor() as cur:
                await cur.execute(self.update, [SKU])

    async def aconnect(self) -> Any:
        """The app's connection under asyncio (PyMySQL: ``tx.mysql`` wraps it)."""
        if self.kind == "postgres":
            return await psycopg.AsyncConnection.connect(
                self.server.dsn, options=f"-c statement_timeout={SERVER_WAIT * 1000}"
            )
        return self.connect()

    @contextmanager
    def held(self) -> Iterator[str]:
        """A prepared branch (not ours) that updated the row, rolled back afterwards."""
        gid = f"blocker-{uuid.uuid4().hex[:12]}"
        if self.kind == "postgres":
            with psycopg.connect(self.server.dsn) as conn:
                conn.execute(self.update, [SKU])
                conn.execute(f"PREPARE TRANSACTION '{gid}'")
            undo = f"ROLLBACK PREPARED '{gid}'"
        else:
            with pymysql.connect(**self.server.params) as conn, conn.cursor() as cur:
                cur.execute(f"XA START '{gid}'")
                cur.execute(self.update, [SKU])
                cur.execute(f"XA END '{gid}'")
                cur.execute(f"XA PREPARE '{gid}'")
            undo = f"XA ROLLBACK '{gid}'"
        try:
            yield gid
        finally:
            self._admin(undo)
