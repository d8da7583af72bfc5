"""The response cache of the ASGI middleware, on ``AsyncInterlock.cache``.

Decisions (cacheability, key, ETag, headers) are the pure functions of
``interlock.http._cache``; storage, single flight across requests and processes,
stale-while-revalidate and tag invalidation are the cache's. The loader given to
``get_or_load`` runs the application against a snapshot of the request and captures the
response without touching the client, so the cache may also run it in the background to
refresh a stale entry. A response that may not be stored is kept as a "pass" marker:
later requests for the key go straight to the application instead of queueing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

from interlock import _context
from interlock.errors import BackendError
from interlock.http._asgi_client import ClientGone, ClientWatch
from interlock.http._cache import PassList, answer, entry_or_pass, valid_entry
from interlock.http._core import Exchange, HttpCore
from interlock.http._rules import CacheRule

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


class _TooLarge(Exception):
    """Raised into the application's ``send`` when a body outgrows ``max_body``."""


class Captured:
    """A response captured by the loader."""

    __slots__ = ("body", "headers", "status", "truncated")

    def __init__(self) -> None:
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self.body = bytearray()
        self.truncated = False


class AsgiResponseCache:
    """Serves :class:`~interlock.CacheRule` requests from ``interlock.cache(rule.name)``."""

    def __init__(self, interlock: Any, core: HttpCore) -> None:
        self.interlock = interlock
        self.core = core
        self.options = cache_options(core.cache_rules)
        self.passes = PassList()

    async def handle(
        self, ex: Exchange, scope: Scope, client: ClientWatch, send: Send, app: App
    ) -> None:
        """Serve the request from the cache (or the app), unless its client leaves while
        the response is loaded: then nothing is sent (the load goes on for the others)."""
        receive = client.receive
        decision = self.core.cache_plan(ex)
        if decision is None:
            await app(scope, receive, send)
            return
        ex.cache = decision
        rule = decision.rule
        if decision.bypass is not None:
            count(self.interlock, rule, "bypass", decision.bypass)
            await app(scope, receive, _tagging(send, "BYPASS"))
            return
        if decision.key in self.passes:
            count(self.interlock, rule, "bypass", "uncacheable")
            await app(scope, receive, _tagging(send, "BYPASS"))
            return
        cache = self.interlock.cache(rule.name, **self.options[rule.name])
        if ex.method == "HEAD":  # from the GET entry if there is one; never stored
            entry = await cache.get(decision.key) if decision.serve else None
            if not valid_entry(entry):
                await app(scope, receive, _tagging(send, "MISS"))
                return
            decision.result = _cache_result(ex)
            await _send(send, *answer(entry, "HEAD", ex.headers.get("if-none-match"),
                                      decision.result, time.time()))  # fmt: skip
            return
        snapshot = dict(scope)
        mine: list[Captured] = []

        async def loader() -> dict[str, Any] | None:
            captured = await self._capture(snapshot, app, rule.max_body)
            mine.append(captured)
            body = bytes(captured.body)
            tags = [*decision.tags, *ex.tags]
            entry = entry_or_pass(rule, captured.status, captured.headers, body,
                                  captured.truncated, tags)  # fmt: skip
            if valid_entry(entry):
                return entry
            self.passes.add(decision.key, rule.ttl)
            _context.record("cache", reason=entry["pass"])
            return None  # not stored (negative_ttl=0), and not shared

        try:
            if decision.serve:
                load = cache.get_or_load(decision.key, loader, ttl=rule.ttl, tags=decision.tags)
                entry = await client.wait(load)
            else:  # Cache-Control: no-cache: refresh the entry from the application
                entry = await client.wait(loader())
        except ClientGone:
            return
        if not decision.serve:
            count(self.interlock, rule, "miss", "no-cache")
            if entry is not None:
                await _store(cache, decision.key, entry, rule.ttl, [*decision.tags, *ex.tags])
        captured = mine[0] if mine else None
        if not valid_entry(entry):
            decision.result = "miss"
            if captured is not None and not captured.truncated:
                headers = [*captured.headers, ("x-cache", "BYPASS")]
                await _send(send, captured.status, headers, bytes(captured.body))
            else:
                await app(scope, receive, _tagging(send, "BYPASS"))
            return
        if captured is not None and decision.serve and set(ex.tags) - set(decision.tags):
            # tags the handler added: write the entry again under all of them
            await _store(cache, decision.key, entry, rule.ttl, [*decision.tags, *ex.tags])
        decision.result = served_result(_cache_result(ex), captured is not None)
        status, headers, body = answer(
            entry, ex.method, ex.headers.get("if-none-match"), decision.result, time.time()
        )
        await _send(send, status, headers, body)

    async def _capture(self, snapshot: Scope, app: App, max_body: int) -> Captured:
        captured = Captured()
        child = dict(snapshot)
        done = asyncio.Event()
        sent_request = False

        async def receive() -> Message:
            nonlocal sent_request
            if not sent_request:
                sent_request = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await done.wait()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            kind = message["type"]
            if kind == "http.response.start":
                captured.status = int(message["status"])
                captured.headers = [
                    (bytes(n).decode("latin-1").lower(), bytes(v).decode("latin-1"))
                    for n, v in message.get("headers", ())
                ]
            elif kind == "http.response.body":
                captured.body += message.get("body", b"")
                if len(captured.body) > max_body:
                    raise _TooLarge
                if not message.get("more_body", False):
                    done.set()

        try:
            await app(child, receive, send)
        except _TooLarge:
            captured.truncated = True
        finally:
            done.set()
        return captured


def cache_options(rules: Sequence[CacheRule]) -> dict[str, dict[str, Any]]:
    """The cache options per cache name; rules sharing a name must agree on them.

    Raises:
        ValueError: two rules share a cache name but not ``stale_ttl``.
    """
    options: dict[str, dict[str, Any]] = {}
    for rule in rules:
        wanted = {"stale_ttl": rule.stale_ttl, "negative_ttl": 0.0}
        if options.setdefault(rule.name, wanted) != wanted:
            raise ValueError(
                f"cache rules sharing the cache name {rule.name!r} have different stale_ttl; "
                "give them different name= values"
            )
    return options


def count(interlock: Any, rule: CacheRule, result: str, reason: str | None = None) -> None:
    """Count and record an outcome decided by the middleware rather than by the cache."""
    metrics = interlock.metrics
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


def _tagging(send: Send, value: str) -> Send:
    header = (b"x-cache", value.encode())

    async def tagged(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), header]}
        await send(message)

    return tagged


async def _send(send: Send, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
    raw = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in headers]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def _store(cache: Any, key: str, entry: Any, ttl: float, tags: list[str]) -> None:
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
