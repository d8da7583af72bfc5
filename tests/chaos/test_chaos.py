"""Fault injection: parsed strictly, off by default, counted, and seen by callers."""

from __future__ import annotations

import time
import uuid

import pytest

from interlock import BackendUnavailable, ConfigError, Interlock
from interlock.chaos import ChaosPlan, ChaosRule, parse_chaos


def test_spec_is_parsed_and_validated() -> None:
    assert parse_chaos("latency:lock_acquire:0.1:0.05, error:GET:0.01") == (
        ChaosRule("latency", "lock_acquire", 0.1, 0.05),
        ChaosRule("error", "GET", 0.01, 0.0),
    )
    for bad, fix in [
        ("boom:GET:0.1", "kind:target:probability"),
        ("error:GET:often", "non-numeric"),
        ("error:GET:1.5", "within 0-1"),
        ("latency:GET:0.5", "needs seconds"),
    ]:
        with pytest.raises(ConfigError, match=fix):
            parse_chaos(bad)
    with pytest.raises(ConfigError, match="kind:target"):
        Interlock(chaos="nonsense")


def test_plan_fires_by_probability_latency_first() -> None:
    rules = parse_chaos("error:*:0.5,latency:lock_acquire:0.5:0.01")
    assert ChaosPlan(rules, random_value=lambda: 0.2).faults("lock_acquire") == [
        rules[1],
        rules[0],
    ]
    assert ChaosPlan(rules, random_value=lambda: 0.7).faults("lock_acquire") == []
    assert ChaosPlan(rules, random_value=lambda: 0.2).faults("GET") == [rules[0]]


def _count(il: Interlock, kind: str, target: str) -> float:
    assert il.registry is not None
    return il.registry.get_sample_value(
        "interlock_chaos_injected_total", {"kind": kind, "target": target}
    ) or 0.0


def test_injected_errors_fail_locks_closed_and_are_counted(backend_url: str) -> None:
    namespace = f"ch{uuid.uuid4().hex[:8]}"
    il = Interlock(backend_url, namespace=namespace, chaos="error:lock_acquire:1")
    with pytest.raises(BackendUnavailable, match="chaos"):
        il.lock("account", 1).acquire()
    assert _count(il, "error", "lock_acquire") == 1
    il.close()


def test_injected_latency_delays_and_is_counted() -> None:
    il = Interlock(namespace=f"ch{uuid.uuid4().hex[:8]}", chaos="latency:lock_acquire:1:0.2")
    started = time.monotonic()
    with il.lock("account", 1):
        assert time.monotonic() - started >= 0.2
    assert _count(il, "latency", "lock_acquire") == 1
    il.close()


def test_cache_fails_open_under_injected_errors() -> None:
    il = Interlock(namespace=f"ch{uuid.uuid4().hex[:8]}", chaos="error:*:1")
    products = il.cache("products", ttl=10.0)
    assert products.get_or_load(1, lambda: "loaded") == "loaded"
    assert il.registry is not None
    served_around_the_backend = sum(
        il.registry.get_sample_value(
            "interlock_cache_requests_total", {"cache": "products", "result": result}
        )
        or 0.0
        for result in ("error", "bypass")
    )
    assert served_around_the_backend == 1
    assert _count(il, "error", "*") >= 1
    il.close()


def test_off_by_default() -> None:
    il = Interlock()
    assert il.settings.chaos == ""
    with il.lock("account", 1):
        pass
    assert _count(il, "error", "*") == 0
    il.close()
