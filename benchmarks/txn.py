#!/usr/bin/env python3
"""Two-phase-commit benchmark: interlock 2PC across PostgreSQL + MariaDB vs the same two
updates committed locally without atomicity; and recovery of in-doubt transactions.

Run:  .venv/bin/python benchmarks/txn.py [--transfers 1000] [--workers 4] [--seconds 5]
                                         [--in-doubt 1000] [--fast] [--write]

Servers are started by this script, durable as in production: PostgreSQL with fsync=on and
synchronous_commit=on, MariaDB with innodb_flush_log_at_trx_commit=1, Redis (the decision
log) with appendfsync always. ``--fast`` turns fsync off everywhere (round-trip bound).

1. Sequential transfers/s, one client: ``local`` = UPDATE+COMMIT on PostgreSQL then on
   MariaDB (not atomic); ``2pc`` = the same updates in one interlock transaction;
   ``2pc+redis`` = plus a Redis-store branch; ``2pc-lrc`` = ``2pc`` with the decision log in
   the PostgreSQL branch's own database, so that branch commits last with the decision
   (last-resource commit: no PREPARE on it, no separate decision write); and PostgreSQL
   alone, local commit vs its own PREPARE TRANSACTION + COMMIT PREPARED, for reference.
2. The same with ``--workers`` processes for ``--seconds`` (``local``, ``2pc``, ``2pc-lrc``).
3. Recovery: ``--in-doubt`` transactions whose coordinator stopped right after logging the
   commit decision (branches prepared on both databases); time for one ``recover()``.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing as mp
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import machine, percentile, write_section

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from services import MariaDBServer, PostgresServer, RedisServer

ACCOUNTS = 64
Step = Callable[[int], None]


def start(fast: bool, in_doubt: int) -> tuple[PostgresServer, MariaDBServer, RedisServer]:
    durable = "off" if fast else "on"
    pg = PostgresServer(
        settings={
            "fsync": durable,
            "synchronous_commit": durable,
            "full_page_writes": durable,
            "max_prepared_transactions": str(in_doubt + 200),
            "max_connections": "200",
        }
    ).start()
    flush = "0" if fast else "1"
    my = MariaDBServer(options=[f"--innodb-flush-log-at-trx-commit={flush}"]).start()
    redis = RedisServer(
        config={"appendonly": "yes", "appendfsync": "no" if fast else "always"}
    ).start()
    return pg, my, redis


def setup(pg: PostgresServer, my: MariaDBServer, in_doubt: int) -> None:
    """Accounts 0..63 for the transfers, 1000.. one per in-doubt transaction."""
    import psycopg
    import pymysql

    rows = [(i, 1_000_000) for i in range(ACCOUNTS)] + [(1000 + i, 0) for i in range(in_doubt)]
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE acct (id int PRIMARY KEY, balance bigint NOT NULL)")
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO acct VALUES (%s, %s)", rows)
    conn = pymysql.connect(**my.params, autocommit=True)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE acct (id int PRIMARY KEY, balance bigint NOT NULL) ENGINE=InnoDB")
        cur.executemany("INSERT INTO acct VALUES (%s, %s)", rows)
    conn.close()


class Client:
    """One process's connections and the steps it can run."""

    def __init__(self, urls: dict[str, Any], fast: bool) -> None:
        import psycopg
        import pymysql

        from interlock import Interlock

        self.pg = psycopg.connect(urls["pg"])
        self.my = pymysql.connect(**urls["my"])
        self.il = Interlock(
            urls["redis"],
            namespace="bench",
            registry=None,
            durability="relaxed" if fast else "strict",
        )
        self.il.transactions.add_postgres("postgres", urls["pg"])
        self.il.transactions.add_mysql("mysql", lambda: pymysql.connect(**urls["my"]))
        self.il.transactions.check()
        # The same, with the decision log in PostgreSQL: last-resource commit.
        self.il_lrc = Interlock(
            urls["redis"],
            namespace="benchlrc",
            registry=None,
            decision_log=urls["pg"],
            durability="relaxed" if fast else "strict",
        )
        self.il_lrc.transactions.add_postgres("postgres", urls["pg"])
        self.il_lrc.transactions.add_mysql("mysql", lambda: pymysql.connect(**urls["my"]))
        self.il_lrc.transactions.check()

    def step(self, mode: str) -> Step:
        pg, my, il = self.pg, self.my, self.il
        debit = "UPDATE acct SET balance = balance - 1 WHERE id = %s"
        credit = "UPDATE acct SET balance = balance + 1 WHERE id = %s"

        def local(i: int) -> None:
            pg.execute(debit, [i % ACCOUNTS])
            pg.commit()
            with my.cursor() as cur:
                cur.execute(credit, [i % ACCOUNTS])
            my.commit()

        def two_phase(i: int) -> None:
            with il.transaction("bench") as tx:
                tx.postgres(pg).execute(debit, [i % ACCOUNTS])
                with tx.mysql(my).cursor() as cur:
                    cur.execute(credit, [i % ACCOUNTS])

        def two_phase_lrc(i: int) -> None:
            with self.il_lrc.transaction("bench") as tx:
                tx.postgres(pg).execute(debit, [i % ACCOUNTS])
                with tx.mysql(my).cursor() as cur:
                    cur.execute(credit, [i % ACCOUNTS])

        def two_phase_redis(i: int) -> None:
            with il.transaction("bench") as tx:
                tx.postgres(pg).execute(debit, [i % ACCOUNTS])
                with tx.mysql(my).cursor() as cur:
                    cur.execute(credit, [i % ACCOUNTS])
                tx.redis("bench").incrby(i % ACCOUNTS, 1)

        def pg_local(i: int) -> None:
            pg.execute(debit, [i % ACCOUNTS])
            pg.commit()

        def pg_prepared(i: int) -> None:
            xid = f"bench-{uuid.uuid4().hex}"
            pg.tpc_begin(xid)
            pg.execute(debit, [i % ACCOUNTS])
            pg.tpc_prepare()
            pg.tpc_commit()

        steps = {
            "local": local,
            "2pc": two_phase,
            "2pc+redis": two_phase_redis,
            "2pc-lrc": two_phase_lrc,
            "pg-local": pg_local,
            "pg-2pc": pg_prepared,
        }
        return steps[mode]

    def close(self) -> None:
        self.pg.close()
        self.my.close()
        self.il.close()
        self.il_lrc.close()


MODES = ["local", "2pc", "2pc+redis", "2pc-lrc", "pg-local", "pg-2pc"]


def sequential(
    urls: dict[str, Any], fast: bool, n: int, rounds: int = 5
) -> dict[str, dict[str, float]]:
    """Each mode runs ``n`` transfers, interleaved in ``rounds`` so that load from other
    processes on the machine affects every mode alike."""
    client = Client(urls, fast)
    steps = {mode: client.step(mode) for mode in MODES}
    latencies: dict[str, list[float]] = {mode: [] for mode in MODES}
    try:
        for step in steps.values():
            for i in range(50):  # warm-up: connections, scripts, plans
                step(i)
        for _ in range(rounds):
            for mode, step in steps.items():
                for i in range(n // rounds):
                    t0 = time.perf_counter()
                    step(i)
                    latencies[mode].append(time.perf_counter() - t0)
    finally:
        client.close()
    results: dict[str, dict[str, float]] = {}
    for mode, values in latencies.items():
        results[mode] = {
            "tps": len(values) / sum(values),
            "p50_ms": statistics.median(values) * 1000,
            "p99_ms": percentile(values, 99) * 1000,
        }
        print(f"  {mode:<10} {results[mode]['tps']:8.0f}/s  p50 {results[mode]['p50_ms']:.2f} ms")
    return results


def _worker(
    urls: dict[str, Any], fast: bool, mode: str, seconds: float, seed: int, out: Any
) -> None:
    client = Client(urls, fast)
    step = client.step(mode)
    count, i = 0, seed * 1000
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        step(i)
        i += 1
        count += 1
    client.close()
    out.put(count)


def concurrent(urls: dict[str, Any], fast: bool, workers: int, seconds: float) -> dict[str, float]:
    results = {}
    ctx = mp.get_context("spawn")
    for mode in ("local", "2pc", "2pc-lrc"):
        queue: Any = ctx.Queue()
        procs = [
            ctx.Process(target=_worker, args=(urls, fast, mode, seconds, w, queue))
            for w in range(workers)
        ]
        for proc in procs:
            proc.start()
        total = sum(queue.get(timeout=seconds + 60) for _ in procs)
        for proc in procs:
            proc.join()
        results[mode] = total / seconds
        print(f"  {mode:<10} {total / seconds:8.0f}/s with {workers} processes")
    return results


class _Stop(BaseException):
    """Raised by a log handler right after the commit decision: the coordinator 'dies'."""


class _StopAfterDecision(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "event.action", None) == "txn-decided":
            raise _Stop


def recovery(urls: dict[str, Any], fast: bool, count: int) -> dict[str, float]:
    import psycopg
    import pymysql

    client = Client(urls, fast)
    logger = logging.getLogger("interlock.txn")
    handler = _StopAfterDecision(logging.DEBUG)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    started = time.perf_counter()
    try:
        for i in range(count):
            pg = psycopg.connect(urls["pg"])
            my = pymysql.connect(**urls["my"])
            try:
                with client.il.transaction("bench") as tx:
                    # Rows of their own: prepared branches keep their row locks.
                    tx.postgres(pg).execute(
                        "UPDATE acct SET balance = balance - 1 WHERE id = %s", [1000 + i]
                    )
                    with tx.mysql(my).cursor() as cur:
                        cur.execute(
                            "UPDATE acct SET balance = balance + 1 WHERE id = %s", [1000 + i]
                        )
            except _Stop:
                pass
            pg.close()  # prepared branches outlive their sessions
            my.close()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
    made = time.perf_counter() - started
    listing = client.il.transactions.in_doubt()
    print(
        f"  {len(listing['decisions'])} in-doubt transactions, "
        f"{len(listing['prepared'])} prepared branches (made in {made:.1f}s)"
    )
    logger.setLevel(logging.ERROR)  # one WARNING event per recovered branch otherwise
    started = time.perf_counter()
    report = client.il.recover(safety=0.0)
    elapsed = time.perf_counter() - started
    logger.setLevel(logging.NOTSET)
    if report.pending or report.errors or report.heuristics:
        raise SystemExit(f"recovery left work behind: {report}")
    assert len(report.forgotten) == count, len(report.forgotten)
    client.close()
    print(f"  recovered {len(report.committed)} branches of {count} transactions in {elapsed:.2f}s")
    return {"transactions": count, "branches": len(report.committed), "seconds": elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transfers", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--in-doubt", type=int, default=1000)
    parser.add_argument("--fast", action="store_true", help="fsync off everywhere")
    parser.add_argument("--write", action="store_true", help="update benchmarks/RESULTS.md")
    args = parser.parse_args()

    pg, my, redis = start(args.fast, args.in_doubt)
    try:
        setup(pg, my, args.in_doubt)
        urls = {"pg": pg.dsn, "my": my.params, "redis": redis.url}
        label = "fsync off (--fast)" if args.fast else "durable: fsync on everywhere"
        print(f"sequential, one client ({label})")
        seq = sequential(urls, args.fast, args.transfers)
        print(f"concurrent, {args.workers} processes")
        conc = concurrent(urls, args.fast, args.workers, args.seconds)
        print("recovery")
        rec = recovery(urls, args.fast, args.in_doubt)
    finally:
        redis.close()
        my.close()
        pg.close()

    ratio = seq["local"]["tps"] / seq["2pc"]["tps"]
    lrc_ratio = seq["local"]["tps"] / seq["2pc-lrc"]["tps"]
    pg_ratio = seq["pg-local"]["tps"] / seq["pg-2pc"]["tps"]
    conc_ratio = conc["local"] / conc["2pc"]
    conc_lrc = conc["local"] / conc["2pc-lrc"]
    print(
        f"2PC costs {ratio:.2f}x the non-atomic pair sequentially (target <= 2.5), "
        f"{lrc_ratio:.2f}x with last-resource commit; with {args.workers} processes "
        f"{conc_ratio:.2f}x and {conc_lrc:.2f}x; PostgreSQL's own 2PC costs "
        f"{pg_ratio:.2f}x its local commit"
    )
    if args.write:
        write_section("txn-fast" if args.fast else "txn", render(seq, conc, rec, args))


def render(
    seq: dict[str, dict[str, float]],
    conc: dict[str, float],
    rec: dict[str, float],
    args: argparse.Namespace,
) -> str:
    """The RESULTS.md section of one run."""
    ratio = seq["local"]["tps"] / seq["2pc"]["tps"]
    lrc_ratio = seq["local"]["tps"] / seq["2pc-lrc"]["tps"]
    pg_ratio = seq["pg-local"]["tps"] / seq["pg-2pc"]["tps"]
    conc_ratio = conc["local"] / conc["2pc"]
    conc_lrc = conc["local"] / conc["2pc-lrc"]
    durability = "fsync off everywhere" if args.fast else "durable (fsync on everywhere)"
    rows = "\n".join(
        f"| `{mode}` | {r['tps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} |"
        for mode, r in seq.items()
    )
    flag = " --fast" if args.fast else ""
    return f"""## Two-phase commit (`benchmarks/txn.py{flag}`)

{machine()}. PostgreSQL, MariaDB and Redis on the same machine, {durability};
decision log on Redis (AOF), except `2pc-lrc`: decision log in the PostgreSQL branch's own
database (last-resource commit). One client, {args.transfers} transfers per mode, interleaved:

| mode | transfers/s | p50 ms | p99 ms |
|---|---:|---:|---:|
{rows}

- 2PC across PostgreSQL + MariaDB: **{ratio:.2f}x** the two local commits (target ≤ 2.5x);
  with last-resource commit (`2pc-lrc`): **{lrc_ratio:.2f}x**.
  PostgreSQL's own PREPARE + COMMIT PREPARED: {pg_ratio:.2f}x its local commit.
- {args.workers} processes for {args.seconds:g} s: local {conc["local"]:.0f}/s,
  2PC {conc["2pc"]:.0f}/s ({conc_ratio:.2f}x), 2PC-LRC {conc["2pc-lrc"]:.0f}/s ({conc_lrc:.2f}x).
- Recovery: {rec["transactions"]:.0f} in-doubt transactions, {rec["branches"]:.0f} prepared
  branches, commit decided: resolved in **{rec["seconds"]:.2f} s** (target ≤ 5 s).
"""


if __name__ == "__main__":
    main()
