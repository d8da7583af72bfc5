"""Kill a coordinator process at a crash point; recover until nothing is pending."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from _bank import Bank

from interlock import Interlock
from interlock.txn import RecoveryReport

WORKER = Path(__file__).with_name("_crash_worker.py")
TRANSFER = {"source": "postgres", "accounts": [0, 1, 2], "amount": 10}
BEFORE = {"postgres": [1000] * 4, "mysql": [1000] * 4, "redis": [1000] * 4}
AFTER = {
    "postgres": [980, 1000, 1000, 1000],
    "mysql": [1000, 1010, 1000, 1000],
    "redis": [1000, 1000, 1010, 1000],
}
NOTHING_LEFT = {"postgres": [], "mysql": [], "redis": [], "decisions": []}


def crash(bank: Bank, point: str) -> None:
    """Run one transfer in a coordinator process that is killed at ``point``."""
    spec = {"bank": bank.spec(), "point": point, "transfer": TRANSFER}
    proc = subprocess.run(
        [sys.executable, str(WORKER), json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=WORKER.parent,
        check=False,
    )
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stdout, proc.stderr)


def recover_until_settled(il: Interlock, timeout: float = 15.0) -> RecoveryReport:
    """Recover (presuming the dead coordinator aborted) until nothing is pending.

    A MariaDB branch stays attached to its session until the server has noticed the
    client is gone; recovery reports it pending meanwhile.
    """
    merged = RecoveryReport()
    deadline = time.monotonic() + timeout
    while True:
        report = il.recover(safety=0.0)
        for name in ("committed", "aborted", "heuristics", "forgotten", "errors"):
            getattr(merged, name).extend(getattr(report, name))
        if not report.pending:
            return merged
        assert time.monotonic() < deadline, f"still pending: {report.pending}"
