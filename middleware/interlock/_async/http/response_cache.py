"""The response cache of both drivers, on ``interlock.cache(rule.name)``.

The HTTP decisions are RFC 9111's (``interlock.http.caching``: what is stored and for how
long, whether a stored response may answer a request, revalidation, its ``Age``, the
client's conditional and ``Range`` requests) and the plan of ``interlock.http._cache``
(the key: the full target URI); storage, single flight of fills across requests and
processes and tag invalidation are the cache's. The driver's responder is the
:class:`AsyncCacheTarget`: it runs the application to the client, or against a snapshot of
the request (with the request fields the cache chooses) to capture the response without
touching the client (so the cache may also run it in the background to revalidate a stale
entry), and writes a response.

A fill is always a full request: the client's validators and ``Range`` are stripped
(``fill_headers``) and answered from the stored response, so no client can make an
unstorable 304/206 decide for others. A stale entry is revalidated with a conditional
request (``revalidation_headers``; a 304 is merged with ``freshen``), once per key in the
process at a time, in the background within a stale-while-revalidate window, and served
stale instead of an error within a stale-if-error one. A response the origin does not let
us store is kept as a "pass" marker: later requests for the key go straight to the
application instead of queueing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence  # noqa: F401, RUF100 (sync twin: unused)
from typing import Any, NamedTuple, Protocol, TypeVar

from interlock import _context
from interlock._async.cache.cache import AsyncCache
from interlock._async.client import AsyncInterlock
from interlock._concurrency import AsyncFlight
from interlock.cache import CacheKwargs
from interlock.errors import BackendError
from interlock.http._cache import (
    REQUEST_REASONS,
    CachePlan,
    PassList,
    answer,
    invalidations,
    keep_for,
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
    Freshness,
    StoredResponse,
    decide_store,
    effective_authority,
    fill_headers,
    freshen,
    freshness_of,
    lookup,
    request_directives,
    revalidation_headers,
    stale_if_error,
)
from interlock.http.types import Headers
from interlock.metrics import Metrics

T = TypeVar("T")
Entry = dict[str, Any]  # the stored response (interlock.http._cache.make_entry)
USABLE = frozenset((Action.FRESH, Action.STALE, Action.STALE_WHILE_REVALIDATE))
FILL_TTL = 1.0  # the fill's first write; the entry is written again with its own lifetime
PASS_SECONDS = 30.0  # a key whose response may not be stored skips the cache this long
_CREDENTIALS = frozenset(("authorization", "cookie"))
logger = logging.getLogger("interlock.cache")
HTTP_CACHE_SPAN = "interlock.http.cache"  # docs/tracing.md


class Captured:
    """A response the application gave to a snapshot of the request."""

    __slots__ = ("body", "headers", "status", "truncated")

    def __init__(self) -> None:
        self.status = 0
        self.headers: Headers = []  # names in lower case
        self.body = bytearray()
        self.truncated = False  # it outgrew the rule's max_body


AsyncCapture = Callable[[int, Headers], Awaitable[Captured]]
AsyncOnStart = Callable[[int, Headers], Awaitable[None]]  # the status and headers, before sent
SAFE_METHODS = frozenset(("GET", "HEAD", "OPTIONS", "TRACE"))


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

    async def pass_through(self, x_cache: str | None, on_start: AsyncOnStart | None = None) -> None:
        """Run the application to the client, with ``X-Cache: x_cache`` if given; call
        ``on_start(status, headers)`` before its response starts, if given."""

    def snapshot(self) -> AsyncCapture:
        """Capture the request now; the function that runs the application on that copy
        with the given request fields instead of the client's (any number of times, also
        after the request ended) and returns its response, keeping at most ``max_body``
        bytes of body."""

    async def respond(self, status: int, headers: Headers, body: bytes) -> None:
        """Write a whole response to the client."""

    async def wait(self, step: Awaitable[T]) -> T:
        """``step``'s result, unless the client leaves first (:class:`ClientGone`)."""


class _Outcome:
    """What a run of the handler for the cache gave: the stored response to answer from
    (``stored``/``body``; ``entry`` when it is to be written), or only ``captured`` (not
    storable: sent as it is). ``result`` is the log and ``X-Cache`` word."""

    __slots__ = ("body", "captured", "entry", "result", "stored")

    def __init__(
        self,
        result: str,
        stored: StoredResponse | None = None,
        body: bytes = b"",
        entry: Entry | None = None,
        captured: Captured | None = None,
    ) -> None:
        self.result = result
        self.stored = stored
        self.body = body
        self.entry = entry
        self.captured = captured


class AsyncResponseCache:
    """Serves :class:`~interlock.CacheRule` requests from ``interlock.cache(rule.name)``."""

    def __init__(self, interlock: AsyncInterlock, core: HttpCore) -> None:
        self.interlock = interlock
        self.core = core
        self.options = cache_options(core.cache_rules)
        self.passes = PassList()
        self.revalidations: dict[str, AsyncFlight] = {}  # per key, in this process

    async def handle(self, ex: Exchange, target: AsyncCacheTarget) -> None:
        """Serve the request from the cache (or the application), unless its client leaves
        while the response is loaded: then nothing is sent (the load goes on for others)."""
        view = target.request()
        decision = self.core.cache_plan(ex, view.scheme, view.server)
        if decision is None:
            if ex.method in SAFE_METHODS:
                await target.pass_through(None)
            else:
                await target.pass_through(None, self._invalidator(ex, view))
            return
        ex.cache = decision
        with self.interlock.tracer.span(HTTP_CACHE_SPAN) as span:
            try:
                await self._handle(ex, decision, target, view)
            finally:
                if span.recording:
                    span.update(_span_attributes(ex, decision))

    async def _handle(
        self, ex: Exchange, decision: CachePlan, target: AsyncCacheTarget, view: RequestView
    ) -> None:
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
        one = _CacheRequest(self, ex, decision, cache, target, request, judged)
        try:
            cc = ex.headers.get("cache-control") or ""
            if ex.method == "HEAD" or (
                "only-if-cached" in cc.lower() and request_directives(request).only_if_cached
            ):
                await one.stored_only()
            else:
                await one.run()
        except ClientGone:
            return

    def _invalidator(self, ex: Exchange, view: RequestView) -> AsyncOnStart:
        """What invalidates the stored responses an unsafe request's answer makes stale
        (RFC 9111 §4.4), in every process: one pipelined command per cache name."""

        async def invalidate(status: int, headers: Headers) -> None:
            host = next((v for n, v in view.headers if n == "host"), None)
            authority = effective_authority(host, view.scheme, None, view.server)
            root = ex.path[: len(ex.path) - len(ex.rpath)] if ex.path.endswith(ex.rpath) else ""
            plan = invalidations(self.core.cache_rules, ex.method, status, view.scheme,
                                 authority, ex.path, root, ex.query, headers)  # fmt: skip
            for name, stale in plan.items():
                for key in stale.keys:
                    self.passes.discard(key)  # the new state may be storable
                cache = self.interlock.cache(name, **self.options[name])
                try:
                    await cache.invalidate(keys=stale.keys, tags=stale.tags)
                except BackendError as exc:
                    logger.warning("response cache %r: not invalidated: %s", name, exc)
                _context.record("cache", name=name, invalidated=len(stale.keys) + len(stale.tags))

        return invalidate

    async def shared(self, key: str, work: Callable[[], Awaitable[_Outcome]]) -> _Outcome:
        """``work()``'s outcome, run once per key at a time in this process."""
        flight = self.revalidations.get(key)
        if flight is None:
            flight = self.revalidations[key] = AsyncFlight()
            flight.start(lambda: self._settled(key, work))
        outcome: _Outcome = await flight.wait()
        return outcome

    def background(self, key: str, work: Callable[[], Awaitable[_Outcome]]) -> None:
        """Run ``work()`` in the background unless a revalidation of ``key`` runs here."""
        if key in self.revalidations:
            return
        flight = self.revalidations[key] = AsyncFlight()
        flight.start(lambda: self._quiet(key, work), background=True)

    async def _settled(self, key: str, work: Callable[[], Awaitable[_Outcome]]) -> _Outcome:
        try:
            return await work()
        finally:
            self.revalidations.pop(key, None)

    async def _quiet(self, key: str, work: Callable[[], Awaitable[_Outcome]]) -> None:
        try:
            await self._settled(key, work)
        except Exception as exc:  # the client already has the stale response
            logger.warning("response cache: background revalidation failed: %s", exc)


class _CacheRequest:
    """One GET/HEAD request through the response cache (per-request state)."""

    def __init__(
        self,
        owner: AsyncResponseCache,
        ex: Exchange,
        decision: CachePlan,
        cache: AsyncCache,
        target: AsyncCacheTarget,
        request: Headers,
        judged: Headers,
    ) -> None:
        self.owner = owner
        self.ex = ex
        self.decision = decision
        self.rule = decision.rule
        self.cache = cache
        self.target = target
        self.request = request  # what the client sent
        self.judged = judged  # what the decisions read (no credentials of a per-user entry)
        self.capture = target.snapshot()

    async def stored_only(self) -> None:
        """HEAD (from the GET entry; never stored) and ``only-if-cached`` (a stored
        response or ``504``, RFC 9111 §5.2.1.7): the handler never fills the cache."""
        ex, policy = self.ex, self.rule.policy
        got = stored_of(await self.cache.get(self.decision.key))
        now = time.time()
        look = lookup(got[0] if got else None, ex.method, self.judged, policy, now)
        if got is not None and look.action in USABLE:
            stored, body = got
            result = _stale_or(look.action, _cache_result(ex))
            await self.send(_Outcome(result, stored, body))
            return
        if look.action is Action.GATEWAY_TIMEOUT:
            self.decision.result = "miss"
            refusal = problem(
                504, "only-if-cached", "Not cached",
                "the request said only-if-cached and no usable stored response exists",
                request_id=ex.request_id,
            )  # fmt: skip
            headers = [*refusal.headers, ("x-cache", "MISS")]
            await self.target.respond(refusal.status, headers, refusal.body)
            return
        await self.target.pass_through("MISS")

    async def run(self) -> None:
        """A GET: the stored response if it may answer, else a fill or a revalidation."""
        key = self.decision.key
        mine: list[_Outcome] = []

        async def loader() -> Entry | None:
            outcome = await self.fill()
            mine.append(outcome)
            return outcome.entry  # None: not stored (negative_ttl=0), and not shared

        load = self.cache.get_or_load(key, loader, ttl=FILL_TTL, tags=self.decision.tags)
        entry: Entry | None = await self.target.wait(load)
        if mine:  # this request ran the handler
            recorded = _cache_result(self.ex)
            if recorded not in ("bypass", "error"):
                await self.store(mine[0])  # with its own lifetime, under every tag
            await self.send(mine[0], recorded)
            return
        got = stored_of(entry)
        if got is None:  # a shared load that stored nothing, or an entry of another version
            await self.send(await self.target.wait(self.fill(store=True)))
            return
        stored, body = got
        tags = [str(t) for t in entry.get("tags", ())] if isinstance(entry, dict) else []
        look = lookup(stored, "GET", self.judged, self.rule.policy, time.time())
        if look.action in (Action.FRESH, Action.STALE):
            result = _stale_or(look.action, _cache_result(self.ex))
            await self.send(_Outcome(result, stored, body), freshness=look.freshness)
        elif look.action is Action.STALE_WHILE_REVALIDATE:
            self.owner.background(key, lambda: self.revalidate(stored, body, tags))
            await self.send(_Outcome("stale", stored, body))
        elif look.action is Action.REVALIDATE:
            work = self.owner.shared(key, lambda: self.revalidate(stored, body, tags))
            await self.send(await self.target.wait(work))
        else:  # the stored response cannot answer this request (If-Match, ...): the origin
            await self.target.pass_through("MISS")

    async def fill(self, *, store: bool = False) -> _Outcome:
        """Run the handler with a full request (the client's validators and ``Range``
        stripped) and decide whether and how long its response is stored."""
        sent = time.time()
        captured = await self.capture(self.rule.max_body, fill_headers(self.request))
        outcome = self.judge(captured, sent, time.time())
        if store:
            await self.store(outcome)
        return outcome

    async def revalidate(self, stored: StoredResponse, body: bytes, tags: list[str]) -> _Outcome:
        """Validate ``stored`` with a conditional request (RFC 9111 §4.3.1): a 304 that
        names it freshens it (§4.3.4); an error may be answered with it (RFC 5861 §4)."""
        policy = self.rule.policy
        sent = time.time()
        try:
            captured = await self.capture(
                self.rule.max_body, revalidation_headers(self.request, stored)
            )
        except Exception:
            if stale_if_error(stored, self.judged, policy, time.time(), None):
                return _Outcome("stale", stored, body)
            raise
        received = time.time()
        if captured.status == 304:
            fresh = freshen(stored, captured.headers, policy, request_time=sent,
                            response_time=received)  # fmt: skip
            if fresh is None:  # it names another representation: fetch the full one
                return await self.fill(store=True)
            tags = sorted({*tags, *self.decision.tags, *self.ex.tags})
            outcome = _Outcome("revalidated", fresh, body, make_entry(fresh, body, tags))
            await self.store(outcome)
            return outcome
        if stale_if_error(stored, self.judged, policy, received, captured.status):
            return _Outcome("stale", stored, body)
        outcome = self.judge(captured, sent, received)
        await self.store(outcome)
        return outcome

    def judge(self, captured: Captured, sent: float, received: float) -> _Outcome:
        """Whether and how a response the handler gave is stored (RFC 9111 §3)."""
        rule = self.rule
        verdict = None
        if captured.truncated:
            reason: str | None = "too-large"
        else:
            verdict = decide_store(
                "GET", self.judged, captured.status, captured.headers, rule.policy,
                request_time=sent, response_time=received,
            )  # fmt: skip
            reason = verdict.reason
            if verdict.stored is not None and _uncovered_vary(rule, verdict.stored):
                reason = "vary"
        if reason is not None or verdict is None or verdict.stored is None:
            if reason not in REQUEST_REASONS:
                self.owner.passes.add(self.decision.key, rule.ttl or PASS_SECONDS)
            _context.record("cache", reason=reason)
            return _Outcome("miss", captured=captured)
        body = bytes(captured.body)
        stored = with_etag(verdict.stored, body)
        entry = make_entry(stored, body, [*self.decision.tags, *self.ex.tags])
        return _Outcome("miss", stored, body, entry, captured)

    async def store(self, outcome: _Outcome) -> None:
        """Write the outcome's entry for as long as it is useful (fail open)."""
        if outcome.entry is None or outcome.stored is None:
            return
        keep = keep_for(outcome.stored, self.rule.policy, time.time())
        tags = [str(t) for t in outcome.entry["tags"]]
        await _store(self.cache, self.decision.key, outcome.entry, _backend_ttl(self.cache, keep),
                     tags)  # fmt: skip

    async def send(
        self, outcome: _Outcome, recorded: str | None = None, freshness: Freshness | None = None
    ) -> None:
        """Answer the client from the outcome: from the stored response (its conditional
        and ``Range`` answered here), else the captured response as it is."""
        ex, decision = self.ex, self.decision
        stored = outcome.stored
        if stored is None:
            decision.result = "miss"
            captured = outcome.captured
            if captured is not None and not captured.truncated:
                headers = [*captured.headers, ("x-cache", "BYPASS")]
                await self.target.respond(captured.status, headers, bytes(captured.body))
            else:
                await self.target.pass_through("BYPASS")
            return
        result = outcome.result
        if recorded is not None:  # this request ran the handler
            result = served_result(recorded, True)
        decision.result = result
        _context.record("cache", result=result)
        if freshness is None:
            freshness = freshness_of(stored, self.rule.policy, time.time())
        await self.target.respond(*answer(stored, outcome.body, ex.method, self.request,
                                          freshness, result))  # fmt: skip


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
    windows: dict[str, float] = {}
    for rule in rules:
        # stale serving is the HTTP layer's (RFC 9111 §4.2.4), never the cache's own
        options[rule.name] = {"stale_ttl": 0.0, "negative_ttl": 0.0}
        if windows.setdefault(rule.name, rule.stale_ttl) != rule.stale_ttl:
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
