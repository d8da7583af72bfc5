"""The primary cache key (RFC 9111 §2: the target URI) and invalidation (§4.4).

:func:`effective_authority` decides the authority that goes into the key from the
request's ``Host`` and the trusted-host patterns, so a forged ``Host`` cannot reach
another host's entries and an unknown one never reaches the cache. :func:`target_key`
is the canonical absolute URI (scheme, authority, path, query); :func:`invalidation_keys`
the keys a successful unsafe request invalidates.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit

from interlock.http.caching._syntax import Headers, field_lines

SAFE_METHODS = frozenset(("GET", "HEAD", "OPTIONS", "TRACE"))
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~%!$&'()*+,;=]+)(?::([0-9]{0,5}))?")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def _host_allowed(host: str, patterns: Sequence[str]) -> bool:
    for pattern in patterns:
        pattern = pattern.strip().lower().rstrip(".")
        if pattern == "*" or pattern == host:
            return True
        if pattern.startswith("*.") and host.endswith(pattern[1:]):
            return True  # Starlette's form: subdomains only
        if pattern.startswith(".") and (host == pattern[1:] or host.endswith(pattern)):
            return True  # Django's form: the domain and its subdomains
    return False


def effective_authority(
    host: str | None,
    scheme: str,
    trusted_hosts: Sequence[str] | None,
    server: tuple[str, int | None] | None = None,
) -> str | None:
    """The normalised authority of the request (RFC 9110 §4.2.3, §7.2), or ``None`` when
    it is malformed or its host is not trusted (then the request bypasses the cache).

    Args:
        host: the ``Host`` field (``:authority`` for HTTP/2), ``None`` when absent.
        scheme: the request's scheme (``http``/``https``), after any trusted proxy headers.
        trusted_hosts: host patterns the app serves (``"example.com"``, ``"*.example.com"``
            subdomains, ``".example.com"`` domain and subdomains, ``"*"``); ``None``: any
            well-formed host (each host gets entries of its own, so none can poison another).
        server: the server's ``(host, port)`` for requests without ``Host`` (HTTP/1.0).

    Hosts are lower-cased, one trailing dot dropped, the scheme's default port omitted.
    """
    if host is None or not host.strip():
        if server is None:
            return None
        host = server[0] if server[1] is None else f"{server[0]}:{server[1]}"
    match = _HOST.fullmatch(host.strip())
    if match is None:
        return None
    name, port = match.group(1).lower(), match.group(2)
    if not name.startswith("["):
        name = name.removesuffix(".")
    if not name or (port is not None and (not port or int(port) > 65535)):
        return None
    if trusted_hosts is not None and not _host_allowed(name, trusted_hosts):
        return None
    if port is not None and int(port) != DEFAULT_PORTS.get(scheme.lower()):
        return f"{name}:{int(port)}"
    return name


def _path(path: str) -> str:
    """RFC 3986 §6.2.2: unreserved characters decoded, other escapes upper-cased."""

    def fix(match: re.Match[str]) -> str:
        char = chr(int(match.group(1), 16))
        return char if char in _UNRESERVED else "%" + match.group(1).upper()

    return _ESCAPE.sub(fix, path) or "/"


def normalise_query(query: str, ignore: Iterable[str] = ()) -> str:
    """The query decoded, sorted and re-encoded, ``ignore`` parameters dropped."""
    if not query:
        return ""
    skip = frozenset(ignore)
    pairs = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k not in skip]
    return urlencode(sorted(pairs))


def target_key(
    scheme: str, authority: str, path: str, query: str, ignore_query: Iterable[str] = ()
) -> str:
    """The canonical target URI, the primary cache key (§2): equal for equivalent URIs."""
    normalised = normalise_query(query, ignore_query)
    return f"{scheme.lower()}://{authority}{_path(path)}" + (f"?{normalised}" if normalised else "")


def _origin(scheme: str, netloc: str) -> tuple[str, str | None]:
    return scheme.lower(), effective_authority(netloc, scheme, None)


def invalidation_keys(
    method: str,
    status: int,
    target_uri: str,
    response_headers: Headers,
    ignore_query: Iterable[str] = (),
) -> list[str]:
    """The keys a response to an unsafe request invalidates (§4.4): none for a safe
    method or an error status (not 2xx/3xx); else the target URI and the URI-references
    of ``Location`` and ``Content-Location`` resolved against it, when of the same origin
    (scheme, host and port: a cache must not invalidate another origin's responses)."""
    if method.upper() in SAFE_METHODS or not 200 <= status < 400:
        return []
    ignore = tuple(ignore_query)
    base = urlsplit(target_uri)
    origin = _origin(base.scheme, base.netloc)
    keys: list[str] = []
    uris = [target_uri]
    for name in ("location", "content-location"):
        lines = field_lines(response_headers, name)
        if len(lines) == 1 and lines[0].strip():
            uris.append(urljoin(target_uri, lines[0].strip()))
    for uri in uris:
        try:
            parts = urlsplit(uri)
        except ValueError:
            continue
        if _origin(parts.scheme, parts.netloc) != origin or origin[1] is None:
            continue
        key = target_key(parts.scheme, origin[1], parts.path, parts.query, ignore)
        if key not in keys:
            keys.append(key)
    return keys
