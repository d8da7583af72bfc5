"""Field syntax shared by the caching rules (RFC 9110 §5.5, §5.6; RFC 9111 §1.2.2).

Everything here takes the field *lines* a message carried (``Headers``: ``(name, value)``
pairs, names compared case-insensitively) and never raises on bad input: a value that does
not parse comes back as ``None`` (or the documented sentinel) for the caller to judge.
"""

from __future__ import annotations

import calendar
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

Headers = Sequence[tuple[str, str]]

# RFC 9111 §1.2.2: a delta-seconds too large to represent is taken as 2^31.
DELTA_SECONDS_MAX = 2147483648
# RFC 9110 §5.6.2 tchar.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_DIGITS = re.compile(r"[0-9]+")


def field_lines(headers: Headers, name: str) -> list[str]:
    """The values of every line of field ``name``, in order."""
    wanted = name.lower()
    return [value for key, value in headers if key.lower() == wanted]


def field_value(headers: Headers, name: str) -> str | None:
    """Every line of ``name`` combined with ``", "`` (RFC 9110 §5.3), ``None`` if absent."""
    lines = field_lines(headers, name)
    return ", ".join(lines) if lines else None


def has_field(headers: Headers, name: str) -> bool:
    wanted = name.lower()
    return any(key.lower() == wanted for key, _ in headers)


def is_token(text: str) -> bool:
    return _TOKEN.fullmatch(text) is not None


def split_list(value: str) -> list[str]:
    """The members of a ``#rule`` list (RFC 9110 §5.6.1): commas inside quoted strings
    do not split, empty members are dropped, optional whitespace is trimmed."""
    members: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in value:
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            members.append("".join(current).strip(" \t"))
            current = []
            continue
        current.append(char)
    members.append("".join(current).strip(" \t"))
    return [member for member in members if member]


def list_members(headers: Headers, name: str) -> list[str]:
    """The list members of every line of ``name``."""
    return [member for line in field_lines(headers, name) for member in split_list(line)]


def unquote(text: str) -> str | None:
    """The content of a quoted-string (RFC 9110 §5.6.4), ``None`` if ``text`` is not one."""
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        return None
    out: list[str] = []
    chars = iter(text[1:-1])
    for char in chars:
        if char == '"':
            return None
        if char == "\\":
            char = next(chars, "")
            if not char:
                return None
        out.append(char)
    return "".join(out)


def delta_seconds(text: str) -> int | None:
    """A delta-seconds value (RFC 9111 §1.2.2): digits only, capped at 2^31; else ``None``."""
    if _DIGITS.fullmatch(text) is None:
        return None
    return min(int(text), DELTA_SECONDS_MAX)


# -- HTTP-date (RFC 9110 §5.6.7) ---------------------------------------------------------------

_DAY = r"(?:mon|tue|wed|thu|fri|sat|sun)"
_DAY_LONG = r"(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)"
_MONTH = r"(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)"
_TIME = r"([0-9]{2}):([0-9]{2}):([0-9]{2})"
_IMF = re.compile(rf"{_DAY}, ([0-9]{{2}}) {_MONTH} ([0-9]{{4}}) {_TIME} gmt", re.I)
_RFC850 = re.compile(rf"{_DAY_LONG}, ([0-9]{{2}})-{_MONTH}-([0-9]{{2}}) {_TIME} gmt", re.I)
_ASCTIME = re.compile(rf"{_DAY} {_MONTH} ((?: [0-9])|[0-9]{{2}}) {_TIME} ([0-9]{{4}})", re.I)
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")


def parse_http_date(text: str, now: float | None = None) -> float | None:
    """An HTTP-date as seconds since the epoch, ``None`` when it is not one.

    The three formats of RFC 9110 §5.6.7 are accepted (names in any case, which §5.6.7
    invites recipients to tolerate); nothing else is: no other zone than ``GMT``, no
    missing comma, no extra spaces, no one-digit hour. A two-digit rfc850 year more than
    50 years ahead of ``now`` is read as the latest past year with those digits.
    """
    text = text.strip(" \t")
    if match := _IMF.fullmatch(text):
        day, month, year, hour, minute, second = match.groups()
    elif match := _ASCTIME.fullmatch(text):
        month, day, hour, minute, second, year = match.groups()
    elif match := _RFC850.fullmatch(text):
        day, month, short, hour, minute, second = match.groups()
        this_year = time.gmtime(time.time() if now is None else now).tm_year
        full = this_year - this_year % 100 + int(short)
        year = str(full - 100 if full > this_year + 50 else full)
    else:
        return None
    numbers = (int(year), _MONTHS.index(month.lower()) + 1, int(day))
    clock = (int(hour), int(minute), min(int(second), 59))  # a leap second reads as :59
    if clock[0] > 23 or clock[1] > 59 or int(second) > 60 or not _valid_day(*numbers):
        return None
    return float(calendar.timegm((*numbers, *clock, 0, 0, 0)))


def _valid_day(year: int, month: int, day: int) -> bool:
    return 1 <= day <= calendar.monthrange(year, month)[1]


def format_http_date(epoch: float) -> str:
    """The IMF-fixdate of ``epoch`` (what a sender generates, RFC 9110 §5.6.7)."""
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(int(epoch)))


def single_date(headers: Headers, name: str, now: float | None = None) -> float | None:
    """A singleton date field: ``None`` when absent, repeated or invalid."""
    lines = field_lines(headers, name)
    if len(lines) != 1:
        return None
    return parse_http_date(lines[0], now)


# -- entity tags (RFC 9110 §8.8.3) -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EntityTag:
    """An entity tag: ``opaque`` includes its double quotes."""

    opaque: str
    weak: bool = False

    def __str__(self) -> str:
        return ("W/" if self.weak else "") + self.opaque

    def strong_match(self, other: EntityTag) -> bool:
        """RFC 9110 §8.8.3.2 strong comparison: both strong and identical."""
        return not self.weak and not other.weak and self.opaque == other.opaque

    def weak_match(self, other: EntityTag) -> bool:
        """RFC 9110 §8.8.3.2 weak comparison: identical opaque tags."""
        return self.opaque == other.opaque


_ETAGC = re.compile(r'"[\x21\x23-\x7e\x80-\xff]*"')
_UNQUOTED = re.compile(r"[\x21\x23-\x2b\x2d-\x7e\x80-\xff]+")


def parse_entity_tag(text: str) -> EntityTag | None:
    """One entity tag. ``W/`` is case-sensitive (RFC 9110 §8.8.3); an unquoted tag is read
    as if it were quoted (a common origin mistake that can only widen a match to itself)."""
    text = text.strip(" \t")
    weak = text.startswith("W/")
    opaque = text[2:] if weak else text
    if _ETAGC.fullmatch(opaque):
        return EntityTag(opaque, weak)
    if not weak and _UNQUOTED.fullmatch(opaque) and not opaque.startswith("W\\"):
        return EntityTag(f'"{opaque}"')
    return None


def entity_tags(value: str) -> Iterator[EntityTag]:
    """The valid entity tags of an ``If-None-Match``/``If-Match`` list (bad members skipped)."""
    for member in split_list(value):
        tag = parse_entity_tag(member)
        if tag is not None:
            yield tag


def response_etag(headers: Headers) -> EntityTag | None:
    """The response's ``ETag`` (a singleton: repeated or invalid means none)."""
    lines = field_lines(headers, "etag")
    return parse_entity_tag(lines[0]) if len(lines) == 1 else None
