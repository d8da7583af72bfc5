"""Builders for the pure caching-rule tests: an exchange at a fixed instant, then a use."""

from __future__ import annotations

from collections.abc import Sequence

from interlock.http.caching import (
    CachePolicy,
    Lookup,
    StoreDecision,
    StoredResponse,
    decide_store,
    format_http_date,
    lookup,
)

T0 = 1_700_000_000.0  # when the handler answered
Headers = Sequence[tuple[str, str]]


def date(offset: float = 0.0) -> str:
    """An IMF-fixdate ``offset`` seconds from :data:`T0`."""
    return format_http_date(T0 + offset)


def store(
    headers: Headers,
    status: int = 200,
    *,
    request: Headers = (),
    policy: CachePolicy | None = None,
    method: str = "GET",
    delay: float = 0.0,
) -> StoreDecision:
    """Decide on a response received at T0 for a request sent ``delay`` seconds before."""
    return decide_store(
        method, request, status, headers, policy or CachePolicy(),
        request_time=T0 - delay, response_time=T0,
    )  # fmt: skip


def stored(headers: Headers, status: int = 200, **options: object) -> StoredResponse:
    decision = store(headers, status, **options)  # type: ignore[arg-type]
    assert decision.stored is not None, decision.reason
    return decision.stored


def use(
    headers: Headers,
    *,
    after: float = 1.0,
    request: Headers = (),
    first_request: Headers = (),
    policy: CachePolicy | None = None,
    status: int = 200,
    method: str = "GET",
) -> Lookup:
    """Store the response (at T0, date-stamped T0 unless it has a Date), then look it up
    ``after`` seconds later; an unstorable response looks up as a miss."""
    if not any(name.lower() == "date" for name, _ in headers):
        headers = [("date", date()), *headers]
    decision = store(headers, status, request=first_request, policy=policy)
    return lookup(decision.stored, method, request, policy or CachePolicy(), T0 + after)


def reused(headers: Headers, **options: object) -> bool:
    """Whether a response is served without contacting the handler."""
    return use(headers, **options).action.value in ("fresh", "stale", "stale-while-revalidate")  # type: ignore[arg-type]
