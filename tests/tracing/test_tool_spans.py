"""Spans of locks, caches and transactions, recorded by the real SDK (docs/tracing.md)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from opentelemetry.trace import StatusCode

from interlock import AsyncInterlock, Interlock, LockTimeout, TransactionAborted

from .conftest import Spans, hex_ids


def _until(predicate: object, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


# -- locks ---------------------------------------------------------------------------------


def test_lock_acquire_and_hold_are_siblings_under_the_callers_span(
    spans: Spans, url: str, namespace: str
) -> None:
    with Interlock(url, namespace=namespace, tracer_provider=spans.provider) as il:
        tracer = spans.provider.get_tracer("test")
        with tracer.start_as_current_span("request"), il.lock("orders", 42) as lease:
            fence = lease.fence
    assert spans.tree() == {
        ("request", None),
        ("interlock.lock.acquire", "request"),
        ("interlock.lock.hold", "request"),
    }
    acquire = spans.attrs("interlock.lock.acquire")
    assert acquire["interlock.lock.name"] == "orders"
    assert acquire["interlock.lock.key"] == "42"
    assert acquire["interlock.lock.result"] == "acquired"
    assert acquire["interlock.lock.fence"] == fence
    if url == "mem://":  # a fresh Redis refuses grants for a moment (restart grace)
        assert acquire["interlock.lock.contended"] is False
    assert acquire["interlock.lock.waited_ms"] >= 0
    assert spans.one("interlock.lock.acquire").status.status_code is StatusCode.UNSET
    hold = spans.one("interlock.lock.hold")
    assert hold.attributes is not None and hold.attributes["interlock.lock.fence"] == fence
    acquire_span = spans.one("interlock.lock.acquire")
    assert acquire_span.end_time is not None and hold.start_time is not None
    assert hold.start_time >= acquire_span.end_time  # held from the grant to the release


def test_a_timed_out_acquire_fails_names_the_holder_and_links_to_its_span(
    spans: Spans, url: str, namespace: str
) -> None:
    tracer = spans.provider.get_tracer("test")
    with (
        Interlock(url, namespace=namespace, tracer_provider=spans.provider) as holder,
        Interlock(url, namespace=namespace, tracer_provider=spans.provider) as waiter,
    ):
        with tracer.start_as_current_span("holder"):
            lease = holder.lock("stock", "sku-1").acquire()
        holder_ids = hex_ids(spans.one("interlock.lock.acquire"))  # the span holding it
        with pytest.raises(LockTimeout):
            waiter.lock("stock", "sku-1", timeout=0.2).acquire()
        assert lease is not None
        lease.release()
    timed_out = [
        s for s in spans.named("interlock.lock.acquire")
        if (s.attributes or {}).get("interlock.lock.result") == "timeout"
    ]  # fmt: skip
    assert len(timed_out) == 1
    span = timed_out[0]
    attrs = dict(span.attributes or {})
    assert span.status.status_code is StatusCode.ERROR
    assert attrs["error.type"] == "LockTimeout"
    assert attrs["interlock.lock.contended"] is True
    assert attrs["interlock.lock.holder.trace_id"] == holder_ids[0]
    assert attrs["interlock.lock.holder.pid"] > 0
    assert any(e.name == "exception" for e in span.events)
    assert [hex_ids_of(link.context) for link in span.links] == [holder_ids]


def hex_ids_of(ctx: object) -> tuple[str, str]:
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")  # type: ignore[attr-defined]


def test_lock_info_carries_the_holders_trace_and_span(spans: Spans, namespace: str) -> None:
    tracer = spans.provider.get_tracer("test")
    with Interlock("mem://", namespace=namespace, tracer_provider=spans.provider) as il:
        with tracer.start_as_current_span("job") as job, il.lock("report"):
            info = il.lock_info("report")
    assert info is not None
    assert info.trace_id == hex_ids(job)[0]  # type: ignore[arg-type]
    assert info.span_id == hex_ids(spans.one("interlock.lock.acquire"))[1]


def test_a_lost_lease_is_an_event_on_the_hold_span(spans: Spans, namespace: str) -> None:
    with Interlock("mem://", namespace=namespace, tracer_provider=spans.provider) as il:
        lease = il.lock("short", ttl=0.05, auto_renew=False).acquire()
        assert lease is not None
        _until(lambda: lease.lost)
        with pytest.raises(Exception, match="lost"):
            lease.release()
    hold = spans.one("interlock.lock.hold")
    assert [(e.name, dict(e.attributes or {})) for e in hold.events] == [
        ("interlock.lock.lost", {"interlock.lock.reason": "expired"})
    ]
    assert hold.status.status_code is StatusCode.ERROR


def test_lock_spans_under_asyncio_follow_each_task(spans: Spans, url: str, namespace: str) -> None:
    tracer = spans.provider.get_tracer("test")

    async def main() -> None:
        async with AsyncInterlock(url, namespace=namespace, tracer_provider=spans.provider) as il:

            async def task(n: int) -> None:
                with tracer.start_as_current_span(f"task-{n}"):
                    async with il.lock("seat", n % 2):
                        await asyncio.sleep(0)

            await asyncio.gather(*(task(n) for n in range(6)))

    asyncio.run(main())
    for span in spans.named("interlock.lock.acquire") + spans.named("interlock.lock.hold"):
        parent = spans.parent_of(span)
        assert parent is not None and parent.name.startswith("task-")
        assert parent.context.trace_id == span.context.trace_id
    assert len(spans.named("interlock.lock.acquire")) == 6


def test_lock_spans_in_threads_follow_each_thread(spans: Spans, url: str, namespace: str) -> None:
    tracer = spans.provider.get_tracer("test")
    with Interlock(url, namespace=namespace, tracer_provider=spans.provider) as il:

        def work(n: int) -> None:
            with tracer.start_as_current_span(f"thread-{n}"), il.lock("seat", "one"):
                pass

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    for span in spans.named("interlock.lock.acquire"):
        parent = spans.parent_of(span)
        assert parent is not None and parent.name.startswith("thread-")
    assert len(spans.named("interlock.lock.hold")) == 4


# -- cache ---------------------------------------------------------------------------------


def test_get_or_load_miss_has_a_load_child_then_hits(
    spans: Spans, url: str, namespace: str
) -> None:
    with Interlock(url, namespace=namespace, tracer_provider=spans.provider) as il:
        products = il.cache("products", ttl=30)
        assert products.get_or_load(7, lambda: {"id": 7}) == {"id": 7}
        miss = {s.context.span_id for s in spans.named("interlock.cache.get_or_load")}
        assert products.get_or_load(7, lambda: {"id": 0}) == {"id": 7}
    results = {
        s.context.span_id in miss: (s.attributes or {})["interlock.cache.result"]
        for s in spans.named("interlock.cache.get_or_load")
    }
    assert results == {True: "miss", False: "hit"}
    load = spans.one("interlock.cache.load")
    parent = spans.parent_of(load)
    assert parent is not None and parent.name == "interlock.cache.get_or_load"
    assert (load.attributes or {})["interlock.cache.name"] == "products"
    assert spans.named("interlock.cache.get_or_load")[0].attributes["interlock.cache.key"] == "7"  # type: ignore[index]


def test_near_hits_and_concurrent_callers_are_reported(spans: Spans, namespace: str) -> None:
    release = threading.Event()
    with Interlock("mem://", namespace=namespace, tracer_provider=spans.provider) as il:
        cache = il.cache("near", ttl=30, near=True)

        def slow() -> str:
            release.wait(5)
            return "v"

        results: list[str] = []
        leader = threading.Thread(target=lambda: results.append(cache.get_or_load("k", slow)))
        leader.start()
        _until(lambda: len(spans.finished) == 0 and bool(cache._loader.flights))
        follower = threading.Thread(target=lambda: results.append(cache.get_or_load("k", slow)))
        follower.start()
        _until(lambda: follower.is_alive())
        release.set()
        leader.join()
        follower.join()
        cache.get_or_load("k", slow)
    got = sorted(str((s.attributes or {})["interlock.cache.result"])
                 for s in spans.named("interlock.cache.get_or_load"))  # fmt: skip
    assert got[0] in ("coalesced", "hit")  # the follower joined the flight, or found it done
    assert "miss" in got and "near_hit" in got
    assert len(spans.named("interlock.cache.load")) == 1


def test_a_failing_loader_marks_load_and_get_or_load_failed(spans: Spans, namespace: str) -> None:
    def broken() -> None:
        raise RuntimeError("database down")

    with Interlock("mem://", namespace=namespace, tracer_provider=spans.provider) as il:
        with pytest.raises(RuntimeError):
            il.cache("c").get_or_load("k", broken)
    for name in ("interlock.cache.load", "interlock.cache.get_or_load"):
        span = spans.one(name)
        assert span.status.status_code is StatusCode.ERROR, name
        assert (span.attributes or {})["error.type"] == "RuntimeError"


# -- transactions --------------------------------------------------------------------------


def test_a_two_phase_commit_has_prepare_decide_commit_children(
    spans: Spans, url: str, namespace: str
) -> None:
    relaxed = "strict" if url == "mem://" else "relaxed"  # the suite's Redis: no fsync
    with Interlock(
        url, namespace=namespace, tracer_provider=spans.provider, durability=relaxed
    ) as il:
        with il.transaction("transfer") as tx:
            tx.redis("a").set("x", 1)
            tx.redis("b").set("y", 2)
        xid = tx.xid
    tree = spans.tree()
    for child in ("interlock.txn.prepare", "interlock.txn.decide", "interlock.txn.commit"):
        assert (child, "interlock.txn") in tree, tree
    assert not spans.named("interlock.txn.abort")
    txn = spans.attrs("interlock.txn")
    assert txn["interlock.txn.name"] == "transfer"
    assert txn["interlock.txn.xid"] == xid
    assert txn["interlock.txn.outcome"] == "committed"
    assert txn["interlock.txn.participants"] == 2
    assert len(txn["interlock.txn.resources"]) == 2
    assert list(txn["interlock.txn.kinds"]) == ["redis", "redis"]
    assert list(spans.attrs("interlock.txn.prepare")["interlock.txn.votes"]) == ["yes", "yes"]
    assert spans.attrs("interlock.txn.decide")["interlock.txn.decision"] == "commit"
    assert spans.one("interlock.txn").status.status_code is StatusCode.UNSET


def test_a_refused_vote_aborts_with_error_status(spans: Spans, namespace: str) -> None:
    def withdraw(il: Interlock) -> None:
        with il.transaction("withdraw") as tx:
            tx.redis("a").incrby("balance", -5, min=0)  # 0 - 5 < 0: votes no
            tx.redis("b").set("audit", 1)

    with Interlock("mem://", namespace=namespace, tracer_provider=spans.provider) as il:
        with pytest.raises(TransactionAborted):
            withdraw(il)
    tree = spans.tree()
    assert ("interlock.txn.prepare", "interlock.txn") in tree
    assert ("interlock.txn.abort", "interlock.txn") in tree
    assert not spans.named("interlock.txn.commit")
    txn = spans.one("interlock.txn")
    assert txn.status.status_code is StatusCode.ERROR
    assert (txn.attributes or {})["interlock.txn.outcome"] == "aborted"
    assert (txn.attributes or {})["interlock.txn.reason"] == "vote_no"
    assert "no" in list(spans.attrs("interlock.txn.prepare")["interlock.txn.votes"])
    assert spans.one("interlock.txn.prepare").status.status_code is StatusCode.ERROR
    assert spans.attrs("interlock.txn.abort")["interlock.txn.reason"] == "vote_no"


def test_a_one_phase_commit_and_a_recovery_pass(spans: Spans, namespace: str) -> None:
    with Interlock("mem://", namespace=namespace, tracer_provider=spans.provider) as il:
        with il.transaction("single") as tx:
            tx.redis("a").set("x", 1)
        report = il.recover(safety=0)
    assert spans.attrs("interlock.txn.commit")["interlock.txn.one_phase"] is True
    assert ("interlock.txn.commit", "interlock.txn") in spans.tree()
    recover = spans.attrs("interlock.txn.recover")
    assert recover["interlock.txn.recover.committed"] == len(report.committed)
    assert recover["interlock.txn.safety"] == 0


# -- without a provider --------------------------------------------------------------------


def test_without_a_configured_provider_nothing_is_recorded_and_nothing_breaks(
    spans: Spans, namespace: str
) -> None:
    # no tracer_provider=: the global one, which no test sets (the API's proxy: no-op)
    with Interlock("mem://", namespace=namespace) as il:
        assert not il.tracer.enabled
        with il.lock("plain") as lease:
            assert lease.span.recording is False
        assert il.cache("c").get_or_load("k", lambda: 1) == 1
        with il.transaction("t") as tx:
            tx.redis("a").set("x", 1)
            tx.redis("b").set("x", 1)
        il.recover(safety=0)
    assert spans.finished == []


def test_a_provider_that_is_not_one_is_refused_with_the_fix() -> None:
    with pytest.raises(TypeError, match="TracerProvider"):
        Interlock("mem://", tracer_provider=object())
