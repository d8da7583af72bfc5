"""Validation (RFC 9111 §4.3; RFC 9110 §13): conditional requests in both directions.

- :func:`fill_headers` / :func:`revalidation_headers`: the request fields sent to the
  handler when filling (the client's own validators and ``Range`` stripped, §4.3.1) and
  when revalidating a stored response (its ``ETag`` and ``Last-Modified``).
- :func:`evaluate_conditional`: answer the client's ``If-None-Match`` /
  ``If-Modified-Since`` from a stored response (RFC 9110 §13.2.2, RFC 9111 §4.3.2).
- :func:`not_modified_headers`: the fields of a ``304`` (RFC 9110 §15.4.5).
- :func:`freshen`: merge a ``304`` into the stored response (§4.3.3, §4.3.4), and
  :func:`head_update` a ``200`` to a ``HEAD`` (§4.3.5).
"""

from __future__ import annotations

import dataclasses

from interlock.http.caching._freshness import corrected_initial_age
from interlock.http.caching._policy import CachePolicy
from interlock.http.caching._store import HOP_BY_HOP, StoredResponse
from interlock.http.caching._syntax import (
    EntityTag,
    Headers,
    entity_tags,
    field_lines,
    format_http_date,
    has_field,
    parse_http_date,
    response_etag,
    single_date,
    split_list,
)

# Request fields that only the cache answers, never forwarded when filling (§4.3.1, §4.3.2).
CLIENT_VALIDATORS = frozenset(("if-none-match", "if-modified-since", "range", "if-range"))
# RFC 9110 §15.4.5: what a 304 carries (Last-Modified only when there is no ETag).
_NOT_MODIFIED = ("cache-control", "content-location", "date", "etag", "expires", "vary")
# §4.3.4: never taken from a 304/HEAD into the stored response.
_NOT_UPDATED = HOP_BY_HOP | {"content-length", "age"}


def fill_headers(request_headers: Headers) -> list[tuple[str, str]]:
    """The client's request fields minus its validators and ``Range``: a fill always
    fetches a full response, so one client's conditional or partial request cannot make
    an unstorable 304/206 decide for everyone."""
    return [(n, v) for n, v in request_headers if n.lower() not in CLIENT_VALIDATORS]


def revalidation_headers(request_headers: Headers, stored: StoredResponse) -> list[tuple[str, str]]:
    """The fields of the conditional request validating ``stored`` (§4.3.1): the fill
    headers plus ``If-None-Match`` with its entity tag and ``If-Modified-Since`` with its
    ``Last-Modified`` (both when it has both: RFC 9110 gives If-None-Match precedence)."""
    headers = fill_headers(request_headers)
    etag = response_etag(stored.headers)
    if etag is not None:
        headers.append(("if-none-match", str(etag)))
    modified = field_lines(stored.headers, "last-modified")
    if len(modified) == 1 and parse_http_date(modified[0]) is not None:
        headers.append(("if-modified-since", modified[0]))
    return headers


def _if_none_match(value: str, etag: EntityTag | None) -> bool:
    """True when ``If-None-Match`` matches (so the condition is false): ``*`` or any
    member equal under the weak comparison (RFC 9110 §13.1.2)."""
    if any(member == "*" for member in split_list(value)):
        return True
    return etag is not None and any(tag.weak_match(etag) for tag in entity_tags(value))


def evaluate_conditional(
    stored: StoredResponse, method: str, request_headers: Headers
) -> int | None:
    """``304`` when the client's condition says its copy is current, else ``None`` (send
    the stored response). If-None-Match takes precedence; If-Modified-Since is read only
    without it, for GET/HEAD, when it is one valid date, against ``Last-Modified`` or else
    the stored ``Date`` (§4.3.2). If-Match/If-Unmodified-Since are the origin's to judge."""
    if method not in ("GET", "HEAD"):
        return None
    if_none_match = field_lines(request_headers, "if-none-match")
    if if_none_match:
        matched = _if_none_match(", ".join(if_none_match), response_etag(stored.headers))
        return 304 if matched else None
    since = single_date(request_headers, "if-modified-since")
    if since is None:
        return None
    modified = single_date(stored.headers, "last-modified")
    if modified is None:
        modified = single_date(stored.headers, "date")
    if modified is None:
        modified = stored.response_time
    return 304 if modified <= since else None


def not_modified_headers(stored: StoredResponse) -> list[tuple[str, str]]:
    """The stored fields a ``304`` repeats (RFC 9110 §15.4.5); add ``Age`` to them."""
    wanted = set(_NOT_MODIFIED)
    if not has_field(stored.headers, "etag"):
        wanted.add("last-modified")
    return [(n, v) for n, v in stored.headers if n in wanted]


def _selects(stored: Headers, new: Headers) -> bool:
    """§4.3.4: whether the new response's validators identify the stored response."""
    new_tag = response_etag(new)
    old_tag = response_etag(stored)
    if new_tag is not None:
        if old_tag is None:
            return False
        return new_tag.strong_match(old_tag) if not new_tag.weak else new_tag.weak_match(old_tag)
    new_modified = field_lines(new, "last-modified")
    if new_modified:
        return field_lines(stored, "last-modified") == new_modified
    # No validator: it answers the conditional request this cache sent for this response.
    return True


def _merged(
    stored: StoredResponse, new: Headers, policy: CachePolicy, response_time: float
) -> tuple[tuple[str, str], ...]:
    excluded = _NOT_UPDATED | policy.unstored
    if not policy.store_set_cookie:
        excluded = excluded | {"set-cookie"}
    replaced = {n.lower() for n, _ in new if n.lower() not in excluded}
    kept = [(n, v) for n, v in stored.headers if n not in replaced]
    kept += [(n.lower(), v) for n, v in new if n.lower() in replaced]
    if "date" not in replaced:  # a 304 without Date: its freshness starts now
        kept = [(n, v) for n, v in kept if n != "date"]
        kept.append(("date", format_http_date(response_time)))
    return tuple(kept)


def freshen(
    stored: StoredResponse,
    headers: Headers,
    policy: CachePolicy,
    *,
    request_time: float,
    response_time: float,
) -> StoredResponse | None:
    """The stored response updated by a ``304`` with ``headers`` (§4.3.4): each field the
    304 carries replaces the stored one, except hop-by-hop fields, ``Content-Length`` and
    ``Age``; the age restarts from the 304. ``None`` when the 304's validator names
    another representation (then fetch a full response)."""
    if not _selects(stored.headers, headers):
        return None
    return dataclasses.replace(
        stored,
        headers=_merged(stored, headers, policy, response_time),
        request_time=request_time,
        response_time=response_time,
        initial_age=corrected_initial_age(headers, request_time, response_time),
    )


def head_update(
    stored: StoredResponse,
    status: int,
    headers: Headers,
    policy: CachePolicy,
    *,
    request_time: float,
    response_time: float,
) -> StoredResponse | None:
    """The stored GET response after a ``HEAD`` to the same URI was answered (§4.3.5).

    A ``200`` whose ``ETag``, ``Last-Modified`` and ``Content-Length`` agree with the
    stored ones updates it like a 304; one that disagrees makes it unusable (``None``:
    drop it). Any other status leaves it as it was.
    """
    if status != 200:
        return stored
    for name in ("etag", "last-modified", "content-length"):
        new = field_lines(headers, name)
        if new and new != field_lines(stored.headers, name):
            return None
    return dataclasses.replace(
        stored,
        headers=_merged(stored, headers, policy, response_time),
        request_time=request_time,
        response_time=response_time,
        initial_age=corrected_initial_age(headers, request_time, response_time),
    )
