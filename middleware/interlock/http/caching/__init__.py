"""The rules of a shared HTTP cache (RFC 9111, RFC 9110 §13-§15, RFC 5861, RFC 9213, RFC 8941).

Pure functions and dataclasses, no I/O: the response cache's drivers call them.

- :func:`decide_store` — may this response be stored, and in what form (§3);
- :func:`lookup` — serve, serve stale, revalidate, miss or 504 (§4, §5.2.1);
- :func:`stale_if_error` — serve stale instead of a failed revalidation (RFC 5861);
- :func:`fill_headers`, :func:`revalidation_headers` — the requests sent to the handler;
- :func:`evaluate_conditional`, :func:`not_modified_headers` — answer a client's
  validators from a stored response; :func:`freshen`, :func:`head_update` — merge a 304 or
  a HEAD into it (§4.3);
- :func:`select_range` — a 206/416 from a stored 200 (RFC 9110 §14);
- :func:`effective_authority`, :func:`target_key`, :func:`invalidation_keys` — the
  primary key and what unsafe requests invalidate (§2, §4.4); :func:`variant_id` the
  secondary key (§4.1).

The parsers behind them (``Cache-Control``, targeted fields, dates, ``Age``, ``Vary``,
entity tags) are exported too. See docs/http-cache.md.
"""

from interlock.http.caching._directives import (
    MAX_STALE_ANY,
    RequestDirectives,
    ResponseDirectives,
    cache_control,
    parse_directives,
    request_directives,
    response_directives,
)
from interlock.http.caching._freshness import (
    ALREADY_EXPIRED,
    Freshness,
    Lifetime,
    age_header,
    age_value,
    corrected_initial_age,
    current_age,
    date_value,
    expires_value,
    freshness_lifetime,
)
from interlock.http.caching._lookup import (
    Action,
    Lookup,
    freshness_of,
    lookup,
    served_headers,
    stale_if_error,
)
from interlock.http.caching._policy import (
    HEURISTICALLY_CACHEABLE,
    UNDERSTOOD_STATUSES,
    CachePolicy,
)
from interlock.http.caching._ranges import RangeAnswer, parse_range, range_request, select_range
from interlock.http.caching._store import (
    StoreDecision,
    StoredResponse,
    decide_store,
    stale_windows,
    stored_headers,
)
from interlock.http.caching._structured import Token, parse_dictionary
from interlock.http.caching._syntax import (
    DELTA_SECONDS_MAX,
    EntityTag,
    delta_seconds,
    format_http_date,
    parse_entity_tag,
    parse_http_date,
    split_list,
)
from interlock.http.caching._target import (
    effective_authority,
    invalidation_keys,
    normalise_query,
    target_key,
)
from interlock.http.caching._validation import (
    evaluate_conditional,
    fill_headers,
    freshen,
    head_update,
    not_modified_headers,
    revalidation_headers,
)
from interlock.http.caching._vary import (
    SecondaryKey,
    normalise,
    secondary_key,
    variant_id,
    vary_fields,
    vary_matches,
)

__all__ = [
    "ALREADY_EXPIRED",
    "DELTA_SECONDS_MAX",
    "HEURISTICALLY_CACHEABLE",
    "MAX_STALE_ANY",
    "UNDERSTOOD_STATUSES",
    "Action",
    "CachePolicy",
    "EntityTag",
    "Freshness",
    "Lifetime",
    "Lookup",
    "RangeAnswer",
    "RequestDirectives",
    "ResponseDirectives",
    "SecondaryKey",
    "StoreDecision",
    "StoredResponse",
    "Token",
    "age_header",
    "age_value",
    "cache_control",
    "corrected_initial_age",
    "current_age",
    "date_value",
    "decide_store",
    "delta_seconds",
    "effective_authority",
    "evaluate_conditional",
    "expires_value",
    "fill_headers",
    "format_http_date",
    "freshen",
    "freshness_lifetime",
    "freshness_of",
    "head_update",
    "invalidation_keys",
    "lookup",
    "normalise",
    "normalise_query",
    "not_modified_headers",
    "parse_dictionary",
    "parse_directives",
    "parse_entity_tag",
    "parse_http_date",
    "parse_range",
    "range_request",
    "request_directives",
    "response_directives",
    "revalidation_headers",
    "secondary_key",
    "select_range",
    "served_headers",
    "split_list",
    "stale_if_error",
    "stale_windows",
    "stored_headers",
    "target_key",
    "variant_id",
    "vary_fields",
    "vary_matches",
]
