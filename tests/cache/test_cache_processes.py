"""The cache across real processes and a real Redis: stampedes, coherence, races, outages."""

from __future__ import annotations

import json
import logging
import os
import pickle
import select
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from interlock import Interlock
from interlock.cache import entry_keys
from interlock.cache._entry import encode_envelope
from interlock.serializers import PickleSerializer

WORKER = str(Path(__file__).with_name("_cache_worker.py"))
COHERENCE_BOUND_S = 1.0  # stated in docs/cache.md; typically a few milliseconds


def spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, WORKER, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )


def read(proc: subprocess.Popen[str], timeout: float = 30.0) -> dict[str, Any]:
    """The worker's next JSON line, failing (not hanging) if none comes in time."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, f"worker {proc.args} said nothing for {timeout}s"
    line = proc.stdout.readline()
    assert line, f"worker {proc.args} exited with {proc.wait(5)}"
    return json.loads(line)  # type: ignore[no-any-return]


def tell(proc: subprocess.Popen[str], line: str) -> None:
    assert proc.stdin is not None
    proc.stdin.write(line + "\n")
    proc.stdin.flush()


@pytest.fixture
def workers() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()


@pytest.fixture
def namespace() -> str:
    return f"p{uuid.uuid4().hex[:10]}"


def until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_stampede_of_4_processes_x_25_callers_loads_once(
    redis_url: str, namespace: str, workers: list[subprocess.Popen[str]]
) -> None:
    workers += [spawn("stampede", redis_url, namespace, "25", "0.2") for _ in range(4)]
    for proc in workers:
        assert read(proc) == {"state": "ready"}
    for proc in workers:
        tell(proc, "go")
    outcomes = [read(proc) for proc in workers]
    assert sum(outcome["loads"] for outcome in outcomes) == 1
    assert [len(outcome["values"]) for outcome in outcomes] == [25] * 4
    assert all(value == {"value": 42} for o in outcomes for value in o["values"])


def test_near_caches_see_writes_and_deletes_of_other_processes(
    redis_url: str, namespace: str, workers: list[subprocess.Popen[str]]
) -> None:
    il = Interlock(redis_url, namespace=namespace)
    cache = il.cache("coherence", near=True, near_ttl=60.0)
    cache.set("k", "v1")
    workers.append(watcher := spawn("watch", redis_url, namespace))
    assert read(watcher) == {"state": "ready"}
    steps: list[tuple[str, Callable[[], object], object]] = [
        ("set", lambda: cache.set("k", "v2", tags=["t"]), "v2"),
        ("delete", lambda: cache.delete("k"), None),
        ("set again", lambda: cache.set("k", "v3", tags=["t"]), "v3"),
        ("invalidate tag", lambda: cache.invalidate_tag("t"), None),
    ]
    lags = {}
    for name, change, expected in steps:
        tell(watcher, f"watch k {json.dumps(expected)}")
        watching = read(watcher)
        assert watching["state"] == "watching"
        change()
        done = time.time()
        lags[name] = read(watcher)["seen_at"] - done
    print("coherence lags (s):", lags)
    assert max(lags.values()) < COHERENCE_BOUND_S, lags
    il.close()


@pytest.mark.parametrize("invalidate", ["delete", "tag"])
def test_invalidation_during_a_slow_load_in_another_process(
    redis_url: str, namespace: str, workers: list[subprocess.Popen[str]], invalidate: str
) -> None:
    workers.append(loader := spawn("slow-load", redis_url, namespace))
    assert read(loader) == {"state": "loading"}  # it holds the fill lease now
    il = Interlock(redis_url, namespace=namespace)
    cache = il.cache("race", lock_wait=10.0)
    if invalidate == "delete":
        assert cache.delete(1) is False
    else:
        cache.invalidate_tag("catalog")
    started = time.monotonic()
    assert cache.get_or_load(1, lambda: "new", tags=["catalog"]) == "new"
    assert time.monotonic() - started < 5.0  # took the outdated lease over, no lock_wait
    tell(loader, "finish")
    assert read(loader) == {"value": "old", "after": "new"}  # its stale result not written
    assert cache.get(1) == "new"
    il.close()


def test_a_crashed_loader_holds_others_up_at_most_its_lease(
    redis_url: str, namespace: str, workers: list[subprocess.Popen[str]]
) -> None:
    workers.append(doomed := spawn("hang", redis_url, namespace))
    assert read(doomed) == {"state": "loading"}
    doomed.kill()
    doomed.wait(10)
    il = Interlock(redis_url, namespace=namespace)
    started = time.monotonic()
    assert il.cache("crash", lock_wait=1.0).get_or_load(1, lambda: "v") == "v"
    assert time.monotonic() - started < 1.0 + 1.5  # the 1 s lease lapses, then we load
    il.close()


def test_redis_killed_mid_run_fails_open_and_recovers(
    fresh_redis: Any, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="interlock.cache")
    il = Interlock(fresh_redis.url, namespace=namespace, socket_timeout=0.5, connect_timeout=0.5)
    cache = il.cache("outage", breaker_cooldown=0.2, ttl=60.0)
    assert il.registry is not None

    def degraded() -> float:
        return il.registry.get_sample_value("interlock_cache_degraded", {"cache": "outage"}) or 0

    def hits() -> float:
        labels = {"cache": "outage", "result": "hit"}
        return il.registry.get_sample_value("interlock_cache_requests_total", labels) or 0

    served: list[object] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def caller(offset: int) -> None:
        n = offset
        while not stop.is_set():
            n += 1
            try:
                served.append(cache.get_or_load(n % 5, lambda n=n: f"v{n % 5}"))  # type: ignore[misc]
            except BaseException as exc:
                errors.append(exc)
            time.sleep(0.005)

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    try:
        assert until(lambda: hits() > 20, 10)
        assert degraded() == 0
        fresh_redis.kill()
        assert until(lambda: degraded() == 1, 10)
        during = len(served)
        assert until(lambda: len(served) > during + 20, 10)  # still served, from loaders
        fresh_redis.start()
        assert until(lambda: degraded() == 0, 15)  # no restart of the client needed
        before = hits()
        assert until(lambda: hits() > before + 20, 10)
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
    assert errors == []
    assert set(served) <= {f"v{i}" for i in range(5)}
    actions = [getattr(r, "event.action", None) for r in caplog.records]
    assert "cache-degraded" in actions and "cache-recovered" in actions
    il.close()


def test_near_cache_is_flushed_when_the_channel_reconnects(fresh_redis: Any) -> None:
    il = Interlock(fresh_redis.url, namespace="n", socket_timeout=0.5, connect_timeout=0.5)
    cache = il.cache("flush", near=True, near_ttl=60.0)
    cache.get_or_load(1, lambda: "v")
    assert cache.get(1) == "v" and len(cache._near) == 1  # type: ignore[arg-type]
    fresh_redis.kill()
    fresh_redis.start()
    # Redis lost everything, including invalidations this process could not receive
    assert until(lambda: len(cache._near) == 0, 10)  # type: ignore[arg-type]
    assert cache.get(1) is None
    il.close()


class Exploit:
    """Unpickling this creates a file: proof that a payload was unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.path), "w"))


def test_a_pickle_planted_in_redis_is_never_unpickled(redis_url: str, tmp_path: Path) -> None:
    canary = tmp_path / "unpickled"
    payload = pickle.dumps(Exploit(canary))
    signer = PickleSerializer(hmac_key=b"s" * 32)
    forged = encode_envelope(
        Exploit(canary), PickleSerializer(hmac_key=b"attacker-key-0000"),
        created_ms=int(time.time() * 1000), ttl_ms=60_000, stale_ms=0, delta_us=0,
    )  # fmt: skip
    rightly_signed = encode_envelope(
        Exploit(canary), signer, created_ms=int(time.time() * 1000), ttl_ms=60_000,
        stale_ms=0, delta_us=0,
    )  # fmt: skip
    il = Interlock(redis_url, namespace=f"x{uuid.uuid4().hex[:8]}")
    default = il.cache("default")
    pickled = il.cache("pickled", serializer=signer)
    raw = redis.Redis.from_url(redis_url)
    plants = [
        (default, payload),  # a bare pickle
        (default, rightly_signed),  # an envelope of another codec
        (pickled, payload),
        (pickled, forged),  # signed with the wrong key
    ]
    for index, (cache, planted) in enumerate(plants):
        raw.set(entry_keys(il.namespace, cache.name, index).entry, planted)
        assert cache.get(index) is None
        assert cache.get_or_load(index, lambda: "reloaded") == "reloaded"  # and overwritten
        assert cache.get(index) == "reloaded"
    assert not canary.exists()
    assert il.registry is not None
    errors = sum(
        il.registry.get_sample_value(
            "interlock_cache_requests_total", {"cache": name, "result": "error"}
        )
        or 0
        for name in ("default", "pickled")
    )
    assert errors == 8
    raw.close()
    il.close()


def test_a_load_overtaken_by_invalidate_tag_is_not_kept_by_its_near_cache(
    redis_url: str, namespace: str, workers: list[subprocess.Popen[str]]
) -> None:
    """docs/cache.md: loads in flight when ``invalidate_tag`` returns are not served
    afterwards, here or in other processes (issue 10 item 3: served for near_ttl)."""
    workers.append(loader := spawn("near-slow-load", redis_url, namespace))
    assert read(loader) == {"state": "loading"}
    il = Interlock(redis_url, namespace=namespace)
    il.cache("race").invalidate_tag("catalog")
    invalidated = time.time()
    tell(loader, "finish")
    outcome = read(loader)
    assert outcome["value"] == "old"  # the call that began before the invalidation
    stale_for = outcome["gone_at"] - invalidated
    print(f"old value served for {stale_for * 1000:.1f} ms after invalidate_tag returned")
    assert stale_for < COHERENCE_BOUND_S
    assert redis.Redis.from_url(redis_url).get(entry_keys(namespace, "race", 1).entry) is None
    il.close()


def test_invalidation_storm_no_reader_serves_an_outdated_value_past_the_bound(
    redis_url: str, namespace: str, workers: list[subprocess.Popen[str]]
) -> None:
    """3 reader processes (2 threads + 2 tasks each, near caches, slow loaders; see
    ``_cache_worker.storm``) against a
    writer that bumps the source and invalidates the tag in bursts, then stays quiet for
    longer than the bound: a read that began more than COHERENCE_BOUND_S after the
    invalidation of version v returned never serves v (a stale fill kept by a near cache
    shows up in the quiet spell)."""
    bursts = int(os.environ.get("INTERLOCK_STORM_BURSTS", "3"))
    quiet = COHERENCE_BOUND_S + 0.2
    seconds = bursts * (quiet + 0.2)
    workers += [spawn("storm", redis_url, namespace, str(seconds), str(i), "3") for i in range(3)]
    for proc in workers:
        assert read(proc) == {"state": "ready"}
    r = redis.Redis.from_url(redis_url)
    il = Interlock(redis_url, namespace=namespace)
    cache = il.cache("storm")
    r.set(f"{namespace}:src", 0)
    for proc in workers:
        tell(proc, "go")
    outdated_at: list[float] = []  # [v]: when invalidate_tag returned after src became v + 1
    for _ in range(bursts):
        for _ in range(30):
            r.set(f"{namespace}:src", len(outdated_at) + 1)
            cache.invalidate_tag("catalog")
            outdated_at.append(time.time())
            time.sleep(0.005)  # loads overlap invalidations all the time
        time.sleep(quiet)
    reads = [read for proc in workers for read in read_reads(proc)]
    late = [
        started - outdated_at[version]
        for started, version in reads
        if version < len(outdated_at) and started > outdated_at[version]
    ]
    late.sort()
    worst = late[-1] if late else 0.0
    p99 = late[int(len(late) * 0.99)] if late else 0.0
    print(f"{len(reads)} reads, {len(outdated_at)} invalidations; {len(late)} reads began "
          f"after their value was invalidated: by p99 {p99 * 1000:.1f} ms, "
          f"max {worst * 1000:.1f} ms")
    assert len(reads) > 100
    assert worst < COHERENCE_BOUND_S, late[-10:]
    il.close()


def read_reads(proc: subprocess.Popen[str]) -> list[tuple[float, int]]:
    return [(started, version) for started, version in read(proc, 60.0)["reads"]]
