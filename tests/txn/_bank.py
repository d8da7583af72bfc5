"""A three-store bank used by the transaction tests, their worker processes and the benchmark.

Accounts live in PostgreSQL, MariaDB and a Redis store. A transfer takes ``2 * amount`` from
an account in one store and credits ``amount`` to an account in each of the two others, in
one two-phase transaction; any strict subset of its branches changes the total, so the
total balance is constant exactly when every transfer was all-or-nothing.
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pymysql

from interlock import Interlock
from interlock.txn import FORMAT_ID

STORES = ("postgres", "mysql", "redis")


class InsufficientFunds(Exception):
    """The source account cannot pay: the transfer aborts (reason ``client``)."""


def new_namespace() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@dataclass
class Bank:
    namespace: str
    redis_url: str
    pg_dsn: str
    mysql: dict[str, Any]
    accounts: int = 4
    initial: int = 1000
    decision_log: str | None = None
    table: str = field(init=False)
    _opened: list[Any] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.table = f"bank_{self.namespace}"

    # -- connections (closed by close()) -------------------------------------------------

    def pg(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(self.pg_dsn)
        self._opened.append(conn)
        return conn

    def my(self, **kwargs: Any) -> Any:
        conn = pymysql.connect(**self.mysql, **kwargs)
        self._opened.append(conn)
        return conn

    def close(self) -> None:
        opened, self._opened = self._opened, []
        for conn in opened:
            with contextlib.suppress(Exception):  # already closed or broken
                conn.close()

    def spec(self) -> dict[str, Any]:
        """The constructor arguments, to rebuild this bank in another process."""
        return {
            "namespace": self.namespace,
            "redis_url": self.redis_url,
            "pg_dsn": self.pg_dsn,
            "mysql": self.mysql,
            "accounts": self.accounts,
            "initial": self.initial,
            "decision_log": self.decision_log,
        }

    def interlock(self, **kwargs: Any) -> Interlock:
        """An interlock on this bank's namespace with both databases registered.

        Its recovery worker does not run by itself (``recovery=False``): the tests drive
        recovery passes and read their reports.
        """
        options: dict[str, Any] = {"namespace": self.namespace, "registry": None}
        options["recovery"] = False
        if self.decision_log is not None:
            options["decision_log"] = self.decision_log
            options["durability"] = "relaxed"  # the throwaway PostgreSQL runs fsync=off
        options.update(kwargs)
        il = Interlock(self.redis_url, **options)
        il.transactions.add_postgres("postgres", self.pg_dsn)
        il.transactions.add_mysql("mysql", lambda: pymysql.connect(**self.mysql))
        return il

    # -- set-up and inspection -----------------------------------------------------------

    def setup(self) -> None:
        with psycopg.connect(self.pg_dsn, autocommit=True) as conn:
            conn.execute(f"CREATE TABLE {self.table} (id int PRIMARY KEY, balance bigint NOT NULL)")
            for account in range(self.accounts):
                conn.execute(f"INSERT INTO {self.table} VALUES (%s, %s)", (account, self.initial))
            conn.execute(f"CREATE TABLE {self.table}_ledger (xid text PRIMARY KEY)")
        my = self.my(autocommit=True)
        try:
            with my.cursor() as cur:
                cur.execute(
                    f"CREATE TABLE {self.table} (id int PRIMARY KEY, balance bigint NOT NULL)"
                    " ENGINE=InnoDB"
                )
                for account in range(self.accounts):
                    cur.execute(
                        f"INSERT INTO {self.table} VALUES (%s, %s)", (account, self.initial)
                    )
        finally:
            my.close()
        il = self.interlock()
        try:
            with il.transaction("seed") as tx:
                store = tx.redis("bank")
                for account in range(self.accounts):
                    store.set(account, self.initial)
        finally:
            il.close()

    def ledger(self) -> int:
        """Transfers committed with ``ledger=True`` (a row each, in the PostgreSQL branch)."""
        with psycopg.connect(self.pg_dsn, autocommit=True) as conn:
            row = conn.execute(f"SELECT count(*) FROM {self.table}_ledger").fetchone()
        return int(row[0]) if row else 0

    def balances(self) -> dict[str, list[int]]:
        with psycopg.connect(self.pg_dsn, autocommit=True) as conn:
            pg = [r[0] for r in conn.execute(f"SELECT balance FROM {self.table} ORDER BY id")]
        my = self.my(autocommit=True)
        try:
            with my.cursor() as cur:
                cur.execute(f"SELECT balance FROM {self.table} ORDER BY id")
                mysql = [int(r[0]) for r in cur.fetchall()]
        finally:
            my.close()
        il = Interlock(self.redis_url, namespace=self.namespace, registry=None)
        try:
            store = il.transactions.store("bank")
            redis = [int(store.get(a) or 0) for a in range(self.accounts)]
        finally:
            il.close()
        return {"postgres": pg, "mysql": mysql, "redis": redis}

    def total(self) -> int:
        return sum(sum(values) for values in self.balances().values())

    @property
    def expected_total(self) -> int:
        return 3 * self.accounts * self.initial

    def prepared(self) -> dict[str, list[str]]:
        """Our prepared branches in each store, and commit decisions still logged."""
        prefix = f"il:{self.namespace}:"
        with psycopg.connect(self.pg_dsn, autocommit=True) as conn:
            pg = [
                r[0]
                for r in conn.execute(
                    "SELECT gid FROM pg_prepared_xacts WHERE starts_with(gid, %s)", [prefix]
                )
            ]
        my = self.my(autocommit=True)
        try:
            with my.cursor() as cur:
                cur.execute("XA RECOVER")
                mysql = [
                    r[3].decode()
                    for r in cur.fetchall()
                    if r[0] == FORMAT_ID and r[3].decode().startswith(prefix)
                ]
        finally:
            my.close()
        il = Interlock(self.redis_url, namespace=self.namespace, registry=None)
        try:
            redis_branches = il.transactions.resources["redis"].prepared(self.namespace)
            decisions = il.transactions.log.list()
        finally:
            il.close()
        return {
            "postgres": pg,
            "mysql": mysql,
            "redis": [f"{b.gtrid}:{b.bqual}" for b in redis_branches],
            "decisions": [d.xid for d in decisions if d.outcome == "commit"],
        }

    def tombstones(self) -> list[str]:
        """Abort decisions written by recovery (kept a day to fence late coordinators)."""
        il = Interlock(self.redis_url, namespace=self.namespace, registry=None)
        try:
            return [d.xid for d in il.transactions.log.list() if d.outcome == "abort"]
        finally:
            il.close()

    def drop(self) -> None:
        self.close()
        with psycopg.connect(self.pg_dsn, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {self.table}, {self.table}_ledger")
        my = self.my(autocommit=True)
        try:
            with my.cursor() as cur:
                cur.execute(f"DROP TABLE IF EXISTS {self.table}")
        finally:
            my.close()


def transfer(
    bank: Bank,
    il: Interlock,
    pg: psycopg.Connection[Any],
    my: Any,
    *,
    source: str,
    accounts: tuple[int, int, int],
    amount: int,
    name: str = "transfer",
    timeout: float = 10.0,
    ledger: bool = False,
) -> Any:
    """One transfer: ``source`` pays ``2 * amount``; the two other stores get ``amount``.

    ``accounts`` are the PostgreSQL, MariaDB and Redis accounts. Stores are touched in a
    fixed order (PostgreSQL, MariaDB, Redis), so concurrent transfers cannot deadlock
    across databases.
    """
    delta = {s: (-2 * amount if s == source else amount) for s in STORES}
    with il.transaction(name, timeout=timeout) as tx:
        cur = tx.postgres(pg).execute(
            f"UPDATE {bank.table} SET balance = balance + %s WHERE id = %s AND balance + %s >= 0",
            (delta["postgres"], accounts[0], delta["postgres"]),
        )
        if cur.rowcount != 1:
            raise InsufficientFunds("postgres")
        if ledger:
            pg.execute(f"INSERT INTO {bank.table}_ledger (xid) VALUES (%s)", [tx.xid])
        with tx.mysql(my).cursor() as mcur:
            mcur.execute(
                f"UPDATE {bank.table} SET balance = balance + %s"
                " WHERE id = %s AND balance + %s >= 0",
                (delta["mysql"], accounts[1], delta["mysql"]),
            )
            if mcur.rowcount != 1:
                raise InsufficientFunds("mysql")
        tx.redis("bank").incrby(accounts[2], delta["redis"], min=0)
    return tx
