"""Randomized torture (issue 10): 4 processes (2 sync, 2 asyncio; 2 users each) take one lock
through a fault proxy that switches at random between latency, stalls, blackholes, resets,
refused connections, partitions and Redis restarts without persistence.

Checked: no two written critical sections overlap (each from its acquire's return to its
last passing ``check()``); the counter file, read-modified-written in every section, equals
the number of written sections (no lost update); every acquire returns within its timeout +
``SLACK_S``; once the faults stop every process gets the lock again and no key is left.

Seeded (``INTERLOCK_TORTURE_SEED``, printed); ``INTERLOCK_TORTURE_SECONDS`` (default 25)
sets the length of the fault phase — e.g. 600 for a long run.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis

from interlock.chaos._proxy import FaultProxy
from interlock.lock import lock_keys
from services import RedisServer

WORKER = str(Path(__file__).with_name("_lock_worker.py"))
SLACK_S = 0.1  # timeout + this: the bound is STEP_FLOOR_S (50 ms), plus scheduling on 2 busy cores


def _spawn(url: str, namespace: str, kind: str, counter: Path, seed: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, WORKER, "torture", url, namespace, kind, str(counter), str(seed)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )


def _fault(proxy: FaultProxy, server: RedisServer, rng: random.Random) -> str:
    kind = rng.choice(
        ["latency", "jitter", "stall", "blackhole", "reset", "refuse", "partition", "restart",
         "clear"]
    )  # fmt: skip
    if kind == "latency":
        proxy.latency(rng.uniform(0.01, 0.3))
    elif kind == "jitter":
        proxy.latency(0.05, jitter=0.05)
    elif kind in ("stall", "blackhole"):
        getattr(proxy, kind)()
    elif kind == "reset":
        proxy.reset()
    elif kind == "refuse":
        proxy.refuse()
    elif kind == "partition":
        proxy.partition(rng.uniform(0.3, 1.5))
    elif kind == "restart":
        server.kill()
        server.start()
    return kind


def test_torture_random_faults_and_restarts(fresh_redis: RedisServer, tmp_path: Path) -> None:
    seed = int(os.environ.get("INTERLOCK_TORTURE_SEED", random.randrange(1 << 30)))
    seconds = float(os.environ.get("INTERLOCK_TORTURE_SECONDS", "25"))
    print(f"torture seed {seed} ({seconds:g} s of faults)")
    rng = random.Random(seed)
    counter = tmp_path / "counter"
    counter.write_text("0")
    namespace = f"tt{seed}"
    with FaultProxy("127.0.0.1", fresh_redis.port, seed=seed) as proxy:
        url = f"redis://127.0.0.1:{proxy.port}/0"
        workers = [
            _spawn(url, namespace, kind, counter, seed + i)
            for i, kind in enumerate(["sync", "async", "sync", "async"])
        ]
        faults: list[str] = []
        try:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                faults.append(_fault(proxy, fresh_redis, rng))
                time.sleep(rng.uniform(0.2, 1.5))
                proxy.clear()
                time.sleep(rng.uniform(0.0, 0.5))
            proxy.clear()
            time.sleep(3.0)  # healthy again: the restart grace, then everyone recovers
        finally:
            reports = [_stop(proc) for proc in workers]
    print("faults:", " ".join(faults))
    _check(reports, int(counter.read_text()))
    client = redis.Redis(port=fresh_redis.port)
    lock, _, queue, _ = lock_keys(namespace, "torture", "1")
    assert client.keys(f"{namespace}:lock:*{lock[-2:]}") == []  # every lease released or expired
    assert client.zcard(queue) == 0  # no waiter left queued


def _stop(proc: subprocess.Popen[str]) -> dict[str, Any]:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("stop\n")
    proc.stdin.flush()
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out[-2000:]
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _check(reports: list[dict[str, Any]], counter: int) -> None:
    sections = sorted(tuple(s) for report in reports for s in report["sections"])
    calls = [call for report in reports for call in report["calls"]]
    outcomes: dict[str, int] = {}
    for _, _, outcome in calls:
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    overrun = max(duration - timeout for timeout, duration, _ in calls)
    print(f"{len(calls)} acquires {outcomes}; {len(sections)} sections written; "
          f"worst acquire overran its timeout by {overrun * 1000:.0f} ms")  # fmt: skip
    for report in reports:
        worst = max(report["calls"], key=lambda c: c[1] - c[0])
        print(f"  {report['kind']}: worst {worst}")
    overlaps = [
        (a, b) for a, b in itertools.pairwise(sections) if b[0] < a[1]
    ]
    assert not overlaps, f"two holders at once: {overlaps[:3]}"
    fences = [fence for _, _, fence in sections]
    assert fences == sorted(fences) and len(set(fences)) == len(fences)  # monotonic
    assert counter == len(sections), "an update was lost: two holders wrote at once"
    assert overrun <= SLACK_S, sorted(calls, key=lambda c: c[1] - c[0])[-5:]
    for report in reports:  # everyone got the lock after the faults stopped
        assert report["calls"][-1][2] in ("ok", "LockTimeout"), report["calls"][-5:]
    assert outcomes.get("ok", 0) > 50
