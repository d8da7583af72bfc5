"""A coordinator process for the crash tests: one transfer, killed at a crash point.

Usage: python _crash_worker.py '<json spec>'

The crash point names a transaction event and optionally a resource, e.g.
``txn-branch-prepared:mysql``. A logging handler on ``interlock.txn`` SIGKILLs this process
the moment that event is logged — a real kill, with no cleanup, right after the step.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys

from _bank import Bank, transfer


class CrashAt(logging.Handler):
    def __init__(self, point: str) -> None:
        super().__init__(logging.DEBUG)
        self.action, _, self.resource = point.partition(":")

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "event.action", None) != self.action:
            return
        if self.resource and getattr(record, "interlock.txn.resource", None) != self.resource:
            return
        os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    spec = json.loads(sys.argv[1])
    bank = Bank(**spec["bank"])
    logger = logging.getLogger("interlock.txn")
    logger.setLevel(logging.DEBUG)
    logger.addHandler(CrashAt(spec["point"]))
    il = bank.interlock()
    tx = transfer(bank, il, bank.pg(), bank.my(), **spec["transfer"])
    print(json.dumps({"survived": tx.xid}))


if __name__ == "__main__":
    main()
