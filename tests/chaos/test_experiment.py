"""The experiment format: a valid file parses; every mistake names the key and the fix."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from interlock import ConfigError
from interlock.chaos import load_experiment, parse_experiment

VALID = """
title = "Redis killed"
[settings]
prometheus = "http://127.0.0.1:9090/"
poll = 0.25
[[proxies]]
name = "redis-link"
listen = 16390
upstream = "127.0.0.1:6379"
[[steady_state]]
name = "up"
promql = 'up{job="interlock"}'
expect = "== 1"
[[steady_state]]
metrics = "http://127.0.0.1:8000/metrics"
metric = 'interlock_cache_degraded{cache="http"}'
expect = "<= 0"
empty = 0
[[method]]
kind = "server-restart"
target = "redis"
pid = 1234
argv = ["redis-server", "--port", "6379", "--save", ""]
ready = "127.0.0.1:6379"
duration = 5
[[method]]
kind = "net-latency"
target = "redis-link"
proxy = "redis-link"
after = 1
duration = 2
latency = 0.2
jitter = 0.05
[[rollbacks]]
command = "true"
[[expect.alerts]]
alert = "InterlockCacheDegraded"
labels = { cache = "http" }
fire_within = 10
[[expect.invariants]]
name = "catalogue answers"
when = "during"
http = "http://127.0.0.1:8000/products"
status = [200]
"""


def _with(change: str) -> dict[str, Any]:
    return tomllib.loads(VALID + change)


def test_a_valid_experiment_parses(tmp_path: Path) -> None:
    path = tmp_path / "redis.toml"
    path.write_text(VALID, encoding="utf-8")
    exp = load_experiment(path)
    assert exp.title == "Redis killed" and exp.settings.prometheus == "http://127.0.0.1:9090"
    assert exp.fault == "server-restart:redis, net-latency:redis-link"
    restart, latency = exp.method
    assert restart.argv == ("redis-server", "--port", "6379", "--save", "")
    assert restart.ready == ("127.0.0.1", 6379) and restart.duration == 5
    assert (latency.proxy, latency.after, latency.latency) == ("redis-link", 1, 0.2)
    up, degraded = exp.steady_state
    assert (up.kind, up.op, up.threshold) == ("promql", "==", 1.0)
    assert (degraded.kind, degraded.metric, degraded.empty) == (
        "metrics", 'interlock_cache_degraded{cache="http"}', 0.0)  # fmt: skip
    assert exp.alerts[0].labels == {"cache": "http"} and exp.alerts[0].fire_within == 10
    assert exp.invariants[0].when == "during" and exp.invariants[0].status == (200,)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"method": []}, r"experiment\.title is required"),
        (tomllib.loads("oops = 1\n" + VALID),
         r"exp\.toml: experiment has unknown key 'oops'; allowed: .*title"),
        (_with('[[expect.invariants]]\ncommand = "true"\nwtihin = 3\n'),
         r"invariants\[1\] has unknown key 'wtihin'; allowed: .*within"),
        (_with('[[method]]\nkind = "boom"\ntarget = "x"\n'),
         r"method\[2\]\.kind is 'boom'; use one of kill, pause"),
        (_with('[[method]]\nkind = "pause"\ntarget = "x"\nduration = 1\n'),
         r"method\[2\] \(pause\) needs exactly one of pid, pidfile, pid_command"),
        (_with('[[method]]\nkind = "pause"\ntarget = "x"\npid = 1\n'),
         r"method\[2\]\.duration must be a positive number of seconds"),
        (_with('[[method]]\nkind = "kill"\ntarget = "a b"\npid = 1\n'),
         r"method\[2\]\.target 'a b' must be a short name"),
        (_with('[[method]]\nkind = "net-stall"\ntarget = "x"\nproxy = "db"\nduration = 1\n'),
         r"method\[2\]\.proxy 'db' is not declared in \[\[proxies\]\] \(declared: redis-link\)"),
        (_with('[[method]]\nkind = "server-restart"\ntarget = "x"\npid = 1\nduration = 1\n'
               'ready = "localhost"\n'),
         r"method\[2\]\.ready must be host:port"),
        (_with('[[method]]\nkind = "server-restart"\ntarget = "x"\npid = 1\nduration = 1\n'
               'ready = "h:1"\nargv = ["a"]\nrestart = "b"\n'),
         r"argv and restart both given"),
        (_with('[[method]]\nkind = "kill"\ntarget = "x"\npid = "12"\n'),
         r"method\[2\]\.pid must be int, not '12'"),
        (_with('[[steady_state]]\npromql = "up"\nexpect = "about 1"\n'),
         r"steady_state\[2\]\.expect must be an operator .* e\.g\. '> 0'"),
        (_with('[[steady_state]]\npromql = "up"\nhttp = "http://x"\nexpect = "> 0"\n'),
         r"steady_state\[2\] needs exactly one of promql, metrics, http, command \(found "
         r"promql, http\)"),
        (_with('[[steady_state]]\nmetrics = "http://x/metrics"\nexpect = "> 0"\n'),
         r"steady_state\[2\]\.metric is required"),
        (_with('[[expect.invariants]]\ncommand = "true"\nwhen = "before"\n'),
         r"invariants\[1\]\.when must be 'during' or 'after'"),
        (_with('[[expect.invariants]]\nhttp = "http://x"\nstatus = [200, 999]\n'),
         r"invariants\[1\]\.status must be a list of HTTP statuses"),
        ({"title": "t"}, r"needs at least one \[\[method\]\] fault"),
    ],
)
def test_mistakes_name_the_key_and_the_fix(data: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_experiment(data, "exp.toml")


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the experiment"):
        load_experiment(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("title = \n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad\.toml: not valid TOML"):
        load_experiment(bad)
