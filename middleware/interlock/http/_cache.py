"""Response-cache decisions for :class:`~interlock.CacheRule` (no I/O).

A request matching a cache rule gets a :class:`CachePlan`: whether the cache may be
used at all (credentials, ``Cache-Control: no-store``), whether a stored entry may be
served (``no-cache`` forces a refresh) and the entry key. The key is a SHA-256 digest over
method, route template, path parameters, the normalised query and the values of the
rule's ``vary`` headers — and, for ``per_user`` rules, a digest of the credentials, so a
request with ``Authorization`` or a cookie can never be served another user's entry.

A response is stored only if its status is allowed, it carries no ``Set-Cookie``, its
``Cache-Control`` allows a shared cache, its ``Vary`` is covered by the rule and its body
fits ``max_body``. Entries keep a strong ETag computed from the body, identical on every
worker, so conditional requests get ``304 Not Modified``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeGuard
from urllib.parse import parse_qsl, urlencode

from interlock.http._rules import CacheRule

ENTRY_VERSION = 1
# Never stored with a response: hop-by-hop (RFC 9110 §7.6.1), per-user, or per-delivery.
_UNSTORED = frozenset(
    (
        "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
        "upgrade", "set-cookie", "date", "age", "x-cache", "x-request-id", "server",
    )
)  # fmt: skip
# Kept in a 304 (RFC 9110 §15.4.5).
_NOT_MODIFIED = frozenset(("cache-control", "content-location", "etag", "expires", "vary"))


@dataclass(slots=True)
class CachePlan:
    """How one request uses the response cache.

    Attributes:
        rule: the matching rule.
        params: path parameters.
        key: the entry key (hex digest), or ``""`` when bypassing.
        serve: a stored entry may be served.
        store: the response may be stored.
        bypass: why the cache is not used at all (``None`` when it is).
        result: what happened (``hit``, ``stale``, ``miss``, ``bypass``, ...), for logs.
    """

    rule: CacheRule
    params: dict[str, str]
    key: str
    serve: bool
    store: bool
    bypass: str | None = None
    result: str = "miss"
    tags: list[str] = field(default_factory=list)


def directives(value: str | None) -> dict[str, str]:
    """Parse a ``Cache-Control`` value into ``{directive: argument}`` (lower-cased names)."""
    out: dict[str, str] = {}
    if not value:
        return out
    for part in value.split(","):
        name, _, arg = part.strip().partition("=")
        if name:
            out[name.strip().lower()] = arg.strip().strip('"')
    return out


def normalise_query(query: str, ignore: Iterable[str] = ()) -> str:
    """The query with parameters decoded, sorted and re-encoded; ``ignore`` dropped.

    ``b=2&a=1`` and ``a=%31&b=2`` give the same string, so they share an entry.
    """
    if not query:
        return ""
    skip = frozenset(ignore)
    pairs = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k not in skip]
    return urlencode(sorted(pairs))


def _digest(parts: Sequence[str]) -> str:
    hasher = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8", "surrogatepass")
        hasher.update(len(data).to_bytes(4, "big"))
        hasher.update(data)
    return hasher.hexdigest()


def cache_key(
    method: str,
    route: str,
    params: Mapping[str, str],
    query: str,
    vary: Mapping[str, str],
    user: str = "",
) -> str:
    """The entry key: a digest of everything that selects a response (length-prefixed)."""
    parts = [method, route]
    for name in sorted(params):
        parts += [name, params[name]]
    parts.append(query)
    for name in sorted(vary):
        parts += [name, " ".join(vary[name].split())]
    parts.append(user)
    return _digest(parts)


def plan(
    rule: CacheRule,
    params: dict[str, str],
    method: str,
    query: str,
    headers: Mapping[str, str],
) -> CachePlan:
    """Decide how a request matching ``rule`` uses the cache."""
    request_cc = directives(headers.get("cache-control"))
    credentials = headers.get("authorization") or headers.get("cookie")
    if "no-store" in request_cc:
        return CachePlan(rule, params, "", False, False, "no-store", "bypass")
    if credentials and not rule.per_user:
        return CachePlan(rule, params, "", False, False, "credentials", "bypass")
    user = ""
    if rule.per_user and credentials:
        user = _digest(["user", headers.get("authorization", ""), headers.get("cookie", "")])
    vary = {name: headers.get(name, "") for name in rule.vary}
    key = cache_key(  # HEAD is answered from the GET entry
        "GET", rule.route.template, params, normalise_query(query, rule.ignore_query), vary, user
    )
    refresh = "no-cache" in request_cc or (
        "cache-control" not in headers and "no-cache" in headers.get("pragma", "").lower()
    )
    return CachePlan(rule, params, key, not refresh, True, None, "miss", rule.tags_for(params))


def storable(rule: CacheRule, status: int, headers: Sequence[tuple[str, str]]) -> str | None:
    """``None`` if the response may be stored, else the reason it may not."""
    if status not in rule.statuses:
        return "status"
    for name, value in headers:
        if name == "set-cookie":
            return "set-cookie"
        if name == "cache-control":
            cc = directives(value)
            for directive in ("no-store", "private", "no-cache"):
                if directive in cc:
                    return directive
        elif name == "vary":
            for header in value.split(","):
                header = header.strip().lower()
                if header == "*":
                    return "vary"
                if header and header not in rule.vary:
                    return "vary"
        elif name == "content-length":
            try:
                if int(value) > rule.max_body:
                    return "too-large"
            except ValueError:
                return "content-length"
    return None


def strong_etag(body: bytes) -> str:
    """A strong validator from the body: the same on every worker and after restarts."""
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def etag_matches(if_none_match: str | None, etag: str | None) -> bool:
    """``If-None-Match`` against ``etag`` with the weak comparison of RFC 9110 §13.1.2."""
    if not if_none_match or not etag:
        return False
    if if_none_match.strip() == "*":
        return True
    wanted = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == wanted for tag in if_none_match.split(","))


def response_etag(headers: Sequence[tuple[str, str]]) -> str | None:
    for name, value in headers:
        if name == "etag":
            return value
    return None


def make_entry(
    status: int, headers: Sequence[tuple[str, str]], body: bytes, tags: Sequence[str]
) -> dict[str, Any]:
    """The stored form of a response (plain types, for any serializer)."""
    kept = [[n, v] for n, v in headers if n not in _UNSTORED]
    etag = response_etag(headers)
    if etag is None:
        etag = strong_etag(body)
        kept.append(["etag", etag])
    return {
        "v": ENTRY_VERSION,
        "status": status,
        "headers": kept,
        "body": body,
        "etag": etag,
        "stored": time.time(),
        "tags": list(tags),
    }


def entry_or_pass(
    rule: CacheRule,
    status: int,
    headers: Sequence[tuple[str, str]],
    body: bytes,
    truncated: bool,
    tags: Sequence[str],
) -> dict[str, Any]:
    """What the loader stores: the entry, or a "pass" marker naming why it may not."""
    reason = "too-large" if truncated else storable(rule, status, headers)
    if reason is not None:
        return {"v": ENTRY_VERSION, "pass": reason}
    return make_entry(status, headers, body, tags)


def valid_entry(entry: object) -> TypeGuard[dict[str, Any]]:
    """True for a servable entry (not a pass marker, not foreign or corrupt data)."""
    return (
        isinstance(entry, dict)
        and entry.get("v") == ENTRY_VERSION
        and "pass" not in entry
        and isinstance(entry.get("status"), int)
        and isinstance(entry.get("body"), bytes)
        and isinstance(entry.get("headers"), list)
    )


class PassList:
    """Keys whose responses may not be stored, remembered for a while in this process.

    Requests for them skip the cache (``bypass``) instead of queueing behind a load whose
    result will not be shared ("hit-for-pass").
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
    if result in ("hit", "near_hit", "coalesced", "negative_hit"):
        return "HIT"
    if result in ("bypass", "error"):  # the cache was not used (degraded, failing)
        return "BYPASS"
    return "MISS"


def answer(
    entry: Mapping[str, Any], method: str, if_none_match: str | None, result: str, now: float
) -> tuple[int, list[tuple[str, str]], bytes]:
    """The response to send from ``entry``: ``304`` when the client's validator matches."""
    headers = served_headers(entry, x_cache(result), now)
    if etag_matches(if_none_match, entry.get("etag")):
        return 304, not_modified(headers), b""
    return entry["status"], headers, b"" if method == "HEAD" else entry["body"]


def served_headers(entry: Mapping[str, Any], x_cache: str, now: float) -> list[tuple[str, str]]:
    """Headers of a response served from ``entry``, with ``Age`` and ``X-Cache``."""
    headers = [(str(n), str(v)) for n, v in entry["headers"]]
    age = max(0, int(now - float(entry["stored"])))
    headers += [("age", str(age)), ("x-cache", x_cache)]
    return headers


def not_modified(headers: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """The headers of a ``304`` answering a request for a response with ``headers``."""
    return [(n, v) for n, v in headers if n in _NOT_MODIFIED or n in ("age", "x-cache")]
