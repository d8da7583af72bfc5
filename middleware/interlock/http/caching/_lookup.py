"""Whether a stored response may answer a request (RFC 9111 §4, §4.2.4, §5.2.1; RFC 5861).

:func:`lookup` returns a :class:`Lookup` whose ``action`` tells the driver what to do:

=========================  ==========================================================
``fresh``                  serve the stored response
``stale``                  serve it stale: the client allowed it (``max-stale``)
``stale-while-revalidate`` serve it stale and revalidate it in the background
``revalidate``             send a conditional request to the handler first (§4.3.1)
``miss``                   no usable stored response: fetch a full response
``gateway-timeout``        ``only-if-cached`` and nothing usable: answer ``504``
=========================  ==========================================================

After a failed revalidation, :func:`stale_if_error` says whether the stale response may
be served instead of the error.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from interlock.http.caching._directives import (
    RequestDirectives,
    ResponseDirectives,
    request_directives,
    response_directives,
)
from interlock.http.caching._freshness import (
    Freshness,
    age_header,
    current_age,
    freshness_lifetime,
)
from interlock.http.caching._policy import CachePolicy
from interlock.http.caching._store import StoredResponse, explicitly_shareable, stale_windows
from interlock.http.caching._syntax import Headers, has_field
from interlock.http.caching._vary import vary_matches

# RFC 5861 §4: the errors stale-if-error covers (plus no response at all).
ERROR_STATUSES = frozenset((500, 502, 503, 504))


class Action(StrEnum):
    FRESH = "fresh"
    STALE = "stale"
    STALE_WHILE_REVALIDATE = "stale-while-revalidate"
    REVALIDATE = "revalidate"
    MISS = "miss"
    GATEWAY_TIMEOUT = "gateway-timeout"


@dataclass(frozen=True, slots=True)
class Lookup:
    """What to do with a request given a stored response (see the module docstring).

    Attributes:
        action: the :class:`Action`.
        reason: what decided it, for logs (``fresh``, ``no-cache``, ``max-age``, ...).
        freshness: the stored response's lifetime and current age, when there is one.
    """

    action: Action
    reason: str
    freshness: Freshness | None = None

    @property
    def age(self) -> str | None:
        """The ``Age`` to send with the stored response."""
        return None if self.freshness is None else age_header(self.freshness.age)


def freshness_of(stored: StoredResponse, policy: CachePolicy, now: float) -> Freshness:
    """The stored response's freshness lifetime and current age at ``now`` (§4.2)."""
    directives = response_directives(stored.headers, policy.targets)
    lifetime = freshness_lifetime(
        stored.status, stored.headers, directives, policy, stored.response_time
    )
    age = current_age(stored.initial_age, stored.response_time, now)
    return Freshness(0.0 if lifetime is None else lifetime.seconds, age)


def _stale_forbidden(directives: ResponseDirectives) -> bool:
    """§4.2.4: must-revalidate, and for a shared cache proxy-revalidate and s-maxage
    (§5.2.2.10), forbid serving the response stale whatever the client says."""
    return (
        directives.must_revalidate
        or directives.proxy_revalidate
        or directives.s_maxage is not None
        or directives.no_cache
    )


def _unavailable(request: RequestDirectives, reason: str) -> Lookup:
    if request.only_if_cached:
        return Lookup(Action.GATEWAY_TIMEOUT, "only-if-cached")
    return Lookup(Action.MISS, reason)


def lookup(
    stored: StoredResponse | None,
    method: str,
    request_headers: Headers,
    policy: CachePolicy,
    now: float,
) -> Lookup:
    """How to answer a GET/HEAD request with ``stored`` (the candidate of its primary
    key, ``None`` when there is none) at ``now``."""
    request = request_directives(request_headers)
    if method not in ("GET", "HEAD"):
        return Lookup(Action.MISS, "method")
    if request.no_store:
        return Lookup(Action.MISS, "request-no-store")
    if stored is None:
        return _unavailable(request, "miss")
    if not vary_matches(stored.vary, stored.secondary, request_headers):
        return _unavailable(request, "vary")
    if has_field(request_headers, "if-match") or has_field(request_headers, "if-unmodified-since"):
        return Lookup(Action.MISS, "origin-conditional")  # only the origin evaluates them
    directives = response_directives(stored.headers, policy.targets)
    if has_field(request_headers, "authorization") and not explicitly_shareable(directives):
        return Lookup(Action.MISS, "authorization")  # §3.5
    freshness = freshness_of(stored, policy, now)

    def revalidate(reason: str) -> Lookup:
        if request.only_if_cached:
            return Lookup(Action.GATEWAY_TIMEOUT, "only-if-cached", freshness)
        return Lookup(Action.REVALIDATE, reason, freshness)

    if directives.no_cache:
        return revalidate("no-cache")  # §5.2.2.4: stored, but validated on every use
    if request.no_cache:
        return revalidate("request-no-cache")  # §5.2.1.4
    if request.max_age is not None and freshness.age > request.max_age:
        return revalidate("max-age")  # §5.2.1.1
    if request.min_fresh is not None and freshness.remaining < request.min_fresh:
        return revalidate("min-fresh")  # §5.2.1.3
    if freshness.fresh:
        return Lookup(Action.FRESH, "fresh", freshness)
    swr, _ = stale_windows(directives, policy)  # none when must-revalidate & co. forbid it
    if swr and freshness.staleness <= swr and not request.only_if_cached:
        return Lookup(Action.STALE_WHILE_REVALIDATE, "stale-while-revalidate", freshness)
    if _stale_forbidden(directives):
        return revalidate("must-revalidate")
    if request.max_stale is not None and freshness.staleness <= request.max_stale:
        return Lookup(Action.STALE, "max-stale", freshness)  # §5.2.1.2
    return revalidate("stale")


def stale_if_error(
    stored: StoredResponse,
    request_headers: Headers,
    policy: CachePolicy,
    now: float,
    status: int | None = None,
) -> bool:
    """Whether ``stored`` may be served instead of a failed revalidation (RFC 5861 §4):
    ``status`` is the handler's answer, ``None`` when it gave none (it raised). Allowed
    within the response's (or the rule's) ``stale-if-error`` window, or the request's
    own ``stale-if-error``/``max-stale``, unless must-revalidate and the like forbid it."""
    if status is not None and status not in ERROR_STATUSES:
        return False
    directives = response_directives(stored.headers, policy.targets)
    _, window = stale_windows(directives, policy)
    staleness = freshness_of(stored, policy, now).staleness
    if window and staleness <= window:
        return True
    if _stale_forbidden(directives):
        return False
    request = request_directives(request_headers)
    allowed = max(request.stale_if_error or 0, request.max_stale or 0)
    return bool(allowed) and staleness <= allowed


def served_headers(stored: StoredResponse, freshness: Freshness) -> list[tuple[str, str]]:
    """The stored fields plus ``Age`` (§5.1: sent with every response from the cache);
    the origin's ``Date`` is kept as it was (§4: the cache does not rewrite it)."""
    return [*stored.headers, ("age", age_header(freshness.age))]
