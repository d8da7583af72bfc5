"""Whether a shared cache may store a response (RFC 9111 §3), and what it stores (§3.1).

:func:`decide_store` takes the request the handler answered and its response and returns
a :class:`StoreDecision`: the :class:`StoredResponse` to keep, or the reason not to
(a short name for logs and for the "pass" marker). The reasons:

``method`` (not GET), ``interim`` (1xx), ``not-modified`` (304), ``partial`` (206: never
taken for a full response), ``request-no-store``, ``must-understand`` (an unknown status
with ``must-understand``), ``no-store``, ``private``, ``authorization`` (§3.5),
``status`` (neither explicit freshness nor a heuristically cacheable status, or outside
the rule's statuses), ``set-cookie``, ``vary`` (``Vary: *``), ``no-freshness`` (no
explicit freshness, no validator and no heuristic), ``expired`` (stale on arrival with
nothing to revalidate it with and no stale window).
"""

from __future__ import annotations

from dataclasses import dataclass

from interlock.http.caching._directives import (
    ResponseDirectives,
    request_directives,
    response_directives,
)
from interlock.http.caching._freshness import (
    Lifetime,
    corrected_initial_age,
    freshness_lifetime,
    has_validator,
)
from interlock.http.caching._policy import (
    HEURISTICALLY_CACHEABLE,
    UNDERSTOOD_STATUSES,
    CachePolicy,
)
from interlock.http.caching._syntax import (
    Headers,
    format_http_date,
    has_field,
    is_token,
    list_members,
)
from interlock.http.caching._vary import SecondaryKey, secondary_key, vary_fields

# §3.1: hop-by-hop fields (RFC 9110 §7.6.1) and the proxy's own authentication fields.
HOP_BY_HOP = frozenset(
    ("connection", "proxy-connection", "keep-alive", "te", "transfer-encoding", "upgrade",
     "trailer", "proxy-authenticate", "proxy-authentication-info", "proxy-authorization")
)  # fmt: skip
REVALIDATION_GRACE = 300.0


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """A response as the cache keeps it (plain data: serialise it field by field).

    Attributes:
        status, headers: what is served (plus ``Age``); ``Date`` is always present.
        request_time, response_time: the exchange that produced it (§4.2.3).
        initial_age: its ``corrected_initial_age`` (§4.2.3).
        vary: the selecting fields (§4.1), empty without ``Vary``.
        secondary: the normalised values of those fields in the storing request.
        shared_authorized: stored from a request with ``Authorization`` that the response
            explicitly allowed to share (§3.5).
    """

    status: int
    headers: tuple[tuple[str, str], ...]
    request_time: float
    response_time: float
    initial_age: float
    vary: tuple[str, ...] = ()
    secondary: SecondaryKey = ()
    shared_authorized: bool = False


@dataclass(frozen=True, slots=True)
class StoreDecision:
    """The outcome of :func:`decide_store`.

    Attributes:
        reason: why the response is not stored (``None`` when it is).
        stored: the response to store, when it is.
        lifetime: its freshness lifetime (when it is).
        keep_for: seconds the backend should keep the entry: the lifetime, the longest
            stale window, and :data:`REVALIDATION_GRACE` more when it has a validator.
    """

    reason: str | None
    stored: StoredResponse | None = None
    lifetime: Lifetime | None = None
    keep_for: float = 0.0

    @property
    def store(self) -> bool:
        return self.reason is None


def explicitly_shareable(directives: ResponseDirectives) -> bool:
    """§3.5: a response to a request with ``Authorization`` may be shared when it has
    ``public``, ``s-maxage`` or ``must-revalidate``."""
    return directives.public or directives.s_maxage is not None or directives.must_revalidate


def stale_windows(directives: ResponseDirectives, policy: CachePolicy) -> tuple[float, float]:
    """``(stale-while-revalidate, stale-if-error)`` seconds allowed for this response: its
    own RFC 5861 directives, else the rule's; none when must-revalidate, proxy-revalidate
    or no-cache forbids stale (§4.2.4). ``s-maxage`` (which implies proxy-revalidate,
    §5.2.2.10) forbids the rule's windows but not the origin's own, explicit ones."""
    if directives.no_cache or directives.must_revalidate or directives.proxy_revalidate:
        return 0.0, 0.0
    own = (directives.stale_while_revalidate, directives.stale_if_error)
    rule_allowed = directives.s_maxage is None
    swr = own[0] if own[0] is not None else (policy.stale_while_revalidate if rule_allowed else 0)
    sie = own[1] if own[1] is not None else (policy.stale_if_error if rule_allowed else 0)
    return float(swr), float(sie)


def stored_headers(
    headers: Headers, directives: ResponseDirectives, policy: CachePolicy, response_time: float
) -> tuple[tuple[str, str], ...]:
    """The fields kept (§3.1): no hop-by-hop field, none named by ``Connection``, none
    named by a qualified ``no-cache``/``private`` (§5.2.2.4, §5.2.2.7), no ``Age`` (it is
    regenerated), no ``Set-Cookie`` unless the policy stores it; ``Date`` added if missing
    (RFC 9110 §6.6.1)."""
    omit = set(HOP_BY_HOP) | policy.unstored | directives.no_cache_fields
    omit |= directives.private_fields
    omit |= {m.lower() for m in list_members(headers, "connection") if is_token(m)}
    omit.add("age")
    if not policy.store_set_cookie:
        omit.add("set-cookie")
    kept = [(name.lower(), value) for name, value in headers if name.lower() not in omit]
    if not any(name == "date" for name, _ in kept):
        kept.append(("date", format_http_date(response_time)))
    return tuple(kept)


def _refusal(
    method: str,
    request_headers: Headers,
    status: int,
    headers: Headers,
    directives: ResponseDirectives,
    policy: CachePolicy,
) -> str | None:
    if method != "GET":
        return "method"
    if status < 200:
        return "interim"
    if status == 304:
        return "not-modified"
    if status == 206:
        return "partial"
    if request_directives(request_headers).no_store:
        return "request-no-store"
    if directives.must_understand and status not in UNDERSTOOD_STATUSES:
        return "must-understand"
    if directives.no_store and not directives.must_understand:
        return "no-store"  # must-understand with a known status overrides no-store (§5.2.2.3)
    if directives.private:
        return "private"
    if has_field(request_headers, "authorization") and not explicitly_shareable(directives):
        return "authorization"
    explicit = (
        directives.public
        or directives.explicit_lifetime
        or (not directives.targeted and has_field(headers, "expires"))
    )
    if policy.statuses is not None:
        if status not in policy.statuses:
            return "status"
    elif not explicit and status not in HEURISTICALLY_CACHEABLE:
        return "status"
    stripped = directives.no_cache_fields | directives.private_fields
    cookie = has_field(headers, "set-cookie") and not policy.store_set_cookie
    if cookie and "set-cookie" not in stripped:
        return "set-cookie"
    if vary_fields(headers) is None:
        return "vary"
    return None


def decide_store(
    method: str,
    request_headers: Headers,
    status: int,
    headers: Headers,
    policy: CachePolicy,
    *,
    request_time: float,
    response_time: float,
) -> StoreDecision:
    """Whether to store ``status``/``headers`` answering ``method`` with
    ``request_headers`` (§3, §3.5, §4.1), and the stored form when it may.

    Only the origin's response and the request's own ``no-store``/``Authorization``
    decide; conditional or ``Range`` request fields never do (fill with a full request).
    """
    directives = response_directives(headers, policy.targets)
    reason = _refusal(method, request_headers, status, headers, directives, policy)
    if reason is not None:
        return StoreDecision(reason)
    lifetime = freshness_lifetime(status, headers, directives, policy, response_time)
    if lifetime is None:
        return StoreDecision("no-freshness")
    swr, sie = stale_windows(directives, policy)
    validator = has_validator(headers)
    initial_age = corrected_initial_age(headers, request_time, response_time)
    if lifetime.seconds <= initial_age and not validator and not (swr or sie):
        return StoreDecision("expired")
    fields = vary_fields(headers) or ()
    stored = StoredResponse(
        status=status,
        headers=stored_headers(headers, directives, policy, response_time),
        request_time=request_time,
        response_time=response_time,
        initial_age=initial_age,
        vary=fields,
        secondary=secondary_key(fields, request_headers),
        shared_authorized=has_field(request_headers, "authorization"),
    )
    keep = max(0.0, lifetime.seconds - initial_age) + max(swr, sie)
    if validator:
        keep += REVALIDATION_GRACE
    return StoreDecision(None, stored, lifetime, keep)
