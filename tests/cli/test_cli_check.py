"""``interlock check``: one verdict per check on real backends, exit status, JSON, fixes."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable

import pytest

from interlock.cli import _check_report as report
from interlock.cli import main
from services import RedisCluster, RedisServer, free_port

CHECKS = [
    "config",
    "reachable",
    "version",
    "locks",
    "wake-ups",
    "eviction",
    "durability",
    "topology",
]
LINE = re.compile(r"^(ok|warn|fail) +([a-z-]+): (.+)$")


def check(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, str], str]:
    """Run ``interlock check``; returns the exit status, status per check and the output."""
    status = main(["check", "--namespace", f"t{uuid.uuid4().hex[:12]}", *argv])
    out = capsys.readouterr().out
    verdicts = {m[2]: m[1] for m in map(LINE.match, out.splitlines()) if m}
    return status, verdicts, out


def fix_of(out: str, name: str) -> str:
    """The fix line printed under the verdict of check ``name``."""
    lines = out.splitlines()
    index = next(i for i, line in enumerate(lines) if re.match(rf"^\w+ +{name}: ", line))
    following = lines[index + 1]
    assert following.lstrip().startswith("fix: "), out
    return following


def test_healthy_redis_passes_every_check(
    capsys: pytest.CaptureFixture[str], redis_factory: Callable[..., RedisServer]
) -> None:
    redis = redis_factory(config={"appendonly": "yes", "appendfsync": "always"})

    status, verdicts, out = check(capsys, "--url", redis.url)

    assert status == 0, out
    assert verdicts == dict.fromkeys(CHECKS, "ok"), out
    assert "fix:" not in out
    assert re.search(r"reachable: PING round trip [\d.]+ ms \(median of 20\)", out)
    assert re.search(r"version: Redis \d+\.\d+", out)
    assert re.search(r"locks: probe lock acquired in [\d.]+ ms, fence [1-9]\d*", out)
    assert re.search(r"wake-ups: pub/sub round trip in [\d.]+ ms", out)
    assert f"topology: single node at 127.0.0.1:{redis.port}" in out


def test_evicting_redis_warns_and_names_noeviction(
    capsys: pytest.CaptureFixture[str], redis_factory: Callable[..., RedisServer]
) -> None:
    redis = redis_factory(config={"maxmemory": "100mb", "maxmemory-policy": "allkeys-lru"})

    status, verdicts, out = check(capsys, "--url", redis.url)

    assert status == 0, out
    assert verdicts["eviction"] == "warn"
    assert "maxmemory 100mb with maxmemory-policy allkeys-lru" in out
    assert "maxmemory-policy noeviction" in fix_of(out, "eviction")


@pytest.mark.parametrize(
    "template",
    [
        "redis://127.0.0.1:{port}/0",
        "redis+cluster://127.0.0.1:{port}",
        "redis+sentinel://127.0.0.1:{port}/mymaster",
    ],
    ids=["redis", "cluster", "sentinel"],
)
def test_unreachable_backend_fails_fast_with_a_fix(
    capsys: pytest.CaptureFixture[str], template: str
) -> None:
    port = free_port()
    started = time.monotonic()

    status, verdicts, out = check(capsys, "--url", template.format(port=port), "--timeout", "0.5")

    assert time.monotonic() - started < 3.0
    assert status == 1, out
    assert verdicts == {"config": "ok", "reachable": "fail"}, out  # later checks need it
    assert f"running at 127.0.0.1:{port}" in fix_of(out, "reachable")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--url", "foo://127.0.0.1:6379"], "backend URL scheme 'foo' is not supported"),
        (["--url", "redis://127.0.0.1:6379/0", "--timeout", "0"], "must be a positive"),
        (["--url", "redis+sentinel://127.0.0.1:26379"], "names no Sentinel service"),
        (["--url", "redis://127.0.0.1:99999/0"], "port '99999' of host '127.0.0.1'"),
        (["--url", "redis://127.0.0.1:6379/abc"], "database 'abc' in"),
        (["--url", "redis+cluster://127.0.0.1:7000,[::1"], "not a host name or IP address"),
    ],
    ids=["scheme", "timeout", "sentinel-service", "port", "db", "cluster-node"],
)
def test_invalid_configuration_exits_2_with_the_message(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    status, verdicts, out = check(capsys, *argv)

    assert status == 2
    assert verdicts == {"config": "fail"}, out
    assert message in out
    assert "fix:" in out


def test_a_db_the_server_lacks_is_named_with_its_fix(
    capsys: pytest.CaptureFixture[str], redis_url: str
) -> None:
    url = redis_url.rsplit("/", 1)[0] + "/99"  # the test server has the default 16 dbs

    status, verdicts, out = check(capsys, "--url", url)

    assert status == 1, out
    assert verdicts == {"config": "ok", "reachable": "fail"}, out
    assert ", db 99, namespace" in out
    fix = fix_of(out, "reachable")
    assert "the URL selects db 99: the server has 16 (db 0-15)" in fix, out
    assert "redis-server running" not in fix


def test_json_lists_every_check(capsys: pytest.CaptureFixture[str], redis_url: str) -> None:
    status, _, out = check(capsys, "--url", redis_url, "--json")

    results = json.loads(out)
    assert status == 0
    assert [r["check"] for r in results] == CHECKS
    assert all(set(r) == {"check", "status", "detail", "fix"} for r in results)
    assert all((r["fix"] is None) == (r["status"] == "ok") for r in results)
    durability = next(r for r in results if r["check"] == "durability")  # session Redis: no AOF
    assert durability["status"] == "warn"
    assert "appendfsync always" in durability["fix"]
    assert "PostgreSQL decision log" in durability["fix"]


def test_url_and_namespace_come_from_the_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    monkeypatch.setenv("INTERLOCK_URL", redis_url)
    monkeypatch.setenv("INTERLOCK_NAMESPACE", "from-env")

    status = main(["check"])
    out = capsys.readouterr().out

    assert status == 0, out
    host_port = redis_url.split("//")[1].split("/")[0]
    assert f"config: redis://{host_port}, db 0, namespace 'from-env'" in out


def test_cluster_reports_masters_and_slot_coverage(
    capsys: pytest.CaptureFixture[str], redis_cluster_url: str
) -> None:
    status, verdicts, out = check(capsys, "--url", redis_cluster_url)

    assert status == 0, out
    assert set(verdicts) == set(CHECKS)
    assert "fail" not in verdicts.values()
    assert "topology: 3 masters, 16384/16384 slots assigned, 16384 ok, cluster_state ok" in out


def test_plain_url_to_a_cluster_node_fails_topology(
    capsys: pytest.CaptureFixture[str], redis_cluster: RedisCluster
) -> None:
    status, verdicts, out = check(capsys, "--url", redis_cluster.nodes[0].url)

    assert status == 1
    assert verdicts["topology"] == "fail"
    assert "redis+cluster://" in fix_of(out, "topology")


def test_sentinel_reports_master_and_replicas(
    capsys: pytest.CaptureFixture[str], redis_sentinel_url: str
) -> None:
    status, verdicts, out = check(capsys, "--url", redis_sentinel_url)

    assert status == 0, out
    assert set(verdicts) == set(CHECKS)
    assert "fail" not in verdicts.values()
    assert re.search(r"topology: master 'mymaster' at 127\.0\.0\.1:\d+ \(master\), 1 replica", out)


def test_embedded_backend_passes(capsys: pytest.CaptureFixture[str]) -> None:
    status, verdicts, out = check(capsys, "--url", "mem://")

    assert status == 0, out
    assert verdicts == dict.fromkeys(CHECKS, "ok"), out
    for name in ("reachable", "version", "eviction", "durability", "topology"):
        assert re.search(rf"{name}: embedded \(mem://\)", out)


# The verdicts themselves, for replies the test servers cannot produce.


@pytest.mark.parametrize(
    "reply",
    [{b"maxmemory-policy": b"volatile-lru"}, [b"maxmemory-policy", b"volatile-lru"], []],
    ids=["dict", "flat-list", "empty"],
)
def test_config_get_reply_shapes(reply: object) -> None:
    assert report.config_value(reply) == ("" if reply == [] else "volatile-lru")


def test_old_redis_fails_version() -> None:
    status, detail, fix = report.version("5.0.14")
    assert (status, detail) == (
        "fail",
        "Redis 5.0.14 is older than 6.0 (BLPOP with fractional timeouts, RESP3)",
    )
    assert fix is not None
    assert "upgrade" in fix


def test_cluster_with_unassigned_slots_fails() -> None:
    raw = b"cluster_state:fail\r\ncluster_slots_assigned:10923\r\ncluster_slots_ok:10923\r\n"
    status, detail, fix = report.cluster(raw + b"cluster_size:2\r\n", "10.0.0.1:7000")
    assert status == "fail"
    assert detail == "2 masters, 10923/16384 slots assigned, 10923 ok, cluster_state fail"
    assert fix is not None
    assert "redis-cli --cluster check 10.0.0.1:7000" in fix


def test_sentinel_without_replicas_warns() -> None:
    master = {
        "ip": "10.0.0.2",
        "port": 6379,
        "flags": "master",
        "num-slaves": 0,
        "num-other-sentinels": 2,
        "is_sdown": False,
        "is_odown": False,
    }
    status, detail, _ = report.sentinel(master, "mymaster", "10.0.0.9:26379")
    assert status == "warn"
    assert "0 replica(s), 3 sentinel(s)" in detail
