"""The response cache of both drivers, on ``interlock.cache(rule.name)``.

Decisions (cacheability, key, ETag, headers) are the pure functions of
``interlock.http._cache``; storage, single flight across requests and processes,
stale-while-revalidate and tag invalidation are the cache's. The driver's responder is the
:class:`AsyncCacheTarget`: it runs the application to the client, or against a snapshot of
the request to capture the response without touching the client (so the cache may also run
it in the background to refresh a stale entry), and writes a response. A response that may
not be stored is kept as a "pass" marker: later requests for the key go straight to the
application instead of queueing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence  # noqa: F401, RUF100 (sync twin: unused)
from typing import Any, Protocol, TypeVar

from interlock import _context
from interlock._async.cache.cache import AsyncCache
from interlock._async.client import AsyncInterlock
from interlock.cache import CacheKwargs
from interlock.errors import BackendError
from interlock.http._cache import CachePlan, PassList, answer, entry_or_pass, valid_entry
from interlock.http._core import HttpCore
from interlock.http._exchange import ClientGone, Exchange
from interlock.http._rules import CacheRule
from interlock.http.types import Headers
from interlock.metrics import Metrics

T = TypeVar("T")
Entry = dict[str, Any]  # the stored response (interlock.http._cache.entry_or_pass)
HTTP_CACHE_SPAN = "interlock.http.cache"  # docs/tracing.md


class Captured:
    """A response the application gave to a snapshot of the request."""

    __slots__ = ("body", "headers", "status", "truncated")

    def __init__(self) -> None:
        self.status = 0
        self.headers: Headers = []  # names in lower case
        self.body = bytearray()
        self.truncated = False  # it outgrew the rule's max_body


AsyncCapture = Callable[[int], Awaitable[Captured]]


class AsyncCacheTarget(Protocol):
    """What the response cache asks of a driver's per-request responder."""

    async def pass_through(self, x_cache: str | None) -> None:
        """Run the application to the client, with ``X-Cache: x_cache`` if given."""

    def snapshot(self) -> AsyncCapture:
        """Capture the request now; the function that runs the application on that copy
        (any number of times, also after the request ended) and returns its response,
        keeping at most ``max_body`` bytes of body."""

    async def respond(self, status: int, headers: Headers, body: bytes) -> None:
        """Write a whole response to the client."""

    async def wait(self, step: Awaitable[T]) -> T:
        """``step``'s result, unless the client leaves first (:class:`ClientGone`)."""


class AsyncResponseCache:
    """Serves :class:`~interlock.CacheRule` requests from ``interlock.cache(rule.name)``."""

    def __init__(self, interlock: AsyncInterlock, core: HttpCore) -> None:
        self.interlock = interlock
        self.core = core
        self.options = cache_options(core.cache_rules)
        self.passes = PassList()

    async def handle(self, ex: Exchange, target: AsyncCacheTarget) -> None:
        """Serve the request from the cache (or the application), unless its client leaves
        while the response is loaded: then nothing is sent (the load goes on for others)."""
        decision = self.core.cache_plan(ex)
        if decision is None:
            await target.pass_through(None)
            return
        ex.cache = decision
        with self.interlock.tracer.span(HTTP_CACHE_SPAN) as span:
            try:
                await self._handle(ex, decision, target)
            finally:
                if span.recording:
                    span.update(_span_attributes(ex, decision))

    async def _handle(self, ex: Exchange, decision: CachePlan, target: AsyncCacheTarget) -> None:
        rule = decision.rule
        if decision.bypass is not None:
            count(self.interlock.metrics, rule, "bypass", decision.bypass)
            await target.pass_through("BYPASS")
            return
        if decision.key in self.passes:
            count(self.interlock.metrics, rule, "bypass", "uncacheable")
            await target.pass_through("BYPASS")
            return
        cache = self.interlock.cache(rule.name, **self.options[rule.name])
        if ex.method == "HEAD":  # from the GET entry if there is one; never stored
            await self._head(ex, decision, cache, target)
            return
        try:
            entry, captured = await self._load(ex, decision, cache, target)
        except ClientGone:
            return
        await self._serve(ex, decision, cache, target, entry, captured)

    async def _head(
        self, ex: Exchange, decision: CachePlan, cache: AsyncCache, target: AsyncCacheTarget
    ) -> None:
        entry = await cache.get(decision.key) if decision.serve else None
        if not valid_entry(entry):
            await target.pass_through("MISS")
            return
        decision.result = _cache_result(ex)
        inm = ex.headers.get("if-none-match")
        await target.respond(*answer(entry, "HEAD", inm, decision.result, time.time()))

    async def _load(
        self, ex: Exchange, decision: CachePlan, cache: AsyncCache, target: AsyncCacheTarget
    ) -> tuple[Entry | None, Captured | None]:
        """The entry (shared with other requests, or loaded here) and the response this
        request's own load captured, if it ran one."""
        rule = decision.rule
        capture = target.snapshot()
        mine: list[Captured] = []

        async def loader() -> Entry | None:
            captured = await capture(rule.max_body)
            mine.append(captured)
            entry = entry_or_pass(rule, captured.status, captured.headers, bytes(captured.body),
                                  captured.truncated, [*decision.tags, *ex.tags])  # fmt: skip
            if valid_entry(entry):
                return entry
            self.passes.add(decision.key, rule.ttl)
            _context.record("cache", reason=entry["pass"])
            return None  # not stored (negative_ttl=0), and not shared

        if decision.serve:
            load = cache.get_or_load(decision.key, loader, ttl=rule.ttl, tags=decision.tags)
            entry: Entry | None = await target.wait(load)
        else:  # Cache-Control: no-cache: refresh the entry from the application
            entry = await target.wait(loader())
            count(self.interlock.metrics, rule, "miss", "no-cache")
            if entry is not None:
                await _store(cache, decision.key, entry, rule.ttl, [*decision.tags, *ex.tags])
        return entry, mine[0] if mine else None

    async def _serve(
        self,
        ex: Exchange,
        decision: CachePlan,
        cache: AsyncCache,
        target: AsyncCacheTarget,
        entry: Entry | None,
        captured: Captured | None,
    ) -> None:
        rule = decision.rule
        if not valid_entry(entry):
            decision.result = "miss"
            if captured is not None and not captured.truncated:
                headers = [*captured.headers, ("x-cache", "BYPASS")]
                await target.respond(captured.status, headers, bytes(captured.body))
            else:
                await target.pass_through("BYPASS")
            return
        if captured is not None and decision.serve and set(ex.tags) - set(decision.tags):
            # tags the handler added: write the entry again under all of them
            await _store(cache, decision.key, entry, rule.ttl, [*decision.tags, *ex.tags])
        decision.result = served_result(_cache_result(ex), captured is not None)
        inm = ex.headers.get("if-none-match")
        await target.respond(*answer(entry, ex.method, inm, decision.result, time.time()))


def cache_options(rules: Sequence[CacheRule]) -> dict[str, CacheKwargs]:
    """The cache options per cache name; rules sharing a name must agree on them.

    Raises:
        ValueError: two rules share a cache name but not ``stale_ttl``.
    """
    options: dict[str, CacheKwargs] = {}
    for rule in rules:
        wanted: CacheKwargs = {"stale_ttl": rule.stale_ttl, "negative_ttl": 0.0}
        if options.setdefault(rule.name, wanted) != wanted:
            raise ValueError(
                f"cache rules sharing the cache name {rule.name!r} have different stale_ttl; "
                "give them different name= values"
            )
    return options


def count(metrics: Metrics, rule: CacheRule, result: str, reason: str | None = None) -> None:
    """Count and record an outcome decided by the middleware rather than by the cache."""
    label = metrics.label("interlock_cache_requests_total", "cache", rule.name)
    metrics.cache_requests.labels(cache=label, result=result).inc()
    _context.record("cache", name=rule.name, result=result, reason=reason)


def served_result(recorded: str, ran_here: bool) -> str:
    """The result a response reports: a miss when this request ran the handler, unless the
    cache was bypassed (degraded or failing) — header, log and metric then all say so."""
    if ran_here and recorded not in ("bypass", "error"):
        return "miss"
    return recorded


def _span_attributes(ex: Exchange, decision: CachePlan) -> dict[str, Any]:
    """The ``interlock.http.cache`` span's attributes, once the request was answered."""
    section = ex.context.events.get("cache") or {}
    result = section.get("result")
    if decision.bypass is None and result not in ("bypass", "error"):
        result = decision.result  # what the response's X-Cache says
    return {
        "http.request.method": ex.method,
        "http.route": decision.rule.route.template,
        "interlock.cache.name": decision.rule.name,
        "interlock.http.cache.result": result,
        "interlock.http.cache.reason": section.get("reason"),
    }


def _cache_result(ex: Exchange) -> str:
    section = ex.context.events.get("cache") or {}
    return str(section.get("result", "hit"))


async def _store(cache: AsyncCache, key: str, entry: Entry, ttl: float, tags: list[str]) -> None:
    """Write ``entry`` again, best effort: the response is already decided (fail open).

    A write refused while the cache is degraded (or failing) must not turn the handler's
    good response into a 500; the cause goes to the log instead.
    """
    try:
        await cache.set(key, entry, ttl=ttl, tags=tags)
    except BackendError as exc:
        logging.getLogger("interlock.cache").warning(
            "response cache %r: entry not stored: %s", cache.name, exc
        )
