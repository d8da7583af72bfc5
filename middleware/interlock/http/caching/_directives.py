"""Cache directives: ``Cache-Control`` (RFC 9111 §5.2), targeted fields such as
``CDN-Cache-Control`` (RFC 9213) and the RFC 5861 extensions, parsed into plain dataclasses.

Parsing follows the RFC where it speaks and errs towards caching less where it leaves a
choice:

- names are case-insensitive; unknown extensions are ignored (§5.2.3);
- a repeated directive keeps its first occurrence (§4.2.1 allows "the first occurrence");
- arguments may be tokens or quoted strings (§5.2: recipients accept both forms);
- a ``max-age``/``s-maxage`` that is not a delta-seconds (negative, decimal, alphabetic,
  single-quoted, spaces around ``=``) makes the response stale (§4.2.1: "consider responses
  that have invalid freshness information ... to be stale"); values above 2^31 read as 2^31
  (§1.2.2); an invalid ``stale-*`` window or request directive is ignored;
- a restrictive directive (``no-store``, ``no-cache``, ``private``, ``must-revalidate``,
  ``proxy-revalidate``) applies whatever follows it; ``public`` and ``immutable`` with an
  argument are ignored;
- conflicting directives: the most restrictive wins (§4.2.1), e.g. ``public, private``.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from interlock.http.caching._structured import Member, Token, parse_dictionary
from interlock.http.caching._syntax import (
    DELTA_SECONDS_MAX,
    Headers,
    delta_seconds,
    field_lines,
    field_value,
    is_token,
    split_list,
    unquote,
)

_TCHARS = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
# token [ "=" ( token / quoted-string ) ], RFC 9111 §5.2
_ELEMENT = re.compile(rf"""({_TCHARS})(?:=({_TCHARS}|"(?:[^"\\]|\\.)*"))?""")
_LEADING_TOKEN = re.compile(_TCHARS)
# The argument recorded for an element that starts with a name but is not well-formed.
MALFORMED = "\x00malformed"


def parse_directives(lines: list[str]) -> dict[str, str | None]:
    """``{name: argument}`` of ``Cache-Control`` lines: names lower-cased, first occurrence
    kept, quoted arguments unquoted, ``None`` for no argument, :data:`MALFORMED` for an
    element that starts with a name but does not follow ``token [ "=" argument ]``."""
    out: dict[str, str | None] = {}
    for line in lines:
        for element in split_list(line):
            match = _ELEMENT.fullmatch(element)
            if match is not None:
                name, argument = match.group(1).lower(), match.group(2)
                if argument is not None and argument.startswith('"'):
                    argument = unquote(argument)
                out.setdefault(name, argument)
            elif leading := _LEADING_TOKEN.match(element):
                out.setdefault(leading.group().lower(), MALFORMED)
    return out


def _lifetime(args: dict[str, str | None], name: str) -> int | None:
    """A freshness directive: absent → ``None``; present but invalid → ``0`` (stale)."""
    if name not in args:
        return None
    argument = args[name]
    value = delta_seconds(argument) if argument is not None else None
    return 0 if value is None else value


def _window(args: dict[str, str | None], name: str) -> int | None:
    """An optional window: absent or invalid → ``None``."""
    argument = args.get(name)
    return delta_seconds(argument) if argument is not None else None


def _field_names(argument: str | None) -> frozenset[str] | None:
    """The field names of a qualified ``no-cache``/``private``; ``None`` when unqualified
    or unreadable (then the directive applies to the whole response)."""
    if argument is None or argument == MALFORMED:
        return None
    names = [name.lower() for name in split_list(argument)]
    if not names or not all(is_token(name) for name in names):
        return None
    return frozenset(names)


@dataclass(frozen=True, slots=True)
class ResponseDirectives:
    """The response's cache directives (RFC 9111 §5.2.2, RFC 5861, RFC 9213).

    Attributes:
        max_age, s_maxage: seconds, ``None`` when absent (``0`` when invalid).
        no_cache, private: the unqualified directives (whole response).
        no_cache_fields, private_fields: the qualified forms' field names (lower-case).
        stale_while_revalidate, stale_if_error: RFC 5861 windows in seconds, or ``None``.
        targeted: the directives came from a targeted field (``CDN-Cache-Control``); then
            ``Cache-Control`` and ``Expires`` are ignored (RFC 9213 §2.2).
    """

    max_age: int | None = None
    s_maxage: int | None = None
    no_store: bool = False
    no_cache: bool = False
    no_cache_fields: frozenset[str] = frozenset()
    private: bool = False
    private_fields: frozenset[str] = frozenset()
    public: bool = False
    must_revalidate: bool = False
    proxy_revalidate: bool = False
    must_understand: bool = False
    immutable: bool = False
    no_transform: bool = False
    stale_while_revalidate: int | None = None
    stale_if_error: int | None = None
    targeted: bool = False

    @property
    def explicit_lifetime(self) -> bool:
        return self.max_age is not None or self.s_maxage is not None


def cache_control(lines: list[str]) -> ResponseDirectives:
    """The response directives of ``Cache-Control`` lines."""
    args = parse_directives(lines)
    no_cache_fields = _field_names(args.get("no-cache")) if "no-cache" in args else None
    private_fields = _field_names(args.get("private")) if "private" in args else None
    return ResponseDirectives(
        max_age=_lifetime(args, "max-age"),
        s_maxage=_lifetime(args, "s-maxage"),
        no_store="no-store" in args,
        no_cache="no-cache" in args and no_cache_fields is None,
        no_cache_fields=no_cache_fields or frozenset(),
        private="private" in args and private_fields is None,
        private_fields=private_fields or frozenset(),
        public="public" in args and args["public"] is None,
        must_revalidate="must-revalidate" in args,
        proxy_revalidate="proxy-revalidate" in args,
        must_understand="must-understand" in args,
        immutable="immutable" in args and args["immutable"] is None,
        no_transform="no-transform" in args,
        stale_while_revalidate=_window(args, "stale-while-revalidate"),
        stale_if_error=_window(args, "stale-if-error"),
    )


_TARGETED_SECONDS = ("max-age", "s-maxage", "stale-while-revalidate", "stale-if-error")
_TARGETED_FLAGS = (
    "no-store", "public", "must-revalidate", "proxy-revalidate", "must-understand",
    "immutable", "no-transform",
)  # fmt: skip


class _WrongType(Exception):
    pass


def targeted(members: dict[str, Member]) -> ResponseDirectives:
    """Directives of a targeted field's Dictionary (RFC 9213 §2.1): integers for seconds,
    Booleans for flags, ``True`` or an Inner List of field names for ``no-cache``/
    ``private``. A known directive of another type raises :class:`ValueError`."""

    def seconds(name: str) -> int | None:
        if name not in members:
            return None
        value = members[name][0]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(name)
        return min(value, DELTA_SECONDS_MAX)

    def flag(name: str) -> bool:
        if name not in members:
            return False
        value = members[name][0]
        if not isinstance(value, bool):
            raise ValueError(name)
        return value

    def qualified(name: str) -> tuple[bool, frozenset[str]]:
        if name not in members:
            return False, frozenset()
        value = members[name][0]
        if isinstance(value, bool):
            return value, frozenset()
        if isinstance(value, list) and value:
            names = [item for item, _ in value if isinstance(item, str | Token)]
            if len(names) == len(value) and all(is_token(n) for n in names):
                return False, frozenset(n.lower() for n in names)
        raise ValueError(name)

    no_cache, no_cache_fields = qualified("no-cache")
    private, private_fields = qualified("private")
    flags = {name: flag(name) for name in _TARGETED_FLAGS}
    times = {name: seconds(name) for name in _TARGETED_SECONDS}
    return ResponseDirectives(
        max_age=times["max-age"],
        s_maxage=times["s-maxage"],
        no_store=flags["no-store"],
        no_cache=no_cache,
        no_cache_fields=no_cache_fields,
        private=private,
        private_fields=private_fields,
        public=flags["public"],
        must_revalidate=flags["must-revalidate"],
        proxy_revalidate=flags["proxy-revalidate"],
        must_understand=flags["must-understand"],
        immutable=flags["immutable"],
        no_transform=flags["no-transform"],
        stale_while_revalidate=times["stale-while-revalidate"],
        stale_if_error=times["stale-if-error"],
        targeted=True,
    )


def response_directives(headers: Headers, targets: tuple[str, ...] = ()) -> ResponseDirectives:
    """The directives a cache obeying the targeted fields ``targets`` (in order, e.g.
    ``("cdn-cache-control",)``) applies: the first target with a valid, non-empty
    Dictionary, else ``Cache-Control`` (RFC 9213 §2.2).

    A stored response's fields (a tuple) are parsed once: the result is immutable and
    every hit of the entry asks again."""
    if isinstance(headers, tuple):
        return _stored_directives(headers, targets)
    return _directives(headers, targets)


@functools.lru_cache(maxsize=4096)
def _stored_directives(
    headers: tuple[tuple[str, str], ...], targets: tuple[str, ...]
) -> ResponseDirectives:
    return _directives(headers, targets)


def _directives(headers: Headers, targets: tuple[str, ...]) -> ResponseDirectives:
    for name in targets:
        members = parse_dictionary(headers, name)
        if members is None:
            continue
        try:
            return targeted(members)
        except ValueError:
            continue  # a known directive of the wrong type: the field is ignored
    return cache_control(field_lines(headers, "cache-control"))


@dataclass(frozen=True, slots=True)
class RequestDirectives:
    """The request's cache directives (RFC 9111 §5.2.1, RFC 5861 §4).

    Attributes:
        max_age, min_fresh: seconds, ``None`` when absent or invalid.
        max_stale: seconds of staleness accepted; ``MAX_STALE_ANY`` for a bare
            ``max-stale``; ``None`` when absent or invalid.
        no_cache: also set by ``Pragma: no-cache`` without ``Cache-Control`` (§5.4).
    """

    max_age: int | None = None
    max_stale: int | None = None
    min_fresh: int | None = None
    no_cache: bool = False
    no_store: bool = False
    no_transform: bool = False
    only_if_cached: bool = False
    stale_if_error: int | None = None


MAX_STALE_ANY = DELTA_SECONDS_MAX


NO_REQUEST_DIRECTIVES = RequestDirectives()
_REQUEST_FIELDS = frozenset(("cache-control", "pragma"))


def request_directives(headers: Headers) -> RequestDirectives:
    """The directives of a request's ``Cache-Control`` (and ``Pragma``, §5.4)."""
    if not any(name.lower() in _REQUEST_FIELDS for name, _ in headers):
        return NO_REQUEST_DIRECTIVES  # most requests: no directive at all
    lines = field_lines(headers, "cache-control")
    args = parse_directives(lines)
    max_stale: int | None = None
    if "max-stale" in args:
        argument = args["max-stale"]
        max_stale = MAX_STALE_ANY if argument is None else delta_seconds(argument)
    pragma = field_value(headers, "pragma") or ""
    return RequestDirectives(
        max_age=_window(args, "max-age"),
        max_stale=max_stale,
        min_fresh=_window(args, "min-fresh"),
        no_cache="no-cache" in args
        or (not lines and "no-cache" in (m.lower() for m in split_list(pragma))),
        no_store="no-store" in args,
        no_transform="no-transform" in args,
        only_if_cached="only-if-cached" in args,
        stale_if_error=_window(args, "stale-if-error"),
    )
