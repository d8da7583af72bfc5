"""Range requests answered from a stored full ``200`` (RFC 9110 §14).

:func:`select_range` reads ``Range`` (and ``If-Range``) against a stored body of
``length`` bytes and returns a :class:`RangeAnswer`: the whole ``200`` (no, ignored or
several ranges: a server may always ignore ``Range``, §14.2), one ``206`` slice with its
``Content-Range``, or ``416`` with ``Content-Range: bytes */length``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from interlock.http.caching._store import StoredResponse
from interlock.http.caching._syntax import (
    field_lines,
    parse_entity_tag,
    parse_http_date,
    response_etag,
    single_date,
    split_list,
)

_SPEC = re.compile(r"([0-9]*)-([0-9]*)")


@dataclass(frozen=True, slots=True)
class RangeAnswer:
    """``status`` 200 (whole body), 206 (``body[start:stop]``) or 416.

    Attributes:
        content_range: the ``Content-Range`` value (206 and 416), else ``None``.
    """

    status: int
    start: int = 0
    stop: int = 0
    content_range: str | None = None

    @property
    def length(self) -> int:
        return self.stop - self.start


def parse_range(value: str, length: int) -> list[tuple[int, int]] | None:
    """The satisfiable ``[start, stop)`` slices of a ``bytes=`` range set; ``None`` when
    the field is invalid or of another unit (then ignored, §14.2). An empty list means
    unsatisfiable (§14.1.1: no range starts before ``length``; a suffix of 0 bytes)."""
    unit, sep, ranges = value.strip(" \t").partition("=")
    if not sep or unit.strip(" \t").lower() != "bytes":
        return None
    slices: list[tuple[int, int]] = []
    specs = split_list(ranges)
    if not specs:
        return None
    for spec in specs:
        match = _SPEC.fullmatch(spec)
        if match is None:
            return None
        first, last = match.groups()
        if first:
            start = int(first)
            if last and int(last) < start:
                return None  # an invalid range-spec invalidates the field
            stop = min(int(last) + 1, length) if last else length
            if start < length:
                slices.append((start, stop))
        elif last:
            suffix = int(last)
            if suffix > 0 and length > 0:
                slices.append((max(0, length - suffix), length))
        else:
            return None
    return slices


def _if_range_holds(value: str, stored: StoredResponse) -> bool:
    """RFC 9110 §13.1.5: an entity tag must match strongly; a date must equal a strong
    ``Last-Modified`` (one at least a second before the stored ``Date``)."""
    value = value.strip(" \t")
    if value.startswith(('"', "W/")):
        tag = parse_entity_tag(value)
        etag = response_etag(stored.headers)
        return tag is not None and etag is not None and tag.strong_match(etag)
    since = parse_http_date(value)
    modified = single_date(stored.headers, "last-modified")
    date = single_date(stored.headers, "date")
    if since is None or modified is None or date is None:
        return False
    return since == modified and date - modified >= 1


def select_range(
    stored: StoredResponse, method: str, range_lines: list[str], if_range: list[str], length: int
) -> RangeAnswer:
    """What to answer a request with these ``Range``/``If-Range`` lines from ``stored``."""
    whole = RangeAnswer(200, 0, length)
    if method != "GET" or stored.status != 200 or len(range_lines) != 1:
        return whole  # Range is defined for GET only (§14.2); several lines: invalid
    if if_range and (len(if_range) != 1 or not _if_range_holds(if_range[0], stored)):
        return whole
    slices = parse_range(range_lines[0], length)
    if slices is None:
        return whole
    if not slices:
        return RangeAnswer(416, content_range=f"bytes */{length}")
    if len(slices) > 1:
        return whole  # no multipart/byteranges: the full response is a valid answer
    start, stop = slices[0]
    return RangeAnswer(206, start, stop, f"bytes {start}-{stop - 1}/{length}")


def range_request(headers: list[tuple[str, str]]) -> tuple[list[str], list[str]]:
    """The ``Range`` and ``If-Range`` lines of a request."""
    return field_lines(headers, "range"), field_lines(headers, "if-range")
