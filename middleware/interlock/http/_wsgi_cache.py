"""The response cache of the WSGI middleware, on ``Interlock.cache``.

The twin of ``interlock.http._asgi_cache`` (see there): the loader calls the application
with a snapshot of the environ, reads and closes its body, and returns the entry or a
"pass" marker; the cache stores it, shares one load per key, refreshes stale entries.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

from interlock import _context
from interlock.errors import BackendError
from interlock.http._asgi_cache import cache_options, count, served_result
from interlock.http._cache import PassList, answer, entry_or_pass, valid_entry
from interlock.http._core import Exchange, HttpCore

StartResponse = Callable[..., Any]
App = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def status_line(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Unknown"


class _Captured:
    __slots__ = ("body", "headers", "status", "truncated")

    def __init__(self) -> None:
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self.body = bytearray()
        self.truncated = False


class WsgiResponseCache:
    """Serves :class:`~interlock.CacheRule` requests from ``interlock.cache(rule.name)``."""

    def __init__(self, interlock: Any, core: HttpCore) -> None:
        self.interlock = interlock
        self.core = core
        self.options = cache_options(core.cache_rules)
        self.passes = PassList()

    def handle(
        self, ex: Exchange, environ: dict[str, Any], start_response: StartResponse, app: App
    ) -> Iterable[bytes]:
        decision = self.core.cache_plan(ex)
        if decision is None:
            return app(environ, start_response)
        ex.cache = decision
        rule = decision.rule
        if decision.bypass is not None:
            count(self.interlock, rule, "bypass", decision.bypass)
            return app(environ, _tagging(start_response, "BYPASS"))
        if decision.key in self.passes:
            count(self.interlock, rule, "bypass", "uncacheable")
            return app(environ, _tagging(start_response, "BYPASS"))
        cache = self.interlock.cache(rule.name, **self.options[rule.name])
        if ex.method == "HEAD":  # from the GET entry if there is one; never stored
            entry = cache.get(decision.key) if decision.serve else None
            if not valid_entry(entry):
                return app(environ, _tagging(start_response, "MISS"))
            section = ex.context.events.get("cache") or {}
            decision.result = str(section.get("result", "hit"))
            inm = ex.headers.get("if-none-match")
            status, headers, body = answer(entry, "HEAD", inm, decision.result, time.time())
            start_response(status_line(status), headers)
            return [body]
        snapshot = dict(environ)
        mine: list[_Captured] = []

        def loader() -> dict[str, Any] | None:
            captured = _capture(snapshot, app, rule.max_body)
            mine.append(captured)
            entry = entry_or_pass(rule, captured.status, captured.headers, bytes(captured.body),
                                  captured.truncated, [*decision.tags, *ex.tags])  # fmt: skip
            if valid_entry(entry):
                return entry
            self.passes.add(decision.key, rule.ttl)
            _context.record("cache", reason=entry["pass"])
            return None  # not stored (negative_ttl=0), and not shared

        if decision.serve:
            entry = cache.get_or_load(decision.key, loader, ttl=rule.ttl, tags=decision.tags)
        else:
            entry = loader()
            count(self.interlock, rule, "miss", "no-cache")
            if entry is not None:
                _store(cache, decision.key, entry, rule.ttl, [*decision.tags, *ex.tags])
        captured = mine[0] if mine else None
        if not valid_entry(entry):
            decision.result = "miss"
            if captured is not None and not captured.truncated:
                start_response(
                    status_line(captured.status), [*captured.headers, ("x-cache", "BYPASS")]
                )
                return [bytes(captured.body)]
            return app(environ, _tagging(start_response, "BYPASS"))
        if captured is not None and decision.serve and set(ex.tags) - set(decision.tags):
            _store(cache, decision.key, entry, rule.ttl, [*decision.tags, *ex.tags])
        section = ex.context.events.get("cache") or {}
        recorded = str(section.get("result", "hit"))
        decision.result = served_result(recorded, captured is not None)
        status, headers, body = answer(
            entry, ex.method, ex.headers.get("if-none-match"), decision.result, time.time()
        )
        start_response(status_line(status), headers)
        return [body]


def _capture(snapshot: dict[str, Any], app: App, max_body: int) -> _Captured:
    captured = _Captured()
    child = dict(snapshot)
    child["wsgi.input"] = io.BytesIO(b"")

    def start_response(status: str, headers: list[tuple[str, str]], *exc: Any) -> Any:
        captured.status = int(status[:3])
        captured.headers = [(n.lower(), v) for n, v in headers]
        return captured.body.extend

    result = app(child, start_response)
    try:
        for chunk in result:
            captured.body += chunk
            if len(captured.body) > max_body:
                captured.truncated = True
                break
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return captured


def _tagging(start_response: StartResponse, value: str) -> StartResponse:
    def tagged(status: str, headers: list[tuple[str, str]], *exc: Any) -> Any:
        return start_response(status, [*headers, ("X-Cache", value)], *exc)

    return tagged


def _store(cache: Any, key: str, entry: Any, ttl: float, tags: list[str]) -> None:
    """Write ``entry`` again, best effort: the response is already decided (fail open).

    A write refused while the cache is degraded (or failing) must not turn the handler's
    good response into a 500; the cause goes to the log instead.
    """
    try:
        cache.set(key, entry, ttl=ttl, tags=tags)
    except BackendError as exc:
        logging.getLogger("interlock.cache").warning(
            "response cache %r: entry not stored: %s", cache.name, exc
        )
