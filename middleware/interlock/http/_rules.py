"""``LockRule`` and ``CacheRule``: what the middleware does for requests matching a template.

Rules are validated once, at construction, with errors that name the bad value and the
fix. Matching is a regex per rule; the first matching rule of each kind wins.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from interlock._keys import validate_name
from interlock.http._routes import RouteTemplate
from interlock.http.caching import CachePolicy

KeyFunction = Callable[[Mapping[str, str]], object]

HTTP_METHODS = frozenset(
    ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")
)
_UNSET: Any = object()


def _methods(value: Iterable[str] | None, default: Iterable[str] | None) -> frozenset[str] | None:
    if value is None:
        return None if default is None else frozenset(default)
    if isinstance(value, str):
        value = [value]
    methods = frozenset(str(m).upper() for m in value)
    unknown = methods - HTTP_METHODS
    if unknown or not methods:
        raise ValueError(
            f"methods={sorted(value)!r} is invalid; use HTTP methods such as "
            "['POST', 'PUT'], or None for every method"
        )
    return methods


def _fields(template: str, what: str, route: RouteTemplate) -> tuple[str, ...]:
    try:
        names = tuple(f for _, f, _, _ in string.Formatter().parse(template) if f is not None)
    except ValueError as exc:
        raise ValueError(f"{what}={template!r} is not a valid format string: {exc}") from None
    missing = [name for name in names if name not in route.params]
    if missing:
        raise ValueError(
            f"{what}={template!r} uses {missing} but {route.template!r} has the parameters "
            f"{list(route.params)}; write placeholders such as '{{name}}' for those"
        )
    return names


def _seconds(name: str, value: object, *, allow_none: bool = False, zero: bool = False) -> Any:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise TypeError(f"{name}={value!r} must be a number of seconds")
    if value < 0 or (value == 0 and not zero) or value == float("inf"):
        raise ValueError(f"{name}={value!r} must be a finite number of seconds > 0")
    return float(value)


class LockRule:
    """Hold a distributed lock while requests matching ``path`` are handled.

    The lock is acquired before the handler runs and released once the response body
    has been sent (also when the client disconnects or the handler raises).

    Args:
        path: route template, e.g. ``"/accounts/{account_id}/withdraw"``.
        name: lock name (a metric label chosen in code), e.g. ``"account"``.
        key: the locked resource: a format string over the path parameters
            (``"{account_id}"``) or a function of the parameters. Empty: one lock for all.
        methods: HTTP methods the rule applies to (default: every method).
        ttl: lease time-to-live in seconds (default: the instance's ``lock_ttl``).
        timeout: seconds to wait for the lock (default: the instance's ``lock_timeout``).
        status: status answered when the wait times out (423 Locked by default).
        retry_after: ``Retry-After`` seconds sent with that answer and with 503.
        fail_open: when the backend is unreachable, run the handler without the lock
            instead of answering 503 (locks fail closed by default).
    """

    def __init__(
        self,
        path: str,
        *,
        name: str,
        key: str | KeyFunction = "",
        methods: Iterable[str] | None = None,
        ttl: float | None = None,
        timeout: float | None = _UNSET,
        status: int = 423,
        retry_after: float = 1.0,
        fail_open: bool = False,
    ) -> None:
        self.route = RouteTemplate.compile(path)
        self.name = validate_name("lock", name)
        if isinstance(key, str):
            _fields(key, "key", self.route)
        elif not callable(key):
            raise TypeError(f"key={key!r} must be a format string or a function of the params")
        self.key = key
        self.methods = _methods(methods, None)
        self.ttl = _seconds("ttl", ttl, allow_none=True)
        if timeout is not _UNSET:
            timeout = _seconds("timeout", timeout, allow_none=True, zero=True)
        self.timeout = timeout
        if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
            raise ValueError(f"status={status!r} must be an HTTP error status, e.g. 423 or 409")
        self.status = status
        self.retry_after = _seconds("retry_after", retry_after, zero=True)
        self.fail_open = bool(fail_open)
        self.options: dict[str, Any] = {}
        if self.ttl is not None:
            self.options["ttl"] = self.ttl
        if self.timeout is not _UNSET:
            self.options["timeout"] = self.timeout

    def applies(self, method: str) -> bool:
        return self.methods is None or method in self.methods

    def resource(self, params: Mapping[str, str]) -> object:
        """The lock key for a request with these path parameters."""
        if isinstance(self.key, str):
            return self.key.format_map(params)
        return self.key(params)

    def __repr__(self) -> str:
        return f"LockRule({self.route.template!r}, name={self.name!r})"


class CacheRule:
    """Serve responses to GET/HEAD requests matching ``path`` from the shared cache, as
    an RFC 9111 shared cache (docs/http-cache.md): the origin's headers decide.

    Args:
        path: route template, e.g. ``"/products/{product_id}"``.
        ttl: freshness lifetime of a response without explicit freshness (no
            ``s-maxage``/``max-age``/``Expires``) that has a validator (``ETag``,
            ``Last-Modified``), or any heuristically cacheable one with ``heuristic``.
            ``None``: such responses are stored only to be revalidated.
        stale_ttl: the rule's stale-while-revalidate window: seconds after expiry during
            which a response is served stale (``X-Cache: STALE``) while one request
            refreshes it — unless the response forbids it (``must-revalidate``,
            ``proxy-revalidate``, ``no-cache``, ``s-maxage``).
        vary: request headers that select different entries (e.g. ``["accept-language"]``).
        tags: tags of every stored response; format strings over the path parameters
            (``"product:{product_id}"``). Handlers add more with ``tools.tag(...)``.
        name: the cache name (a metric label).
        per_user: requests with ``Authorization`` or a cookie get entries of their own
            (keyed by a digest of those credentials) instead of bypassing the cache.
        ignore_query: query parameters left out of the key (e.g. ``utm_source``).
        statuses: response statuses that may be stored; ``None``: RFC 9110 §15.1 (the
            heuristically cacheable ones, or any status with explicit freshness).
        max_body: responses with a larger body are not stored (streamed through).
        trusted_hosts: ``Host`` patterns the app serves (``"example.com"``,
            ``"*.example.com"``, ``".example.com"``, ``"*"``); a request for another
            host bypasses the cache. ``None``: any well-formed host, each with entries of
            its own (the key is the full URI: scheme, host, port, path, query).
        max_ttl: cap on every freshness lifetime, the origin's included.
        heuristic: allow heuristic freshness (RFC 9111 §4.2.2) for responses without
            explicit freshness nor validator.
        override: the old fixed-``ttl`` behaviour: ``ttl`` replaces the origin's
            freshness (``no-store``, ``private``, ``Set-Cookie`` are still obeyed).
    """

    def __init__(
        self,
        path: str,
        *,
        ttl: float | None = None,
        stale_ttl: float = 0.0,
        vary: Iterable[str] = (),
        tags: Iterable[str] = (),
        name: str = "http",
        per_user: bool = False,
        ignore_query: Iterable[str] = (),
        statuses: Iterable[int] | None = None,
        max_body: int = 1 << 20,
        trusted_hosts: Iterable[str] | None = None,
        max_ttl: float | None = None,
        heuristic: bool = False,
        override: bool = False,
    ) -> None:
        self.route = RouteTemplate.compile(path)
        self.ttl = _seconds("ttl", ttl, allow_none=True)
        self.stale_ttl = _seconds("stale_ttl", stale_ttl, zero=True)
        if isinstance(vary, str):
            vary = [vary]
        self.vary = tuple(sorted({str(h).strip().lower() for h in vary}))
        for header in self.vary:
            if not header or header == "*" or not all(c.isalnum() or c in "-_" for c in header):
                raise ValueError(f"vary={list(vary)!r} must name request headers")
            if header in ("authorization", "cookie"):
                raise ValueError(
                    f"vary={list(vary)!r}: use per_user=True instead of varying on {header}"
                )
        if isinstance(tags, str):
            tags = [tags]
        self.tags = tuple(tags)
        for tag in self.tags:
            _fields(tag, "tags", self.route)
        self.name = validate_name("cache", name)
        self.per_user = bool(per_user)
        if isinstance(ignore_query, str):
            ignore_query = [ignore_query]
        self.ignore_query = frozenset(ignore_query)
        self.statuses = None if statuses is None else frozenset(int(s) for s in statuses)
        if isinstance(max_body, bool) or not isinstance(max_body, int) or max_body < 0:
            raise ValueError(f"max_body={max_body!r} must be a number of bytes ≥ 0")
        self.max_body = max_body
        if isinstance(trusted_hosts, str):
            raise TypeError(
                f"trusted_hosts={trusted_hosts!r} must be a list of host patterns, "
                f"e.g. [{trusted_hosts!r}]"
            )
        self.trusted_hosts = None if trusted_hosts is None else tuple(trusted_hosts)
        if self.trusted_hosts is not None and not all(
            isinstance(h, str) and h.strip() for h in self.trusted_hosts
        ):
            raise ValueError(
                f"trusted_hosts={list(self.trusted_hosts)!r} must be host patterns such as "
                "'example.com' or '*.example.com'"
            )
        self.policy = CachePolicy(
            ttl=self.ttl,
            max_ttl=max_ttl,
            heuristic=bool(heuristic),
            stale_while_revalidate=self.stale_ttl,
            statuses=self.statuses,
            override=bool(override),
        )
        self.methods = frozenset(("GET", "HEAD"))

    def applies(self, method: str) -> bool:
        return method in self.methods

    def tags_for(self, params: Mapping[str, str]) -> list[str]:
        return [tag.format_map(params) for tag in self.tags]

    def __repr__(self) -> str:
        ttl = "None" if self.ttl is None else f"{self.ttl:g}"
        return f"CacheRule({self.route.template!r}, ttl={ttl})"
