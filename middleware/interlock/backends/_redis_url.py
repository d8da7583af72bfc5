"""Redis URLs (``redis://``, ``rediss://``, ``redis+cluster://``, ``rediss+cluster://``).

One strict parser for the URLs that name Redis nodes, shared by the settings (which reject a
bad URL at construction), the backend (which connects to exactly the parts parsed here) and
``interlock check``. Every malformed URL raises :class:`~interlock.errors.ConfigError` naming
the bad part and a valid form, with the URL's passwords masked; nothing is left to
redis-py's lenient reading (which takes ``/abc`` for db 0). Sentinel URLs are
:mod:`interlock.backends._sentinel_url`, built on the
same helpers (:func:`split_url`, :func:`parse_address`, :func:`query_options`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from interlock.errors import ConfigError

REDIS_EXAMPLE = "redis://[user:password@]host:6379/0"
CLUSTER_EXAMPLE = "redis+cluster://[user:password@]h1:6379,h2:6379"
DEFAULT_PORT = 6379
# options of a redis:// or rediss:// query: TLS settings of every connection (redis-py's names)
TLS_OPTIONS = ("ssl_ca_certs", "ssl_cert_reqs", "ssl_certfile", "ssl_keyfile")
CERT_REQS = ("none", "optional", "required")
# what an option of redis-py's URLs is called in interlock, for the message of a refused one
_ELSEWHERE = {
    "db": "the URL's path (/0)",
    "socket_timeout": "socket_timeout= or INTERLOCK_SOCKET_TIMEOUT",
    "socket_connect_timeout": "connect_timeout= or INTERLOCK_CONNECT_TIMEOUT",
    "timeout": "socket_timeout= or INTERLOCK_SOCKET_TIMEOUT",
    "password": "the URL's user info (redis://user:password@host)",
    "username": "the URL's user info (redis://user:password@host)",
}
_HOSTNAME = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,252})$")
_IPV6 = re.compile(r"^\[[0-9A-Fa-f:.]{2,45}(?:%[A-Za-z0-9_.-]{1,64})?\]$")
_DIGITS = re.compile(r"^[0-9]{1,10}$")


def redact_url(url: str) -> str:
    """``url`` with its passwords masked, for messages, logs and reprs.

    Masks the password of the user info (``user:***@``; the user info ends at the last ``@``
    before the query) and the value of every query option whose name ends in ``password``
    (``?sentinel_password=***``). The rest is kept as written.
    """
    scheme, sep, rest = url.partition("://")
    head, qmark, query = rest.partition("?")
    at = head.rfind("@")
    if at >= 0:
        user, colon, _ = head[:at].partition(":")
        head = f"{user}{':***' if colon else ''}{head[at:]}"
    if query:
        items = []
        for item in query.split("&"):
            name, eq, _ = item.partition("=")
            secret = eq and unquote(name).lower().endswith("password")
            items.append(f"{name}=***" if secret else item)
        query = "&".join(items)
    return f"{scheme}{sep}{head}{qmark}{query}"


def split_url(url: str) -> tuple[str, str, str, str]:
    """``(scheme, netloc, path, query)`` of ``scheme://netloc/path?query``, as written.

    Raises:
        ConfigError: when the URL has a ``#`` fragment (an unencoded ``#`` in a password).
    """
    scheme, _, rest = url.partition("://")
    if "#" in rest:
        raise ConfigError(
            f"backend URL {redact_url(url)!r} has a '#' fragment; percent-encode '#' in passwords "
            "as %23"
        )
    rest, _, query = rest.partition("?")
    at = rest.rfind("@")  # the user info ends at the last '@' (a password may hold '/')
    slash = rest.find("/", at + 1)
    netloc, path = (rest, "") if slash < 0 else (rest[:slash], rest[slash:])
    return scheme, netloc, path, query


def split_userinfo(netloc: str) -> tuple[str | None, str | None, str]:
    """``(username, password, hosts)`` of ``[user[:password]@]hosts``, percent-decoded."""
    if "@" not in netloc:
        return None, None, netloc
    userinfo, hosts = netloc.rsplit("@", 1)
    user, colon, secret = userinfo.partition(":")
    return unquote(user) or None, (unquote(secret) or None) if colon else None, hosts


def parse_address(
    item: str, shown: str, what: str, example: str, *, port_required: bool
) -> tuple[str, int]:
    """``(host, port)`` of ``host[:port]`` or ``[v6]:port``; hostnames are lower-cased.

    Raises:
        ConfigError: naming ``what`` (e.g. ``"host"``, ``"sentinel address"``) and the fix.
    """
    if item.startswith("["):
        end = item.find("]")
        host, rest = item[: end + 1], item[end + 1 :]
        if end < 0 or (rest and not rest.startswith(":")):
            host, rest = item, ""
        port_text = rest[1:] if rest else None
    else:
        host, colon, port_text_raw = item.partition(":")
        port_text = port_text_raw if colon else None
    if not host:
        raise ConfigError(f"backend URL {shown!r} names no host in {item!r}; e.g. {example!r}")
    if not (_HOSTNAME.match(host) or _IPV6.match(host)):
        raise ConfigError(
            f"{what} {host!r} in {shown!r} is not a host name or IP address; write a DNS name "
            f"(ASCII: punycode for others), an IPv4 address or [IPv6], e.g. {example!r}"
        )
    if port_text is None:
        if port_required:
            raise ConfigError(
                f"{what} {item!r} in {shown!r} has no port; write host:port, e.g. {example!r}"
            )
        port = DEFAULT_PORT
    else:
        if not _DIGITS.match(port_text) or not 0 < int(port_text) < 65536:
            raise ConfigError(
                f"port {port_text!r} of {what} {host!r} in {shown!r} is invalid; a port is a "
                f"number from 1 to 65535, e.g. {example!r}"
            )
        port = int(port_text)
    return host.lower() if host[0] != "[" else host[1:-1].lower(), port


def query_options(
    query: str, shown: str, valid: tuple[str, ...], elsewhere: dict[str, str] | None = None
) -> dict[str, str]:
    """The percent-decoded ``name=value`` options of a URL's query, each known and set once.

    ``elsewhere`` maps options that are set in another way to where (for the message).
    """
    pairs = []
    for item in query.split("&"):
        if item:
            name, _, value = item.partition("=")
            pairs.append((unquote(name), unquote(value)))
    for name, _ in pairs:
        if elsewhere and name in elsewhere:
            raise ConfigError(
                f"query option {name} in {shown!r} is not read from the query here; set it in "
                f"{elsewhere[name]}"
            )
    unknown = sorted({name for name, _ in pairs if name not in valid})
    if unknown:
        listed = ", ".join(valid) if valid else "none"
        raise ConfigError(
            f"unknown query option(s) {', '.join(unknown)} in {shown!r}; valid options are "
            f"{listed}"
        )
    options: dict[str, str] = {}
    for name, value in pairs:
        if name in options:
            raise ConfigError(f"query option {name} is given twice in {shown!r}; keep one")
        if not value:
            raise ConfigError(
                f"query option {name} has no value in {shown!r}; write {name}=<value> or "
                "leave the option out"
            )
        options[name] = value
    return options


def tls_options(
    options: dict[str, str], tls: bool, shown: str, fix: str
) -> tuple[tuple[str, str], ...]:
    """The ``ssl_*`` options, checked; ``fix`` says how to turn TLS on when it is off."""
    given = {name: options[name] for name in TLS_OPTIONS if name in options}
    if given and not tls:
        raise ConfigError(
            f"{', '.join(given)} in {shown!r} would have no effect: no connection uses TLS; "
            f"{fix}"
        )
    reqs = given.get("ssl_cert_reqs")
    if reqs is not None and reqs.lower() not in CERT_REQS:
        raise ConfigError(
            f"ssl_cert_reqs={reqs!r} in {shown!r} is invalid; use one of {', '.join(CERT_REQS)}"
        )
    if reqs is not None:
        given["ssl_cert_reqs"] = reqs.lower()
    if "ssl_keyfile" in given and "ssl_certfile" not in given:
        raise ConfigError(
            f"ssl_keyfile in {shown!r} needs ssl_certfile (the client certificate it belongs to)"
        )
    return tuple(given.items())


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """The parts of a ``redis://`` or ``rediss://`` URL (one node) or a cluster URL.

    ``nodes`` holds one ``(host, port)`` for a single node, the startup nodes of a cluster.
    ``tls`` holds the ``ssl_*`` options of every TLS connection. The password is left out of
    the repr.
    """

    scheme: str
    nodes: tuple[tuple[str, int], ...]
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: tuple[tuple[str, str], ...] = ()

    @property
    def ssl(self) -> bool:
        return self.scheme.startswith("rediss")

    @property
    def cluster(self) -> bool:
        return self.scheme.endswith("+cluster")

    def auth_options(self) -> dict[str, Any]:
        """redis-py connection options for credentials and TLS (no host, port or db)."""
        options: dict[str, Any] = {}
        if self.username is not None:
            options["username"] = self.username
        if self.password is not None:
            options["password"] = self.password
        if self.ssl:
            options.update(ssl=True, **dict(self.tls))
        return options

    def node_options(self) -> dict[str, Any]:
        """redis-py ``Redis(...)`` options of a single node: host, port, db, auth, TLS."""
        host, port = self.nodes[0]
        return {"host": host, "port": port, "db": self.db, **self.auth_options()}


def parse_redis_url(url: str) -> RedisTarget:
    """Split ``redis[s]://[user:password@]host[:port][/db][?ssl_...]`` or a cluster URL.

    A single node: ``port`` defaults to 6379, ``db`` (a number ≥ 0 in the path) to 0. A
    cluster, ``redis[s]+cluster://[user:password@]h1:p1[,h2:p2...][/]``: every node names its
    port; a cluster has db 0 only. The query may carry the TLS options ``ssl_ca_certs``,
    ``ssl_certfile``, ``ssl_keyfile`` and ``ssl_cert_reqs`` with a ``rediss`` scheme.

    Raises:
        ConfigError: naming the bad part and a valid URL; passwords are masked.
    """
    shown = redact_url(url)
    scheme, netloc, path, query = split_url(url)
    if scheme not in ("redis", "rediss", "redis+cluster", "rediss+cluster"):
        raise ConfigError(f"backend URL {shown!r} is not a redis:// or redis+cluster:// URL")
    cluster = scheme.endswith("+cluster")
    example = CLUSTER_EXAMPLE if cluster else REDIS_EXAMPLE
    username, password, hosts = split_userinfo(netloc)
    if not hosts:
        raise ConfigError(f"backend URL {shown!r} names no host; e.g. {example!r}")
    if cluster:
        nodes = tuple(
            parse_address(item, shown, "cluster node", example, port_required=True)
            for item in hosts.split(",")
        )
    else:
        if "," in hosts:
            raise ConfigError(
                f"backend URL {shown!r} names several hosts; a redis:// URL names one node: use "
                f"{CLUSTER_EXAMPLE!r} for a cluster or redis+sentinel:// for Sentinel"
            )
        nodes = (parse_address(hosts, shown, "host", example, port_required=False),)
    db = 0
    if path not in ("", "/"):
        number = path[1:]
        if cluster:
            raise ConfigError(
                f"backend URL {shown!r} has a path {path!r}; a Redis Cluster has db 0 only, "
                f"so a cluster URL has none, e.g. {CLUSTER_EXAMPLE!r}"
            )
        if not _DIGITS.match(number):
            raise ConfigError(
                f"database {unquote(number)!r} in {shown!r} is not a number; the path is the "
                f"db number (0 to the server's `databases` - 1, 0 by default), e.g. "
                f"{REDIS_EXAMPLE!r}"
            )
        db = int(number)
    options = query_options(query, shown, TLS_OPTIONS, _ELSEWHERE)
    fix = f"use {'rediss+cluster' if cluster else 'rediss'}:// for TLS"
    return RedisTarget(
        scheme=scheme,
        nodes=nodes,
        db=db,
        username=username,
        password=password,
        tls=tls_options(options, scheme.startswith("rediss"), shown, fix),
    )
