"""Eight coordinator processes race through 1000 transfers over shared accounts: the bank
total never changes, nothing stays prepared, and the metrics count exactly what happened."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from _bank import Bank

WORKER = Path(__file__).with_name("_transfer_worker.py")
WORKERS = 8
TRANSFERS = 1000


@pytest.mark.slow
def test_eight_workers_thousand_transfers(make_bank: Callable[..., Bank]) -> None:
    bank = make_bank(accounts=16)
    started = time.monotonic()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(WORKER),
                json.dumps(
                    {
                        "bank": bank.spec(),
                        "seed": worker,
                        "commits": TRANSFERS // WORKERS,
                    }
                ),
            ],
            cwd=WORKER.parent,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for worker in range(WORKERS)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    elapsed = time.monotonic() - started

    committed = sum(r["committed"] for r in results)
    assert committed == TRANSFERS
    assert sum(r["metrics"]["committed"] for r in results) == TRANSFERS
    assert bank.ledger() == TRANSFERS  # one ledger row per committed transfer, no more
    for r in results:  # each worker's metrics match what its callers saw
        assert r["metrics"]["aborted"] == sum(r["aborted"].values())
        assert r["metrics"]["aborts"] == r["aborted"]
    assert bank.total() == bank.expected_total
    assert bank.prepared() == {"postgres": [], "mysql": [], "redis": [], "decisions": []}
    aborts = sum(sum(r["aborted"].values()) for r in results)
    print(f"{TRANSFERS} transfers by {WORKERS} processes in {elapsed:.1f}s, {aborts} aborted")
