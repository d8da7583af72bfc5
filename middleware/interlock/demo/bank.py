"""A two-database bank for chaos experiments: money moved between PostgreSQL and MariaDB.

Every transfer takes ``amount`` from an account in one database and credits it to an account
in the other, in one two-phase transaction, so the total across both is constant exactly
when every transfer was all-or-nothing. Run as ``python -m interlock.demo.bank COMMAND``:

- ``setup``: create the two account tables (``bank_<namespace>``) with equal balances.
- ``serve``: the app: a transfer every ``--every`` seconds, the background recovery worker
  (on by default; ``--interval``/``--safety`` set its pace) and ``/metrics`` on ``--port``.
- ``coordinate``: start a second coordinator that runs one transfer and parks at
  ``--park-at`` (a transaction event, default ``txn-prepared``: every branch prepared, no
  decision yet), print its pid and exit — a ``pid_command`` for a ``kill`` fault, so the
  coordinator is killed mid-commit at the chosen point.
- ``check``: exit 0 when the money is conserved and no branch of the bank is left prepared
  (``pg_prepared_xacts``, ``XA RECOVER``); prints what it found.

Every command takes ``--redis URL --postgres DSN --mysql URL --namespace NS``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ACCOUNTS = 4
INITIAL = 1000


@dataclass(frozen=True)
class BankConfig:
    """Where the bank lives: Redis (decision log, locks), PostgreSQL, MariaDB, a namespace."""

    redis: str
    postgres: str
    mysql: str
    namespace: str
    durability: str = "strict"

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z0-9_]{1,40}", self.namespace):
            raise ValueError(f"namespace {self.namespace!r} must be 1-40 of a-z, 0-9, _ "
                             "(it names the bank's tables)")  # fmt: skip

    @property
    def table(self) -> str:
        return f"bank_{self.namespace}"

    def mysql_params(self) -> dict[str, Any]:
        url = urllib.parse.urlsplit(self.mysql)
        return {
            "host": url.hostname or "127.0.0.1", "port": url.port or 3306,
            "user": urllib.parse.unquote(url.username or "root"),
            "password": urllib.parse.unquote(url.password or ""),
            "database": url.path.lstrip("/") or "test",
        }  # fmt: skip

    def args(self) -> list[str]:
        """The command-line options that rebuild this configuration."""
        return ["--redis", self.redis, "--postgres", self.postgres, "--mysql", self.mysql,
                "--namespace", self.namespace, "--durability", self.durability]  # fmt: skip


def _pg(config: BankConfig, autocommit: bool = False) -> Any:
    import psycopg

    return psycopg.connect(config.postgres, autocommit=autocommit)


def _my(config: BankConfig, autocommit: bool = False) -> Any:
    import pymysql

    return pymysql.connect(**config.mysql_params(), autocommit=autocommit)


def interlock(config: BankConfig, *, recovery: bool, registry: Any = None) -> Any:
    """An :class:`~interlock.Interlock` on the bank's namespace with both databases."""
    from interlock import Interlock

    il = Interlock(config.redis, namespace=config.namespace, registry=registry,
                   recovery=recovery, durability=config.durability)  # fmt: skip
    il.transactions.add_postgres("postgres", config.postgres)
    il.transactions.add_mysql("mysql", lambda: _my(config))
    return il


def setup(config: BankConfig) -> None:
    """Create both account tables, ``ACCOUNTS`` accounts of ``INITIAL`` each (idempotent)."""
    rows = [(account, INITIAL) for account in range(ACCOUNTS)]
    with _pg(config, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {config.table} "
                     "(id int PRIMARY KEY, balance bigint NOT NULL)")  # fmt: skip
        with conn.cursor() as cur:
            cur.executemany(f"INSERT INTO {config.table} VALUES (%s, %s) "  # noqa: S608 - a checked identifier
                            "ON CONFLICT (id) DO NOTHING", rows)  # fmt: skip
    my = _my(config, autocommit=True)
    try:
        with my.cursor() as cur:
            cur.execute(f"CREATE TABLE IF NOT EXISTS {config.table} "
                        "(id int PRIMARY KEY, balance bigint NOT NULL) ENGINE=InnoDB")  # fmt: skip
            cur.executemany(f"INSERT IGNORE INTO {config.table} VALUES (%s, %s)", rows)  # noqa: S608 - a checked identifier
    finally:
        my.close()


def transfer(config: BankConfig, il: Any, pg: Any, my: Any, rng: random.Random) -> None:
    """Move 1-10 from a random account of one database to one of the other, in 2PC."""
    amount = rng.randint(1, 10)
    sign = rng.choice((-1, 1))  # -1: PostgreSQL pays, +1: MariaDB pays
    with il.transaction("bank-transfer", timeout=5.0) as tx:
        tx.postgres(pg).execute(
            f"UPDATE {config.table} SET balance = balance + %s WHERE id = %s",  # noqa: S608 - a checked identifier
            (sign * amount, rng.randrange(ACCOUNTS)),
        )
        with tx.mysql(my).cursor() as cur:
            cur.execute(f"UPDATE {config.table} SET balance = balance + %s WHERE id = %s",  # noqa: S608 - a checked identifier
                        (-sign * amount, rng.randrange(ACCOUNTS)))  # fmt: skip


def balances(config: BankConfig) -> dict[str, list[int]]:
    with _pg(config, autocommit=True) as conn:
        pg = [int(r[0]) for r in conn.execute(f"SELECT balance FROM {config.table} ORDER BY id")]  # noqa: S608 - a checked identifier
    my = _my(config, autocommit=True)
    try:
        with my.cursor() as cur:
            cur.execute(f"SELECT balance FROM {config.table} ORDER BY id")  # noqa: S608 - a checked identifier
            mysql = [int(r[0]) for r in cur.fetchall()]
    finally:
        my.close()
    return {"postgres": pg, "mysql": mysql}


def prepared(config: BankConfig) -> dict[str, list[str]]:
    """The bank's branches still prepared in each database."""
    from interlock.txn import FORMAT_ID

    prefix = f"il:{config.namespace}:"
    with _pg(config, autocommit=True) as conn:
        pg = [str(r[0]) for r in conn.execute(
            "SELECT gid FROM pg_prepared_xacts WHERE starts_with(gid, %s)", [prefix])]  # fmt: skip
    my = _my(config, autocommit=True)
    try:
        with my.cursor() as cur:
            cur.execute("XA RECOVER")
            mysql = [bytes(r[3]).decode(errors="replace") for r in cur.fetchall()
                     if r[0] == FORMAT_ID and bytes(r[3]).startswith(prefix.encode())]  # fmt: skip
    finally:
        my.close()
    return {"postgres": pg, "mysql": mysql}


def check(config: BankConfig) -> tuple[bool, dict[str, Any]]:
    """(money conserved and nothing prepared, what was seen)."""
    found = balances(config)
    left = prepared(config)
    total = sum(found["postgres"]) + sum(found["mysql"])
    seen = {"total": total, "expected": 2 * ACCOUNTS * INITIAL, "balances": found,
            "prepared": left}  # fmt: skip
    return total == seen["expected"] and not any(left.values()), seen


# ---------------------------------------------------------------------------- processes


def serve(config: BankConfig, port: int, every: float, interval: float, safety: float) -> None:
    """The app: transfers, the recovery worker, /metrics; until SIGTERM/SIGINT."""
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry()
    il = interlock(config, recovery=True, registry=registry)
    il.transactions.start_recovery(interval=interval, safety=safety)
    server, _ = start_http_server(port, addr="127.0.0.1", registry=registry)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    rng = random.Random(os.getpid())
    pg, my = _pg(config), _my(config)
    print(f"bank on http://127.0.0.1:{server.server_port}/metrics", flush=True)
    try:
        while not stop.wait(every):
            try:
                transfer(config, il, pg, my, rng)
            except Exception as exc:  # a database or Redis away: logged, tried again
                print(f"transfer failed: {type(exc).__name__}: {exc}", file=sys.stderr)
                for conn in (pg, my):
                    with contextlib.suppress(Exception):
                        conn.close()
                with contextlib.suppress(Exception):
                    pg, my = _pg(config), _my(config)
    finally:
        server.shutdown()
        server.server_close()
        il.close()


class _Park(logging.Handler):
    """Parks the coordinator when ``action`` is logged: the runner's kill finds it there."""

    def __init__(self, action: str, ready: Path, timeout: float) -> None:
        super().__init__(logging.DEBUG)
        self.action, self.ready, self.timeout = action, ready, timeout

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "event.action", None) != self.action:
            return
        self.ready.write_text(str(os.getpid()), encoding="utf-8")
        time.sleep(self.timeout)  # parked mid-commit until killed; bounded all the same
        os._exit(3)  # never killed: leave as a crash would, without deciding


def park(config: BankConfig, action: str, ready: Path, timeout: float) -> None:
    logger = logging.getLogger("interlock.txn")
    logger.setLevel(logging.DEBUG)
    logger.addHandler(_Park(action, ready, timeout))
    il = interlock(config, recovery=False)  # the app's worker leads recovery, not this one
    transfer(config, il, _pg(config), _my(config), random.Random())
    os._exit(4)  # the park point never came


def coordinate(config: BankConfig, action: str, timeout: float) -> int:
    """Start a parked coordinator (a new session, not our child for long); print its pid."""
    ready = Path(f"/tmp/interlock-bank-{config.namespace}-{os.getpid()}.pid")
    ready.unlink(missing_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "interlock.demo.bank", "park", *config.args(),
         "--park-at", action, "--ready", str(ready), "--timeout", str(timeout)],
        # no pipe of ours stays open in it: a caller reading our output to the end returns
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            print(f"coordinator did not reach {action} (exit {proc.poll()})", file=sys.stderr)
            return 1
        time.sleep(0.02)  # polling the coordinator's ready file
    print(ready.read_text(encoding="utf-8"), flush=True)
    ready.unlink(missing_ok=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m interlock.demo.bank", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("setup", "serve", "coordinate", "park", "check"))
    parser.add_argument("--redis", required=True)
    parser.add_argument("--postgres", required=True)
    parser.add_argument("--mysql", required=True)
    parser.add_argument("--namespace", default="bank")
    parser.add_argument("--durability", default="strict", choices=("strict", "relaxed"))
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--every", type=float, default=0.5)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--safety", type=float, default=10.0)
    parser.add_argument("--park-at", default="txn-prepared")
    parser.add_argument("--ready", default="")
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args(argv)
    config = BankConfig(args.redis, args.postgres, args.mysql, args.namespace, args.durability)
    if args.command == "setup":
        setup(config)
    elif args.command == "serve":
        serve(config, args.port, args.every, args.interval, args.safety)
    elif args.command == "coordinate":
        return coordinate(config, args.park_at, args.timeout)
    elif args.command == "park":
        park(config, args.park_at, Path(args.ready), args.timeout)
    else:
        ok, seen = check(config)
        print(json.dumps(seen))
        return 0 if ok else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
