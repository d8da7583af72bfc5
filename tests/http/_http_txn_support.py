"""Shared pieces of the request-scoped transaction tests: a PostgreSQL table, participants."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

REFUSE = "refuse"  # a request body that makes the handler enlist a participant voting no


@contextmanager
def orders_table(dsn: str) -> Iterator[str]:
    """A fresh ``orders`` table (id text primary key, sku text); dropped afterwards."""
    table = f"orders_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (id text PRIMARY KEY, sku text NOT NULL)")
    try:
        yield table
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {table}")


def rows(dsn: str, table: str) -> list[tuple[str, str]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return [(str(a), str(b)) for a, b in conn.execute(f"SELECT id, sku FROM {table}")]


def prepared(dsn: str, namespace: str) -> list[str]:
    """Our prepared PostgreSQL transactions left behind (none after any outcome)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        found = conn.execute("SELECT gid FROM pg_prepared_xacts").fetchall()
    return [str(gid) for (gid,) in found if f":{namespace}:" in str(gid)]


class Journal:
    """What happened, in order: participant calls and messages sent to the client."""

    def __init__(self) -> None:
        self.events: list[str] = []


class VotesNo:
    """A participant that refuses at prepare (sync API)."""

    def __init__(self, journal: Journal | None = None) -> None:
        self.journal = journal or Journal()

    def prepare(self, xid: str) -> bool:
        self.journal.events.append("prepare:no")
        return False

    def commit(self, xid: str) -> None:
        self.journal.events.append("commit")

    def abort(self, xid: str) -> None:
        self.journal.events.append("abort")


class AsyncVotesNo:
    """A participant that refuses at prepare (async API)."""

    def __init__(self, journal: Journal | None = None) -> None:
        self.journal = journal or Journal()

    async def prepare(self, xid: str) -> bool:
        self.journal.events.append("prepare:no")
        return False

    async def commit(self, xid: str) -> None:
        self.journal.events.append("commit")

    async def abort(self, xid: str) -> None:
        self.journal.events.append("abort")


class AsyncRecorder:
    """A participant that votes yes and records when it is asked what."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    async def prepare(self, xid: str) -> bool:
        self.journal.events.append("prepare")
        return True

    async def commit(self, xid: str) -> None:
        self.journal.events.append("commit")

    async def abort(self, xid: str) -> None:
        self.journal.events.append("abort")


def txn_line(lines: list[dict[str, Any]], path: str) -> dict[str, Any]:
    (line,) = [r for r in lines if r.get("url.path") == path]
    return line
