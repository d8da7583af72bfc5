"""Vary (RFC 9111 §4.1): which request fields select a stored response, and their
normalised values (the secondary key).

A response's ``Vary`` gives :func:`vary_fields`: the sorted, lower-cased field names, or
``None`` for ``*`` (or a member that is not a field name), which never matches. The
secondary key maps each name to the request's normalised value, ``None`` when the request
lacks the field: absent and empty are different, so a request without the field never
matches a response stored for one with it (§4.1).
"""

from __future__ import annotations

import hashlib
import re

from interlock.http.caching._syntax import Headers, field_lines, is_token, list_members

SecondaryKey = tuple[tuple[str, str | None], ...]

# Fields whose members are an unordered set with explicit weights: order and case do not
# select a different representation (RFC 9110 §12.5.3-§12.5.4 compare them case-insensitively).
_CASELESS_SETS = frozenset(("accept-charset", "accept-encoding", "accept-language"))
_AROUND_PUNCTUATION = re.compile(r"[ \t]*([;=])[ \t]*")


def vary_fields(headers: Headers) -> tuple[str, ...] | None:
    """The response's selecting fields, or ``None`` when it varies on ``*`` (or on
    something that is not a field name): such a response is never reused."""
    names: set[str] = set()
    for member in list_members(headers, "vary"):
        if member == "*" or not is_token(member):
            return None
        names.add(member.lower())
    return tuple(sorted(names))


def normalise(name: str, lines: list[str]) -> str:
    """A request field's value in a form where equivalent values are equal: list members
    trimmed and joined by ``,``, whitespace around ``;``/``=`` dropped; for the
    ``Accept*`` fields, members sorted (and lower-cased, except ``Accept``'s parameters)."""
    members = [
        _AROUND_PUNCTUATION.sub(r"\1", member) for line in lines for member in _members(line)
    ]
    if name in _CASELESS_SETS:
        members = sorted(member.lower() for member in members)
    elif name == "accept":
        members = sorted(_media_range(member) for member in members)
    return ",".join(members)


def _members(line: str) -> list[str]:
    return [part.strip(" \t") for part in line.split(",") if part.strip(" \t")]


def _media_range(member: str) -> str:
    media, sep, params = member.partition(";")
    return media.lower() + sep + params


def secondary_key(fields: tuple[str, ...], request_headers: Headers) -> SecondaryKey:
    """The normalised values of ``fields`` in ``request_headers`` (``None``: absent)."""
    key: list[tuple[str, str | None]] = []
    for name in fields:
        lines = field_lines(request_headers, name)
        key.append((name, normalise(name, lines) if lines else None))
    return tuple(key)


def vary_matches(
    fields: tuple[str, ...] | None, stored: SecondaryKey, request_headers: Headers
) -> bool:
    """Whether a response stored with ``fields``/``stored`` may serve this request (§4.1)."""
    if fields is None:
        return False
    return secondary_key(fields, request_headers) == stored


def variant_id(key: SecondaryKey) -> str:
    """A digest of a secondary key, for the variant's storage key ("" when no Vary)."""
    if not key:
        return ""
    hasher = hashlib.sha256()
    for name, value in key:
        for part in (name, "\x00" if value is None else "=" + value):
            data = part.encode("utf-8", "surrogatepass")
            hasher.update(len(data).to_bytes(4, "big") + data)
    return hasher.hexdigest()
