"""Response-cache decisions for :class:`~interlock.CacheRule` (no I/O).

A request matching a cache rule gets a :class:`CachePlan`: whether the cache may be used
at all (credentials, ``Cache-Control: no-store``, an untrusted or malformed ``Host``) and
the entry key. The key is a SHA-256 digest over the full target URI (RFC 9111 §2:
scheme, authority, normalised path and query, ``interlock.http.caching.target_key``),
the values of the rule's ``vary`` headers and, for ``per_user`` rules, a digest of the
credentials — so tenant A's page is never served for tenant B's host, an https request
never gets the http entry, and a request with ``Authorization`` or a cookie never gets
another user's entry.

What is stored and for how long, and how a stored response answers a request, are the
RFC 9111 rules of ``interlock.http.caching`` (docs/http-cache.md); this module keeps the
stored form (:func:`make_entry`, :func:`stored_of`), the answer built from it
(:func:`answer`) and the process-local "pass" list.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from interlock.http._routes import route_path
from interlock.http._rules import CacheRule
from interlock.http.caching import (
    CachePolicy,
    Freshness,
    StoredResponse,
    age_header,
    effective_authority,
    evaluate_conditional,
    freshness_of,
    invalidation_keys,
    not_modified_headers,
    range_request,
    request_directives,
    response_directives,
    select_range,
    stale_windows,
    target_key,
)

ENTRY_VERSION = 2
# Seconds a stale entry with a validator is kept to be revalidated (RFC 9111 §4.3).
REVALIDATION_GRACE = 300.0
Headers = list[tuple[str, str]]
# decide_store refusals that come from the request, not the origin: no "pass" for them.
REQUEST_REASONS = frozenset(("method", "request-no-store", "authorization"))
# Request fields the plan reads (the rest comes from the full header list when needed).
PLAN_HEADERS = frozenset(("host", "authorization", "cookie", "cache-control", "pragma"))


@dataclass(slots=True)
class CachePlan:
    """How one request uses the response cache.

    Attributes:
        rule: the matching rule.
        params: path parameters.
        key: the entry key (hex digest), or ``""`` when bypassing.
        target: the canonical target URI (``""`` when bypassing).
        bypass: why the cache is not used at all (``None`` when it is).
        result: what happened (``hit``, ``stale``, ``miss``, ``bypass``, ...), for logs.
        tags: the rule's tags for these parameters.
        private: the entry is a ``per_user`` one (keyed by the credentials).
    """

    rule: CacheRule
    params: dict[str, str]
    key: str
    target: str = ""
    bypass: str | None = None
    result: str = "miss"
    tags: list[str] = field(default_factory=list)
    private: bool = False


def _digest(parts: Sequence[str]) -> str:
    hasher = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8", "surrogatepass")
        hasher.update(len(data).to_bytes(4, "big"))
        hasher.update(data)
    return hasher.hexdigest()


def cache_key(target: str, vary: Mapping[str, str], user: str = "") -> str:
    """The entry key: a digest of everything that selects a response (length-prefixed)."""
    parts = ["GET", target]  # HEAD is answered from the GET entry
    for name in sorted(vary):
        parts += [name, " ".join(vary[name].split())]
    parts.append(user)
    return _digest(parts)


def plan(
    rule: CacheRule,
    params: dict[str, str],
    path: str,
    query: str,
    headers: Mapping[str, str],
    scheme: str,
    server: tuple[str, int | None] | None = None,
) -> CachePlan:
    """Decide how a request matching ``rule`` uses the cache."""
    cc = headers.get("cache-control")
    if cc and request_directives([("cache-control", cc)]).no_store:
        return CachePlan(rule, params, "", bypass="no-store", result="bypass")
    credentials = headers.get("authorization") or headers.get("cookie")
    if credentials and not rule.per_user:
        return CachePlan(rule, params, "", bypass="credentials", result="bypass")
    authority = effective_authority(headers.get("host"), scheme, rule.trusted_hosts, server)
    if authority is None:
        return CachePlan(rule, params, "", bypass="host", result="bypass")
    target = target_key(scheme, authority, path, query, rule.ignore_query)
    user = ""
    if rule.per_user and credentials:
        user = _digest(["user", headers.get("authorization", ""), headers.get("cookie", "")])
    vary = {name: headers.get(name, "") for name in rule.vary}
    key = cache_key(target, vary, user)
    tags = rule.tags_for(params)
    if has_variants(rule):  # the URI's entries are not known by key: tag them with it
        tags.append(uri_tag(target))
    return CachePlan(rule, params, key, target, tags=tags, private=bool(user))


def has_variants(rule: CacheRule) -> bool:
    """Whether a URI may have several entries under ``rule`` (its ``vary``, ``per_user``):
    then its entries carry :func:`uri_tag`; else its one key is invalidated directly, and
    a hit stays one plain read."""
    return bool(rule.vary) or rule.per_user


def uri_tag(target: str) -> str:
    """The tag every entry of a target URI carries under a rule with variants, so an
    unsafe request invalidates them all in O(1) (RFC 9111 §4.4)."""
    return "uri:" + hashlib.sha256(target.encode("utf-8", "surrogatepass")).hexdigest()[:32]


class Invalidation:
    """What an unsafe request's answer invalidates in one cache: entry keys and URI tags."""

    __slots__ = ("keys", "tags")

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.tags: list[str] = []


def invalidations(
    rules: Sequence[CacheRule],
    method: str,
    status: int,
    scheme: str,
    authority: str | None,
    path: str,
    root_path: str,
    query: str,
    headers: Sequence[tuple[str, str]],
) -> dict[str, Invalidation]:
    """What to invalidate per cache name after an unsafe request was answered (RFC 9111
    §4.4: the target URI, and same-origin ``Location``/``Content-Location``), for the URIs
    a cache rule covers; empty for a safe method or an error status."""
    if authority is None:
        return {}
    target = target_key(scheme, authority, path, query)
    out: dict[str, Invalidation] = {}
    for uri in invalidation_keys(method, status, target, headers):
        parts = urlsplit(uri)
        rpath = route_path(parts.path, root_path)
        for rule in rules:
            if rule.route.match(rpath) is not None:
                uri_key = target_key(parts.scheme, parts.netloc, parts.path, parts.query,
                                     rule.ignore_query)  # fmt: skip
                found = out.setdefault(rule.name, Invalidation())
                if has_variants(rule):
                    found.tags.append(uri_tag(uri_key))
                else:
                    found.keys.append(cache_key(uri_key, {}))
                break
    return out


def strong_etag(body: bytes) -> str:
    """A strong validator from the body: the same on every worker and after restarts."""
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def make_entry(stored: StoredResponse, body: bytes, tags: Sequence[str]) -> dict[str, Any]:
    """The stored form of a response (plain types, for any serializer); a strong ETag
    from the body is added when the origin sent none, so every worker sends the same."""
    headers = [[n, v] for n, v in stored.headers]
    if not any(n == "etag" for n, _ in stored.headers):
        headers.append(["etag", strong_etag(body)])
    return {
        "v": ENTRY_VERSION,
        "status": stored.status,
        "headers": headers,
        "body": body,
        "times": [stored.request_time, stored.response_time, stored.initial_age],
        "vary": list(stored.vary),
        "secondary": [[n, v] for n, v in stored.secondary],
        "auth": stored.shared_authorized,
        "tags": list(tags),
    }


def stored_of(entry: object) -> tuple[StoredResponse, bytes] | None:
    """The stored response and body of an entry; ``None`` for anything else (an entry of
    another version, foreign or corrupt data)."""
    if not isinstance(entry, dict) or entry.get("v") != ENTRY_VERSION:
        return None
    try:
        body = entry["body"]
        request_time, response_time, initial_age = (float(t) for t in entry["times"])
        stored = StoredResponse(
            status=int(entry["status"]),
            headers=tuple((str(n), str(v)) for n, v in entry["headers"]),
            request_time=request_time,
            response_time=response_time,
            initial_age=initial_age,
            vary=tuple(str(n) for n in entry["vary"]),
            secondary=tuple((str(n), None if v is None else str(v)) for n, v in entry["secondary"]),
            shared_authorized=bool(entry["auth"]),
        )
    except (KeyError, TypeError, ValueError):
        return None
    if not isinstance(body, bytes):
        return None
    return stored, body


def with_etag(stored: StoredResponse, body: bytes) -> StoredResponse:
    """``stored`` with the ETag :func:`make_entry` gives it."""
    if any(n == "etag" for n, _ in stored.headers):
        return stored
    return dataclasses.replace(stored, headers=(*stored.headers, ("etag", strong_etag(body))))


def keep_for(stored: StoredResponse, policy: CachePolicy, now: float) -> float:
    """Seconds the backend keeps ``stored``: its remaining freshness, its longest stale
    window, and :data:`REVALIDATION_GRACE` when it has a validator (always, once stored:
    :func:`make_entry` gives it an ETag)."""
    freshness = freshness_of(stored, policy, now)
    swr, sie = stale_windows(response_directives(stored.headers, policy.targets), policy)
    return max(0.0, freshness.remaining) + max(swr, sie) + REVALIDATION_GRACE


class PassList:
    """Keys whose responses may not be stored, remembered for a while in this process.

    Requests for them skip the cache (``bypass``) instead of queueing behind a load whose
    result will not be shared ("hit-for-pass"). Only the origin's response puts a key
    here, never a request's own fields.
    """

    def __init__(self, limit: int = 10_000) -> None:
        self._until: dict[str, float] = {}
        self._limit = limit

    def add(self, key: str, seconds: float) -> None:
        if len(self._until) >= self._limit:
            self._until.clear()
        self._until[key] = time.monotonic() + seconds

    def __contains__(self, key: str) -> bool:
        until = self._until.get(key)
        if until is None:
            return False
        if until < time.monotonic():
            self._until.pop(key, None)
            return False
        return True

    def discard(self, key: str) -> None:
        self._until.pop(key, None)


def x_cache(result: str) -> str:
    """The ``X-Cache`` value for a cache result."""
    if result == "stale":
        return "STALE"
    if result == "revalidated":  # a 304 from the origin: the stored response, freshened
        return "REVALIDATED"
    if result in ("hit", "near_hit", "coalesced", "negative_hit"):
        return "HIT"
    if result in ("bypass", "error"):  # the cache was not used (degraded, failing)
        return "BYPASS"
    return "MISS"


def answer(
    stored: StoredResponse,
    body: bytes,
    method: str,
    request: Headers,
    freshness: Freshness,
    result: str,
) -> tuple[int, Headers, bytes]:
    """The response to ``request`` from ``stored``: ``304`` when the client's validators
    say its copy is current (RFC 9110 §13.2.2), ``206``/``416`` for a ``Range`` on a full
    ``200`` (RFC 9110 §14), else the stored response; with ``Age`` and ``X-Cache``."""
    extra = [("age", age_header(freshness.age)), ("x-cache", x_cache(result))]
    if evaluate_conditional(stored, method, request) == 304:
        return 304, [*not_modified_headers(stored), *extra], b""
    headers = [*stored.headers, *extra]
    if method == "HEAD":
        return stored.status, headers, b""
    ranges, if_range = range_request(request)
    if not ranges:
        return stored.status, headers, body
    selected = select_range(stored, method, ranges, if_range, len(body))
    if selected.status == 200:
        return stored.status, headers, body
    part = body[selected.start : selected.stop]
    headers = [(n, v) for n, v in headers if n != "content-length"]
    headers += [("content-range", selected.content_range or ""), ("content-length", str(len(part)))]
    return selected.status, headers, part
