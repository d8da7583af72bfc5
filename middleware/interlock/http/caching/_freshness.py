"""Freshness lifetime and age (RFC 9111 §4.2), as plain functions of headers and times.

Times are seconds since the epoch (``time.time()``): ``request_time`` when the request
that produced the response was sent to the handler, ``response_time`` when its response
arrived, ``now`` when the stored response is about to be used.
"""

from __future__ import annotations

from dataclasses import dataclass

from interlock.http.caching._directives import ResponseDirectives
from interlock.http.caching._policy import HEURISTICALLY_CACHEABLE, CachePolicy
from interlock.http.caching._syntax import (
    DELTA_SECONDS_MAX,
    Headers,
    delta_seconds,
    field_lines,
    has_field,
    list_members,
    parse_http_date,
    single_date,
)

ALREADY_EXPIRED = float("-inf")
HEURISTIC_FRACTION = 0.1  # §4.2.2: "a typical setting of this fraction might be 10%"


def age_value(headers: Headers) -> int:
    """The ``Age`` field (§5.1): its first list member as delta-seconds; 0 when absent or
    invalid (negative, decimal, alphabetic: "a cache SHOULD ignore the field")."""
    members = list_members(headers, "age")
    if not members:
        return 0
    value = delta_seconds(members[0])
    return 0 if value is None else value


def date_value(headers: Headers, response_time: float) -> float:
    """The origin's ``Date``; the time the response was received when it has none or an
    invalid one (RFC 9110 §6.6.1)."""
    date = single_date(headers, "date", response_time)
    return response_time if date is None else date


def expires_value(headers: Headers, now: float) -> float | None:
    """``Expires`` (§5.3): ``None`` when absent; :data:`ALREADY_EXPIRED` when invalid
    (``0`` included) or repeated (§4.2.1 lets a repeated field make the response stale)."""
    lines = field_lines(headers, "expires")
    if not lines:
        return None
    if len(lines) > 1:
        return ALREADY_EXPIRED
    value = parse_http_date(lines[0], now)
    return ALREADY_EXPIRED if value is None else value


def corrected_initial_age(headers: Headers, request_time: float, response_time: float) -> float:
    """§4.2.3: ``max(apparent_age, corrected_age_value)`` for a response received at
    ``response_time`` for a request sent at ``request_time``."""
    apparent_age = max(0.0, response_time - date_value(headers, response_time))
    response_delay = max(0.0, response_time - request_time)
    corrected_age_value = age_value(headers) + response_delay
    return max(apparent_age, corrected_age_value)


def current_age(initial_age: float, response_time: float, now: float) -> float:
    """§4.2.3: ``corrected_initial_age + resident_time``."""
    return initial_age + max(0.0, now - response_time)


def age_header(age: float) -> str:
    """The ``Age`` value to send: whole seconds, at most 2^31 (§1.2.2, §5.1)."""
    return str(min(int(age), DELTA_SECONDS_MAX))


@dataclass(frozen=True, slots=True)
class Lifetime:
    """A freshness lifetime and where it came from.

    ``source`` is one of ``s-maxage``, ``max-age``, ``expires``, ``heuristic``,
    ``default`` (the rule's ``ttl``), ``override`` (the rule's fixed ``ttl``), ``none``
    (stored only to be revalidated: a validator and no lifetime at all).
    """

    seconds: float
    source: str


def has_validator(headers: Headers) -> bool:
    return has_field(headers, "etag") or has_field(headers, "last-modified")


def freshness_lifetime(
    status: int,
    headers: Headers,
    directives: ResponseDirectives,
    policy: CachePolicy,
    response_time: float,
) -> Lifetime | None:
    """The response's freshness lifetime for a shared cache (§4.2.1), or ``None`` when
    it has no explicit freshness and the policy gives it none (then it is not stored).

    Order: ``s-maxage``, ``max-age``, ``Expires - Date`` (``Expires`` is ignored when
    the directives come from a targeted field), then the policy: heuristic freshness when
    opted into, the rule's ``ttl`` for responses with a validator. ``max_ttl`` caps all.
    """
    cap = policy.max_ttl

    def capped(seconds: float, source: str) -> Lifetime:
        seconds = max(0.0, seconds)
        return Lifetime(seconds if cap is None else min(seconds, cap), source)

    if policy.override:
        return Lifetime(policy.ttl or 0.0, "override")
    if directives.s_maxage is not None:
        return capped(directives.s_maxage, "s-maxage")
    if directives.max_age is not None:
        return capped(directives.max_age, "max-age")
    if not directives.targeted:
        expires = expires_value(headers, response_time)
        if expires is not None:
            if expires == ALREADY_EXPIRED:
                return Lifetime(0.0, "expires")
            return capped(expires - date_value(headers, response_time), "expires")
    validator = has_validator(headers)
    if policy.heuristic and (status in HEURISTICALLY_CACHEABLE or directives.public):
        date = date_value(headers, response_time)
        modified = single_date(headers, "last-modified", response_time)
        if modified is not None and modified < date:
            return capped(HEURISTIC_FRACTION * (date - modified), "heuristic")
        if policy.ttl is not None:
            return capped(policy.ttl, "default")
        return Lifetime(0.0, "none") if validator else None
    if validator:
        if policy.ttl is None:
            return Lifetime(0.0, "none")
        return capped(policy.ttl, "default")
    return None


@dataclass(frozen=True, slots=True)
class Freshness:
    """A stored response's freshness at one instant (§4.2: fresh when lifetime > age)."""

    lifetime: float
    age: float

    @property
    def fresh(self) -> bool:
        return self.lifetime > self.age

    @property
    def remaining(self) -> float:
        """Seconds of freshness left (negative once stale)."""
        return self.lifetime - self.age

    @property
    def staleness(self) -> float:
        return max(0.0, self.age - self.lifetime)
