"""The connection an XA branch runs its statements on, side by side for async and sync code.

The branch logic (``interlock._async.txn.participants.mysql``, generated into ``_sync``) asks a
session to execute its statements; the session knows the driver:

- :class:`MySQLSession` (sync code): the app's PyMySQL connection, called directly.
- :class:`AsyncMySQLSession` (async code): an aiomysql connection, awaited on the loop;
  or a PyMySQL connection, every call made on the connection's own thread
  through :class:`AsyncPyMySQLConnection`, the wrapper the app gets back from
  ``await tx.mysql(conn)`` and does its own work with.

So under asyncio no statement of the branch — the app's nor interlock's — blocks the loop.
aiomysql is PyMySQL's protocol code on asyncio streams: the same errors, attributes and
SQL quoting. asyncmy is not supported: its connection does not expose its host, port and
database, by which the branch keeps track of the commit-marker table.
"""

from __future__ import annotations

import sys
import weakref
from collections.abc import Sequence
from typing import Any

import pymysql

from interlock._concurrency import Strand
from interlock.errors import ConfigError

__all__ = [
    "AsyncMySQLSession",
    "AsyncPyMySQLConnection",
    "AsyncPyMySQLCursor",
    "MySQLSession",
    "async_mysql_session",
    "mysql_session",
]

_SYNC_CURSOR = (
    "await tx.mysql(conn) returns an AsyncPyMySQLConnection under asyncio, so that no "
    "statement blocks the event loop: use `async with conn.cursor() as cur: await "
    "cur.execute(...)` (or pass an aiomysql connection)"
)


def _is_aiomysql(conn: Any) -> bool:
    module = sys.modules.get("aiomysql")  # imported by whoever made the connection
    return module is not None and isinstance(conn, module.Connection)


def _is_asyncmy(conn: Any) -> bool:
    module = sys.modules.get("asyncmy")
    return module is not None and isinstance(conn, module.Connection)


def where(conn: Any) -> tuple[str, int, str]:
    """``(host, port, database)`` of a PyMySQL or aiomysql connection."""
    db = conn.db
    name = db.decode() if isinstance(db, bytes) else str(db or "")
    return (str(conn.host), int(conn.port), name)


class MySQLSession:
    """A sync branch's statements on the app's PyMySQL connection."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn  # what tx.mysql() returns: the connection itself
        self.raw = conn

    def execute(self, statement: str, args: Sequence[Any] | None = None) -> list[Any]:
        with self.raw.cursor() as cur:
            cur.execute(statement, args)
            return list(cur.fetchall())

    def end_read(self) -> None:
        """End the transaction a read outside the branch opened (no-op in autocommit)."""
        if not self.raw.get_autocommit():
            self.raw.rollback()


def mysql_session(conn: Any) -> MySQLSession:
    """The session for ``tx.mysql(conn)`` in sync code."""
    if _is_aiomysql(conn) or isinstance(conn, AsyncPyMySQLConnection):
        kind = "an aiomysql" if _is_aiomysql(conn) else "an AsyncPyMySQLConnection"
        raise ConfigError(
            f"tx.mysql() of a sync Interlock got {kind} connection, which needs an event "
            "loop: use AsyncInterlock in async code, or pass a pymysql.connect(...) connection"
        )
    return MySQLSession(conn)


class AsyncPyMySQLCursor:
    """A PyMySQL cursor whose calls are awaited and run on the connection's thread.

    The names are PyMySQL's (and aiomysql's): ``execute``, ``executemany``, ``fetchone``,
    ``fetchmany``, ``fetchall``, ``close``; ``rowcount``, ``lastrowid``, ``description``.
    """

    def __init__(self, owner: AsyncPyMySQLConnection, cursor: Any) -> None:
        self._owner = owner
        self.raw = cursor

    @property
    def rowcount(self) -> int:
        return int(self.raw.rowcount)

    @property
    def lastrowid(self) -> int | None:
        lastrowid: int | None = self.raw.lastrowid
        return lastrowid

    @property
    def description(self) -> Any:
        return self.raw.description

    async def execute(self, query: str, args: Any = None) -> int:
        result: int = await self._owner.run(self.raw.execute, query, args)
        return result

    async def executemany(self, query: str, args: Any) -> int | None:
        result: int | None = await self._owner.run(self.raw.executemany, query, args)
        return result

    async def fetchone(self) -> Any:
        return await self._owner.run(self.raw.fetchone)

    async def fetchmany(self, size: int | None = None) -> Any:
        return await self._owner.run(self.raw.fetchmany, size)

    async def fetchall(self) -> Any:
        return await self._owner.run(self.raw.fetchall)

    async def close(self) -> None:
        await self._owner.run(self.raw.close)

    async def __aenter__(self) -> AsyncPyMySQLCursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __enter__(self) -> Any:
        raise TypeError(_SYNC_CURSOR)

    def __exit__(self, *exc: object) -> None:  # pragma: no cover - __enter__ raises
        return None


class AsyncPyMySQLConnection:
    """A PyMySQL connection for async code: every call runs on a thread of its own.

    ``await tx.mysql(pymysql_conn)`` returns one (the same wrapper for the same connection
    every time). Its calls, and the XA statements interlock sends, run one at a time in
    order on the connection's thread, so the event loop never waits for MySQL, not even
    for a row lock. ``raw`` is the PyMySQL connection: calling it directly blocks the loop.
    """

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self._strand = Strand(f"interlock-mysql-{id(raw):x}")

    async def run(self, fn: Any, *args: Any) -> Any:
        """Await ``fn(*args)``, a blocking call, on this connection's thread."""
        return await self._strand.run(fn, *args)

    def cursor(self, cursor: Any = None) -> AsyncPyMySQLCursor:
        """A cursor (PyMySQL's ``cursor(cursor_class)``); use ``async with``."""
        return AsyncPyMySQLCursor(self, self.raw.cursor(cursor))

    async def commit(self) -> None:
        await self.run(self.raw.commit)

    async def rollback(self) -> None:
        await self.run(self.raw.rollback)

    async def ping(self, reconnect: bool = False) -> None:
        await self.run(self.raw.ping, reconnect)

    async def aclose(self) -> None:
        """Close the PyMySQL connection (on its thread)."""
        await self.run(self.raw.close)


_wrappers: weakref.WeakKeyDictionary[Any, AsyncPyMySQLConnection] = weakref.WeakKeyDictionary()


class AsyncMySQLSession:
    """An async branch's statements: on an async driver's connection, or on the thread of
    an :class:`AsyncPyMySQLConnection`."""

    def __init__(self, conn: Any, raw: Any, wrapper: AsyncPyMySQLConnection | None) -> None:
        self.conn = conn  # what tx.mysql() returns
        self.raw = raw  # the driver's connection (server_version, host, port, db)
        self._wrapper = wrapper

    async def execute(self, statement: str, args: Sequence[Any] | None = None) -> list[Any]:
        if self._wrapper is not None:
            rows: list[Any] = await self._wrapper.run(self._execute, statement, args)
            return rows
        async with self.raw.cursor() as cur:
            await cur.execute(statement, args)
            return list(await cur.fetchall())

    def _execute(self, statement: str, args: Sequence[Any] | None) -> list[Any]:
        with self.raw.cursor() as cur:
            cur.execute(statement, args)
            return list(cur.fetchall())

    async def end_read(self) -> None:
        """End the transaction a read outside the branch opened (no-op in autocommit)."""
        if self._wrapper is not None:
            if not await self._wrapper.run(self.raw.get_autocommit):
                await self._wrapper.run(self.raw.rollback)
        elif not self.raw.get_autocommit():
            await self.raw.rollback()


def async_mysql_session(conn: Any) -> AsyncMySQLSession:
    """The session for ``await tx.mysql(conn)``: an aiomysql connection is used as it is;
    a PyMySQL connection is wrapped (see :class:`AsyncPyMySQLConnection`)."""
    if isinstance(conn, AsyncPyMySQLConnection):
        return AsyncMySQLSession(conn, conn.raw, conn)
    if isinstance(conn, pymysql.connections.Connection):
        wrapper = _wrappers.get(conn)
        if wrapper is None:
            wrapper = _wrappers[conn] = AsyncPyMySQLConnection(conn)
        return AsyncMySQLSession(wrapper, conn, wrapper)
    if _is_aiomysql(conn):
        return AsyncMySQLSession(conn, conn, None)
    kind = f"{type(conn).__module__}.{type(conn).__qualname__}"
    if _is_asyncmy(conn):
        raise ConfigError(
            f"tx.mysql() got an asyncmy connection ({kind}), which does not expose the "
            "host, port and database that XA branches need; pass an aiomysql "
            "connection, or a PyMySQL one (its calls then run on a thread)"
        )
    raise ConfigError(
        f"tx.mysql() got a {kind}; pass an aiomysql connection, or a PyMySQL one (its "
        "calls then run on a thread of its own)"
    )
