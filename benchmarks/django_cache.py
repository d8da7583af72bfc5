#!/usr/bin/env python3
"""Django cache benchmark: InterlockCache vs django-redis vs Django's own Redis backend.

Run:  .venv/bin/python benchmarks/django_cache.py [--rounds 30] [--calls 300] [--write]

Every contender is a ``CACHES`` alias on the same redis-server, started by this script,
in the same run, with the same value (a small dict) and its own ``KEY_PREFIX``:

- ``interlock``: ``interlock.django.InterlockCache`` with its default serializer (msgpack),
  no near cache, no metrics registry (``REGISTRY: None``);
- ``interlock pickle``: the same with ``SERIALIZER: pickle`` and an ``HMAC_KEY`` (what
  ``cache_page`` and sessions need; each payload is signed and checked);
- ``django-redis``: ``django_redis.cache.RedisCache`` (its default client and pickle);
- ``django``: ``django.core.cache.backends.redis.RedisCache`` (Django 4.0+, pickle).

1. ``get`` of a warm key, ``set``, ``get_many`` of 10 warm keys: microseconds per call.
   Contenders take turns in interleaved rounds in shuffled order; the ratio is the median
   over rounds of (contender / Django's backend in the same round), so drift cancels out.
2. ``get_or_set`` stampede: PROCESSES processes x THREADS threads call
   ``get_or_set(key, slow_default, 600)`` on one cold key at the same moment; the default
   sleeps 0.2 s. Counted: how many times the default ran, and the slowest caller's wait.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

from _common import machine, median, start_redis, write_section

TIMES = "\N{MULTIPLICATION SIGN}"
MICRO = "\N{MICRO SIGN}"
DOC = {"id": 42, "name": "widget", "price": 9.99, "tags": ["a", "b"], "stock": 17}
MANY = 10
DEFAULT_SECONDS = 0.2
PROCESSES = 4
THREADS = 4
KINDS = ("interlock", "interlock pickle", "django-redis", "django")
BASELINE = "django"


def caches_setting(url: str, suffix: str) -> dict[str, dict[str, Any]]:
    """One alias per contender; ``suffix`` keeps a run's keys apart from other runs'."""
    interlock = {"NAME": "bench", "NAMESPACE": f"bench{suffix}", "REGISTRY": None}
    return {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "interlock": {
            "BACKEND": "interlock.django.InterlockCache",
            "LOCATION": url,
            "KEY_PREFIX": f"il{suffix}",
            "OPTIONS": interlock,
        },
        "interlock pickle": {
            "BACKEND": "interlock.django.InterlockCache",
            "LOCATION": url,
            "KEY_PREFIX": f"ilp{suffix}",
            "OPTIONS": {
                **interlock,
                "SERIALIZER": "pickle",
                "HMAC_KEY": "benchmark-hmac-key-0123456789",
            },
        },
        "django-redis": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": url,
            "KEY_PREFIX": f"dr{suffix}",
        },
        "django": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": url,
            "KEY_PREFIX": f"dj{suffix}",
        },
    }


def setup_django(url: str, suffix: str) -> None:
    import django
    from django.conf import settings

    settings.configure(CACHES=caches_setting(url, suffix), USE_TZ=True, SECRET_KEY="bench")
    django.setup()


# -- 1: get / set / get_many -----------------------------------------------------------------


def latency(rounds: int, calls: int) -> dict[str, dict[str, dict[str, float]]]:
    """op -> kind -> {"us", "vs_django"}: medians over interleaved rounds."""
    from django.core.cache import caches

    keys = [f"k{i}" for i in range(MANY)]
    ops = {
        "get": lambda c: c.get("product:42"),
        "set": lambda c: c.set("product:43", DOC, 600),
        "get_many": lambda c: c.get_many(keys),
    }
    for kind in KINDS:
        cache = caches[kind]
        cache.set("product:42", DOC, 600)
        cache.set_many({k: DOC for k in keys}, 600)
        assert cache.get("product:42") == DOC, kind
        assert len(cache.get_many(keys)) == MANY, kind
        for op in ops.values():  # open connections, load scripts
            for _ in range(50):
                op(cache)
    per_round = {op: {kind: [] for kind in KINDS} for op in ops}
    order = random.Random(11)
    for _ in range(rounds):
        for op_name, op in ops.items():
            for kind in order.sample(KINDS, len(KINDS)):
                cache = caches[kind]
                started = time.perf_counter()
                for _ in range(calls):
                    op(cache)
                per_round[op_name][kind].append((time.perf_counter() - started) / calls)
    out: dict[str, dict[str, dict[str, float]]] = {}
    for op_name, kinds in per_round.items():
        base = kinds[BASELINE]
        out[op_name] = {
            kind: {
                "us": median(times) * 1e6,
                "vs_django": median([t / b for t, b in zip(times, base, strict=True)]),
            }
            for kind, times in kinds.items()
        }
    return out


# -- 2: get_or_set stampede across processes -------------------------------------------------


def worker(kind: str, url: str, suffix: str) -> None:
    """One process of the stampede: THREADS threads call get_or_set once "go" arrives."""
    setup_django(url, suffix)
    from django.core.cache import caches

    ran: list[float] = []
    waits: list[float] = []
    values: list[Any] = []
    lock = threading.Lock()

    def slow_default() -> dict[str, Any]:
        with lock:
            ran.append(time.monotonic())
        time.sleep(DEFAULT_SECONDS)  # the expensive query
        return dict(DOC)

    go = threading.Event()

    def call() -> None:
        cache = caches[kind]
        cache.get("warmup")  # this thread's connection, before "go"
        ready.release()
        go.wait()
        started = time.monotonic()
        value = cache.get_or_set("stampede", slow_default, 600)
        with lock:
            waits.append(time.monotonic() - started)
            values.append(value)

    ready = threading.Semaphore(0)
    threads = [threading.Thread(target=call) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for _ in threads:
        ready.acquire()
    print("ready", flush=True)
    sys.stdin.readline()
    go.set()
    for thread in threads:
        thread.join(60)
    assert all(v == DOC for v in values), values
    print(json.dumps({"ran": len(ran), "max_wait": max(waits)}), flush=True)


def stampede(kind: str, url: str) -> dict[str, float]:
    """Default runs and slowest wait when PROCESSES x THREADS callers hit one cold key."""
    suffix = uuid.uuid4().hex[:8]  # one cold key for all the processes
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--worker", kind, url, suffix],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(PROCESSES)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        ran, max_wait = 0, 0.0
        for proc in procs:
            assert proc.stdout is not None
            result = json.loads(proc.stdout.readline())
            ran += result["ran"]
            max_wait = max(max_wait, result["max_wait"])
        return {"ran": ran, "max_wait": max_wait}
    finally:
        for proc in procs:
            proc.wait(60)


# -- report ----------------------------------------------------------------------------------


def report(
    lat: dict[str, dict[str, dict[str, float]]], storm: dict[str, dict[str, float]], load: str
) -> str:
    import django
    import django_redis
    import redis

    versions = (
        f"Django {django.get_version()}, django-redis {django_redis.__version__}, "
        f"redis-py {redis.__version__}"
    )
    lines = [
        f"Machine: {machine()}, {os.cpu_count()} cores; {versions}; one throwaway "
        f"redis-server on localhost; all contenders in the same run; load average {load} "
        "(other work on the machine). Medians over interleaved rounds in shuffled order; "
        f"{TIMES} django is the median of per-round ratios to Django's own Redis backend.",
        "",
        f"| backend | get {MICRO}s | {TIMES} django | set {MICRO}s | {TIMES} django | "
        f"get_many({MANY}) {MICRO}s | {TIMES} django |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for kind in KINDS:
        cells = [f"{lat[op][kind]['us']:.1f} | {lat[op][kind]['vs_django']:.3f}" for op in lat]
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    callers = PROCESSES * THREADS
    lines += [
        "",
        f"| `get_or_set` on a cold key, {PROCESSES} processes {TIMES} {THREADS} threads "
        f"({callers} callers), default takes {DEFAULT_SECONDS:.1f} s | default ran | "
        "slowest caller |",
        "|---|---:|---:|",
    ]
    for kind in KINDS:
        row = storm[kind]
        lines.append(f"| {kind} | {row['ran']} | {row['max_wait']:.2f} s |")
    lines += [
        "",
        "InterlockCache's `get_or_set` is interlock's `get_or_load`: one caller in all the "
        "processes holds the fill lease and runs the default, the others wait for its value. "
        "django-redis and Django's backend inherit `BaseCache.get_or_set` (get, then "
        "`default()` and `add()` on a miss), so every caller that misses runs the default. "
        "Every call of every backend is one round trip (checked with `_common.RoundTrips`). "
        "Django's backend builds a `redis.Redis` client per call (redis-py rebuilds its "
        "response-callback table each time: about half of that backend's client CPU in "
        "cProfile). InterlockCache's `get_many` pipelines one `cache_read` EVALSHA per key "
        "where the others send one MGET: per command, redis-py's pipeline costs about as "
        "much as a single call (a plain 10-GET pipeline measured 170-260 "
        f"{MICRO}s here), so `get_many` is the one operation where InterlockCache trails. "
        "On this shared machine the absolute figures moved by up to 3x between runs; the "
        "ratios and the stampede counts held.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--write", action="store_true", help="update benchmarks/RESULTS.md")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, url, suffix = args.worker
        worker(kind, url, suffix)
        return
    load_before = os.getloadavg()[0]
    with start_redis() as server:
        setup_django(server.url, uuid.uuid4().hex[:8])
        lat = latency(args.rounds, args.calls)
        storm = {}
        for kind in KINDS:
            server.flushall()
            storm[kind] = stampede(kind, server.url)
    load = f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after"
    text = report(lat, storm, load)
    print(text)
    print(json.dumps({"latency": lat, "stampede": storm}, indent=1))
    if args.write:
        command = (
            f".venv/bin/python benchmarks/django_cache.py --rounds {args.rounds} "
            f"--calls {args.calls}"
        )
        write_section(
            "django_cache",
            f"## Django cache backends (`benchmarks/django_cache.py`)\n\n"
            f"Reproduce: `{command} --write`\n\n{text}",
        )


if __name__ == "__main__":
    sys.exit(main())
