"""A lock holder for the chaos tests, run as its own process.

    python _chaos_holder.py REDIS_URL NAMESPACE METRICS_PORT STATUS_FILE holder|taker TTL

``holder`` takes lock ``account``/1 at once and keeps it (auto-renewed), serving its metrics
on 127.0.0.1:METRICS_PORT for Prometheus; when the lease is lost (it was SIGSTOPped past its
TTL) it tries the fenced write it was about to make, with its old fence, and writes
``refused`` or ``accepted`` to STATUS_FILE. ``taker`` waits for the same lock, writes with
its (newer) fence and writes ``wrote <fence>``. Both then serve until SIGTERM.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

from prometheus_client import start_http_server

from interlock import FenceRejected, Interlock


def main() -> None:
    url, namespace, port, status, role, ttl = sys.argv[1:7]
    il = Interlock(url, namespace=namespace)
    assert il.registry is not None
    start_http_server(int(port), addr="127.0.0.1", registry=il.registry)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    out = Path(status)
    if role == "holder":
        lost = threading.Event()
        lease = il.lock("account", 1, ttl=float(ttl), on_lost=lambda _: lost.set()).acquire()
        assert lease is not None
        out.write_text(f"holding {lease.fence}\n")
        while not (lost.wait(0.05) or done.is_set()):
            pass
        if lost.is_set():
            try:
                il.fenced_set("ledger", "stale write", lease.fence)
            except FenceRejected:
                out.write_text("refused\n")
            else:
                out.write_text("accepted\n")
    else:
        lease = il.lock("account", 1, ttl=float(ttl), timeout=60).acquire()
        assert lease is not None
        il.fenced_set("ledger", "fresh write", lease.fence)
        out.write_text(f"wrote {lease.fence}\n")
    done.wait()
    il.close()


if __name__ == "__main__":
    main()
