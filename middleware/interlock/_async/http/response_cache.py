"""The response cache of both drivers, on ``interlock.cache(rule.name)``.

The HTTP decisions are RFC 9111's (``interlock.http.caching``: what is stored and for how
long, whether a stored response may answer a request, its ``Age``, the client's
conditional and ``Range`` requests) and the plan of ``interlock.http._cache`` (the key:
the full target URI); storage, single flight across requests and processes, the rule's
stale window and tag invalidation are the cache's. The driver's responder is the
:class:`AsyncCacheTarget`: it runs the application to the client, or against a snapshot of
the request (with the request fields the cache chooses) to capture the response without
touching the client (so the cache may also run it in the background to refresh a stale
entry), and writes a response.

A fill is always a full request: the client's validators and ``Range`` are stripped
(``fill_headers``) and answered from the stored response, so no client can make an
unstorable 304/206 decide for others. A response the origin does not let us store is kept
as a "pass" marker: later requests for the key go straight to the application instead of
queueing. The backend keeps an entry as long as the origin's freshness lasts (plus the
rule's ``stale_ttl``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence  # noqa: F401, RUF100 (sync twin: unused)
from typing import Any, NamedTuple, Protocol, TypeVar

from interlock import _context
from interlock._async.cache.cache import AsyncCache
from interlock._async.client import AsyncInterlock
from interlock.cache import CacheKwargs
from interlock.errors import BackendError
from interlock.http._cache import (
    REQUEST_REASONS,
    CachePlan,
    PassList,
    answer,
    make_entry,
    stored_of,
    with_etag,
)
from interlock.http._core import HttpCore
from interlock.http._exchange import ClientGone, Exchange
from interlock.http._responses import problem
from interlock.http._rules import CacheRule
from interlock.http.caching import (
    Action,
    StoredResponse,
    decide_store,
    fill_headers,
    freshness_of,
    lookup,
    request_directives,
)
from interlock.http.types import Headers
from interlock.metrics import Metrics

T = TypeVar("T")
Entry = dict[str, Any]  # the stored response (interlock.http._cache.make_entry)
USABLE = frozenset((Action.FRESH, Action.STALE, Action.STALE_WHILE_REVALIDATE))
FILL_TTL = 1.0  # the fill's first write; the entry is written again with its own lifetime
PASS_SECONDS = 30.0  # a key whose response may not be stored skips the cache this long
_CREDENTIALS = frozenset(("authorization", "cookie"))


class Captured:
    """A response the application gave to a snapshot of the request."""

    __slots__ = ("body", "headers", "status", "truncated")

    def __init__(self) -> None:
        self.status = 0
        self.headers: Headers = []  # names in lower case
        self.body = bytearray()
        self.truncated = False  # it outgrew the rule's max_body


AsyncCapture = Callable[[int, Headers], Awaitable[Captured]]


class RequestView(NamedTuple):
    """What the cache reads of the request beyond the exchange.

    Attributes:
        scheme: ``http`` or ``https`` (after the server's proxy-header handling).
        headers: every request field, names in lower case.
        server: the server's ``(host, port)``, the authority of a request without ``Host``.
    """

    scheme: str
    headers: Headers
    server: tuple[str, int | None] | None


class AsyncCacheTarget(Protocol):
    """What the response cache asks of a driver's per-request responder."""

    def request(self) -> RequestView:
        """The request's scheme, fields and server."""

    async def pass_through(self, x_cache: str | None) -> None:
        """Run the application to the client, with ``X-Cache: x_cache`` if given."""

    def snapshot(self) -> AsyncCapture:
        """Capture the request now; the function that runs the application on that copy
        with the given request fields instead of the client's (any number of times, also
        after the request ended) and returns its response, keeping at most ``max_body``
        bytes of body."""

    async def respond(self, status: int, headers: Headers, body: bytes) -> None:
        """Write a whole response to the client."""

    async def wait(self, step: Awaitable[T]) -> T:
        """``step``'s result, unless the client leaves first (:class:`ClientGone`)."""


class _Fill:
    """One run of the handler for the cache: its response and the entry made of it."""

    __slots__ = ("captured", "entry", "lifetime")

    def __init__(self, captured: Captured, entry: Entry | None, lifetime: float) -> None:
        self.captured = captured
        self.entry = entry
        self.lifetime = lifetime  # seconds the backend keeps it fresh


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
        view = target.request()
        decision = self.core.cache_plan(ex, view.scheme, view.server)
        if decision is None:
            await target.pass_through(None)
            return
        ex.cache = decision
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
        request = view.headers
        if decision.private:  # the key holds the credentials: judged as a shared request
            judged = [(n, v) for n, v in request if n not in _CREDENTIALS]
        else:
            judged = request
        directives = request_directives(request)
        if ex.method == "HEAD" or directives.only_if_cached:
            await self._stored_only(ex, decision, cache, target, request, judged)
            return
        capture = target.snapshot()
        try:
            if directives.no_cache:  # §5.2.1.4: a stored response would be revalidated
                entry, fill = None, None
            else:
                entry, fill = await self._load(
                    ex, decision, cache, target, capture, request, judged
                )
            await self._serve(ex, decision, cache, target, capture, request, judged, entry, fill)
        except ClientGone:
            return

    async def _stored_only(
        self,
        ex: Exchange,
        decision: CachePlan,
        cache: AsyncCache,
        target: AsyncCacheTarget,
        request: Headers,
        judged: Headers,
    ) -> None:
        """HEAD (from the GET entry; never stored) and ``only-if-cached`` (a stored
        response or ``504``, RFC 9111 §5.2.1.7): the handler never fills the cache."""
        got = stored_of(await cache.get(decision.key))
        now = time.time()
        look = lookup(got[0] if got else None, ex.method, judged, decision.rule.policy, now)
        if got is not None and look.action in USABLE:
            stored, body = got
            decision.result = _stale_or(look.action, _cache_result(ex))
            freshness = look.freshness or freshness_of(stored, decision.rule.policy, now)
            await target.respond(*answer(stored, body, ex.method, request, freshness,
                                         decision.result))  # fmt: skip
            return
        if look.action is Action.GATEWAY_TIMEOUT:
            decision.result = "miss"
            refusal = problem(
                504, "only-if-cached", "Not cached",
                "the request said only-if-cached and no usable stored response exists",
                request_id=ex.request_id,
            )  # fmt: skip
            await target.respond(refusal.status, [*refusal.headers, ("x-cache", "MISS")],
                                 refusal.body)  # fmt: skip
            return
        await target.pass_through("MISS")

    async def _fill(
        self,
        ex: Exchange,
        decision: CachePlan,
        capture: AsyncCapture,
        request: Headers,
        judged: Headers,
    ) -> _Fill:
        """Run the handler with a full request (the client's validators and ``Range``
        stripped) and decide whether and how long its response is stored, judging it by
        ``judged`` (the request without the credentials of a per-user entry)."""
        rule = decision.rule
        sent = time.time()
        captured = await capture(rule.max_body, fill_headers(request))
        received = time.time()
        if captured.truncated:
            reason: str | None = "too-large"
            verdict = None
        else:
            verdict = decide_store("GET", judged, captured.status, captured.headers, rule.policy,
                                   request_time=sent, response_time=received)  # fmt: skip
            reason = verdict.reason
            if reason is None and _uncovered_vary(rule, verdict.stored):
                reason = "vary"
        lifetime = 0.0
        if verdict is not None and reason is None and verdict.lifetime is not None:
            assert verdict.stored is not None
            lifetime = verdict.lifetime.seconds - verdict.stored.initial_age
            if lifetime <= 0:
                reason = "stale"  # revalidated on every use: served from the application
        if reason is not None or verdict is None or verdict.stored is None:
            if reason not in REQUEST_REASONS:
                self.passes.add(decision.key, rule.ttl or PASS_SECONDS)
            _context.record("cache", reason=reason)
            return _Fill(captured, None, 0.0)
        body = bytes(captured.body)
        entry = make_entry(with_etag(verdict.stored, body), body, [*decision.tags, *ex.tags])
        return _Fill(captured, entry, lifetime)

    async def _load(
        self,
        ex: Exchange,
        decision: CachePlan,
        cache: AsyncCache,
        target: AsyncCacheTarget,
        capture: AsyncCapture,
        request: Headers,
        judged: Headers,
    ) -> tuple[Entry | None, _Fill | None]:
        """The entry (shared with other requests, or loaded here) and this request's own
        fill, if it ran one."""
        mine: list[_Fill] = []

        async def loader() -> Entry | None:
            fill = await self._fill(ex, decision, capture, request, judged)
            mine.append(fill)
            return fill.entry  # None: not stored (negative_ttl=0), and not shared

        load = cache.get_or_load(decision.key, loader, ttl=FILL_TTL, tags=decision.tags)
        entry: Entry | None = await target.wait(load)
        fill = mine[0] if mine else None
        if fill is not None and fill.entry is not None and entry is not None:
            # the entry's own lifetime (the fill's write used FILL_TTL), under every tag
            ttl = _backend_ttl(cache, fill.lifetime)
            await _store(cache, decision.key, fill.entry, ttl, [*decision.tags, *ex.tags])
        return entry, fill

    async def _serve(
        self,
        ex: Exchange,
        decision: CachePlan,
        cache: AsyncCache,
        target: AsyncCacheTarget,
        capture: AsyncCapture,
        request: Headers,
        judged: Headers,
        entry: Entry | None,
        fill: _Fill | None,
    ) -> None:
        rule = decision.rule
        got = stored_of(entry)
        now = time.time()
        if got is not None and fill is None and not _usable(got[0], judged, rule, now):
            got = None  # the client's directives, or the origin's, want a new response
        if got is None and fill is None:  # fetched here (not coalesced): a full response
            fill = await target.wait(self._fill(ex, decision, capture, request, judged))
            if fill.entry is not None:
                ttl = _backend_ttl(cache, fill.lifetime)
                await _store(cache, decision.key, fill.entry, ttl, [*decision.tags, *ex.tags])
            got = stored_of(fill.entry)
            count(self.interlock.metrics, rule, "miss", "refresh")
        if got is None:
            decision.result = "miss"
            captured = fill.captured if fill is not None else None
            if captured is not None and not captured.truncated:
                headers = [*captured.headers, ("x-cache", "BYPASS")]
                await target.respond(captured.status, headers, bytes(captured.body))
            else:
                await target.pass_through("BYPASS")
            return
        stored, body = got
        look = lookup(stored, "GET", judged, rule.policy, now)
        freshness = look.freshness or freshness_of(stored, rule.policy, now)
        ran_here = fill is not None
        result = served_result(_cache_result(ex), ran_here)
        decision.result = result if ran_here else _stale_or(look.action, result)
        await target.respond(*answer(stored, body, ex.method, request, freshness,
                                     decision.result))  # fmt: skip


def _usable(stored: StoredResponse, judged: Headers, rule: CacheRule, now: float) -> bool:
    return lookup(stored, "GET", judged, rule.policy, now).action in USABLE


def _uncovered_vary(rule: CacheRule, stored: StoredResponse | None) -> bool:
    """A response varying on a field the rule's key does not cover is not stored: one
    entry per key (variants per ``Vary`` are future work, docs/http-cache.md)."""
    return stored is not None and any(name not in rule.vary for name in stored.vary)


def _backend_ttl(cache: AsyncCache, lifetime: float) -> float:
    """Seconds the backend keeps the entry fresh: the origin's remaining freshness, within
    what tagged entries may live (``tag_retention``)."""
    options = cache.options
    limit = max(1.0, (options.tag_retention - 120.0) / 2 - options.stale_ttl)
    return min(max(lifetime, 0.001), limit)


def _stale_or(action: Action, result: str) -> str:
    if action in (Action.STALE, Action.STALE_WHILE_REVALIDATE) and result in ("hit", "near_hit"):
        return "stale"
    return result


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
