"""``CachePolicy``: the options of a cache rule that the caching decisions read.

The drivers build one from a :class:`~interlock.CacheRule` (the integration step adds the
new options to the rule); the decisions never see the rule itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# RFC 9110 §15.1: statuses defined as heuristically cacheable.
HEURISTICALLY_CACHEABLE = frozenset((200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501))
# Final statuses whose caching requirements RFC 9110 defines (for must-understand, §5.2.2.3).
UNDERSTOOD_STATUSES = frozenset(
    (200, 201, 202, 203, 204, 205, 206, 300, 301, 302, 303, 304, 305, 307, 308,
     400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 411, 412, 413, 414, 415, 416,
     417, 421, 422, 426, 500, 501, 502, 503, 504, 505)
)  # fmt: skip
# The middleware's own per-delivery fields, never stored (the RFC's exclusions are in _store).
PER_DELIVERY = frozenset(("x-cache", "x-request-id"))


def _seconds(name: str, value: float | None, *, zero: bool = True) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise TypeError(f"{name}={value!r} must be a number of seconds or None")
    if value < 0 or (value == 0 and not zero) or math.isinf(value):
        raise ValueError(f"{name}={value!r} must be a finite number of seconds ≥ 0")
    return float(value)


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """What a rule lets the shared cache do beyond what the origin's headers say.

    Attributes:
        ttl: freshness lifetime given to a storable response without explicit freshness
            (RFC 9111 §4.2.2 allows a heuristic); used only for responses with a validator
            (``ETag``/``Last-Modified``), or for any heuristically cacheable one when
            ``heuristic`` is on. ``None``: such responses are stored stale (revalidated on
            every use) when they have a validator, not stored otherwise.
        max_ttl: cap on every freshness lifetime, explicit ones included.
        heuristic: opt into heuristic freshness (§4.2.2): 10% of ``Date - Last-Modified``
            (capped by ``max_ttl``), else ``ttl``, for responses without a validator too.
        stale_while_revalidate, stale_if_error: the rule's own windows (RFC 5861 semantics),
            used when the response names none and nothing forbids stale (§4.2.4).
        targets: targeted fields obeyed, in order (RFC 9213), e.g. ``("cdn-cache-control",)``.
        statuses: statuses that may be stored; ``None``: RFC 9110 §15.1 (heuristically
            cacheable, or any status with explicit freshness).
        override: the old fixed-``ttl`` behaviour: ``ttl`` replaces the origin's
            freshness (``no-store``/``private``/``Authorization`` are still obeyed).
        store_set_cookie: store responses carrying ``Set-Cookie`` (off: never shared).
        unstored: more fields never stored (default: the middleware's per-delivery ones).
    """

    ttl: float | None = None
    max_ttl: float | None = None
    heuristic: bool = False
    stale_while_revalidate: float = 0.0
    stale_if_error: float = 0.0
    targets: tuple[str, ...] = ("cdn-cache-control",)
    statuses: frozenset[int] | None = None
    override: bool = False
    store_set_cookie: bool = False
    unstored: frozenset[str] = PER_DELIVERY

    def __post_init__(self) -> None:
        _seconds("ttl", self.ttl)
        _seconds("max_ttl", self.max_ttl, zero=False)
        _seconds("stale_while_revalidate", self.stale_while_revalidate)
        _seconds("stale_if_error", self.stale_if_error)
        if self.override and self.ttl is None:
            raise ValueError("override=True needs a ttl: the fixed lifetime it applies")
        targets: object = self.targets
        if isinstance(targets, str):
            raise TypeError(
                f"targets={targets!r} must be a tuple of field names, e.g. ({targets!r},)"
            )
        object.__setattr__(self, "targets", tuple(t.strip().lower() for t in self.targets))
        object.__setattr__(self, "unstored", frozenset(f.lower() for f in self.unstored))
