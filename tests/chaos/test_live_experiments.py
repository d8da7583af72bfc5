"""Experiments end to end: real faults under a real Prometheus with the project's rules.

Each test runs ``interlock chaos run`` (in process, through the CLI) against throwaway
services and asserts on the ``report.json`` it writes. Prometheus loads the generated rules
on a time scale (:mod:`_chaos_stack`: a minute becomes a second), so the production
expressions are what fires. Bounded: each test takes about 20 s;
``INTERLOCK_CHAOS_LONG=1`` makes the faults six times longer.
"""

from __future__ import annotations

import json
import string
import subprocess
import uuid
from pathlib import Path
from typing import Any

import _chaos_stack as stack

from interlock.chaos._faults import alive
from interlock.cli import main
from services import RedisServer
from services._process import wait_until

REDIS_KILLED = """
title = "Redis killed (no AOF): cache fails open, locks fail closed, both recover"
[settings]
poll = 0.25
steady_within = 30
recover_within = 20

[[steady_state]]
name = "demo scraped and up for 3 s"
promql = 'min_over_time(up{job="interlock"}[3s]) and count_over_time(up{job="interlock"}[10s]) >= 4'
expect = "== 1"
[[steady_state]]
name = "catalogue cache not degraded"
metrics = "$demo/metrics"
metric = 'interlock_cache_degraded{cache="http"}'
expect = "== 0"
empty = 0
[[steady_state]]
name = "a reservation is granted"
http = "$demo/inventory/sku-7/reserve"
method = "POST"
status = [200]

[[method]]
kind = "server-restart"
target = "redis"
pid = $pid
argv = $argv
ready = "127.0.0.1:$port"
duration = $down

[[expect.alerts]]
alert = "InterlockCacheDegraded"
labels = { cache = "http" }
fire_within = 15
resolve_within = 15

[[expect.invariants]]
name = "cache fails open: the catalogue answers 200"
when = "during"
http = "$demo/products"
status = [200]
[[expect.invariants]]
name = "locks fail closed: 503 or 423, never 500"
when = "during"
http = "$demo/inventory/sku-9/reserve"
method = "POST"
status = [423, 503]
[[expect.invariants]]
name = "no 500 answered"
promql = 'sum(interlock_http_requests_total{status="500"}) or vector(0)'
expect = "== 0"
"""

HOLDER_PAUSED = """
title = "Lock holder SIGSTOPped past its TTL"
[settings]
poll = 0.25
steady_within = 30
recover_within = 20

[[steady_state]]
name = "holder scraped and up for 3 s"
promql = '''min_over_time(up{instance="127.0.0.1:$port"}[3s])
  and count_over_time(up{instance="127.0.0.1:$port"}[10s]) >= 6'''
expect = "== 1"

[[method]]
kind = "pause"
target = "lock-holder"
pid = $pid
duration = $pause

[[expect.alerts]]
alert = "InterlockLockLost"
labels = { lock = "account" }
fire_within = $fire_within
resolve_within = 15

[[expect.invariants]]
name = "the stale holder's fenced write is refused"
command = "grep -qx refused $holder_status"
within = 5
[[expect.invariants]]
name = "the next holder wrote with a newer fence"
command = "grep -q '^wrote' $taker_status"
"""


def _run(tmp: Path, template: str, prometheus: str, **values: Any) -> tuple[int, dict[str, Any]]:
    experiment = tmp / "experiment.toml"
    experiment.write_text(string.Template(template).substitute(values), encoding="utf-8")
    out = tmp / "report"
    code = main(["chaos", "run", str(experiment), "--prometheus", prometheus, "--out", str(out),
                 "--log-file", str(tmp / "chaos.jsonl")])  # fmt: skip
    report = json.loads((out / "report.json").read_text())
    print(json.dumps(report, indent=2))  # the figures, with -s
    html = (out / "report.html").read_text()
    assert "<svg" in html and "http" not in html.split("<svg", 1)[1].replace(
        "http://www.w3.org/2000/svg", "")  # self-contained  # fmt: skip
    return code, report


def _events(tmp: Path) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in (tmp / "chaos.jsonl").read_text().splitlines()]
    return [line for line in lines if line.get("log.logger") == "interlock.chaos"]


def _kill_restarted(server: RedisServer) -> None:
    info = server.command("INFO", "server")
    pid = int(info.split("process_id:")[1].split()[0])
    subprocess.run(["kill", "-9", str(pid)], check=False)
    wait_until(lambda: not alive(pid), 10, "the restarted redis to die")


def test_redis_killed_cache_fails_open_locks_fail_closed_and_recover(
    tmp_path: Path, fresh_redis: RedisServer
) -> None:
    argv = json.dumps(fresh_redis._command())  # a TOML array of strings
    try:
        with stack.demo(tmp_path, fresh_redis.url) as demo_url, stack.prometheus(
            tmp_path, [demo_url.removeprefix("http://")]
        ) as prometheus:  # fmt: skip
            code, report = _run(tmp_path, REDIS_KILLED, prometheus, demo=demo_url,
                                pid=fresh_redis.pid, argv=argv, port=fresh_redis.port,
                                down=5 * stack.FAULT_SCALE)  # fmt: skip
    finally:
        if fresh_redis.pid is not None and not alive(fresh_redis.pid):
            _kill_restarted(fresh_redis)
    [result] = report["experiments"]
    assert result["alerts_expected"] == ["InterlockCacheDegraded"]
    assert "InterlockCacheDegraded" in result["alerts_fired"]
    assert "InterlockCacheDegraded" in result["alerts_resolved"]
    assert result["invariants"] == {
        "cache fails open: the catalogue answers 200": True,
        "locks fail closed: 503 or 423, never 500": True,
        "no 500 answered": True,
    }, result["invariant_details"]
    assert result["time_to_detect_s"] is not None and result["time_to_recover_s"] is not None
    assert result["passed"] and report["passed"] and code == 0, result["findings"]
    events = _events(tmp_path)
    assert [e["event.action"] for e in events] == ["chaos-injected", "chaos-ended"]
    assert {e["interlock.chaos.kind"] for e in events} == {"server-restart"}


def test_holder_paused_past_ttl_loses_the_lock_and_its_fenced_write_is_refused(
    tmp_path: Path, redis_url: str
) -> None:
    namespace = f"chaos{uuid.uuid4().hex[:8]}"
    with stack.holder(tmp_path, redis_url, namespace, "holder", 1.0) as (proc, port, status):
        stack.wait_for_text(status, "^holding", 10)
        with stack.holder(tmp_path, redis_url, namespace, "taker", 1.0) as (_, _, taken):
            with stack.prometheus(tmp_path, [f"127.0.0.1:{port}"]) as prometheus:
                code, report = _run(tmp_path, HOLDER_PAUSED, prometheus, pid=proc.pid,
                                    port=port, holder_status=status,
                                    taker_status=taken, pause=3 * stack.FAULT_SCALE,
                                    fire_within=3 * stack.FAULT_SCALE + 7)  # fmt: skip
    [result] = report["experiments"]
    assert "InterlockLockLost" in result["alerts_fired"]
    assert "InterlockLockLost" in result["alerts_resolved"]
    assert all(result["invariants"].values()), result["invariant_details"]
    assert result["passed"] and code == 0, result["findings"]
    assert [e["interlock.chaos.kind"] for e in _events(tmp_path)] == ["pause", "pause"]
