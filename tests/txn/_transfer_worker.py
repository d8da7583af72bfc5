"""A worker process of the concurrency test: random transfers until ``commits`` committed.

Usage: python _transfer_worker.py '<json spec>'; prints its tallies and metric values.
"""

from __future__ import annotations

import json
import random
import sys

from _bank import STORES, Bank, InsufficientFunds, transfer
from prometheus_client import CollectorRegistry

from interlock import TransactionAborted
from interlock.testing import metric_value


def main() -> None:
    spec = json.loads(sys.argv[1])
    bank = Bank(**spec["bank"])
    rng = random.Random(spec["seed"])
    registry = CollectorRegistry()
    il = bank.interlock(registry=registry)
    pg, my = bank.pg(), bank.my()
    committed, aborted = 0, {"client": 0, "vote_no": 0, "timeout": 0, "error": 0}
    while committed < spec["commits"]:
        accounts = tuple(rng.randrange(bank.accounts) for _ in range(3))
        try:
            transfer(
                bank,
                il,
                pg,
                my,
                source=rng.choice(STORES),
                accounts=accounts,
                amount=rng.randint(1, 40),
                ledger=True,
            )
        except InsufficientFunds:
            aborted["client"] += 1
        except TransactionAborted as exc:
            aborted[exc.reason] += 1
        else:
            committed += 1
    metrics = {
        "committed": metric_value(
            registry, "interlock_txn_total", txn="transfer", outcome="committed"
        ),
        "aborted": metric_value(registry, "interlock_txn_total", txn="transfer", outcome="aborted"),
        "aborts": {
            reason: metric_value(
                registry, "interlock_txn_aborts_total", txn="transfer", reason=reason
            )
            for reason in aborted
        },
    }
    bank.close()
    il.close()
    print(json.dumps({"committed": committed, "aborted": aborted, "metrics": metrics}))


if __name__ == "__main__":
    main()
