"""Sentinel URLs (``redis+sentinel://``, ``rediss+sentinel://``) and masking URL passwords.

A Sentinel URL carries two sets of credentials: the user info is for the master and its
replicas, the ``sentinel_username``/``sentinel_password`` query options for the sentinels,
which redis-py asks for the master's address before every (re)connect. Messages built from a
URL show it through :func:`redact_url`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from interlock.errors import ConfigError

_SENTINEL_EXAMPLE = (
    "redis+sentinel://[user:password@]h1:26379,h2:26379/mymaster[/0]"
    "[?sentinel_password=...&ssl_ca_certs=...]"
)
# a Sentinel URL's query options; ssl_* go to every TLS connection (redis-py's names)
SENTINEL_OPTIONS = (
    "sentinel_password",
    "sentinel_ssl",
    "sentinel_username",
    "ssl_ca_certs",
    "ssl_cert_reqs",
    "ssl_certfile",
    "ssl_keyfile",
)
_TLS_OPTIONS = ("ssl_ca_certs", "ssl_cert_reqs", "ssl_certfile", "ssl_keyfile")
_CERT_REQS = ("none", "optional", "required")
_BOOLEANS = {"true": True, "yes": True, "on": True, "1": True,
             "false": False, "no": False, "off": False, "0": False}  # fmt: skip


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


@dataclass(frozen=True, slots=True)
class SentinelTarget:
    """The parts of a ``redis+sentinel://`` or ``rediss+sentinel://`` URL.

    ``username``/``password`` (the URL's user info) are for the master and replicas;
    ``sentinel_username``/``sentinel_password`` (query options) for the sentinels. ``ssl``
    is TLS to the master (the ``rediss+`` scheme), ``sentinel_ssl`` TLS to the sentinels (the
    scheme unless ``sentinel_ssl=`` says otherwise); ``tls`` holds the ``ssl_*`` options that
    every TLS connection gets. Passwords are left out of the repr.
    """

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ssl: bool = False
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)
    sentinel_ssl: bool = False
    tls: tuple[tuple[str, str], ...] = ()

    def master_options(self) -> dict[str, Any]:
        """redis-py connection options for the master and replicas (db, auth, TLS)."""
        options: dict[str, Any] = {
            "db": self.db, "username": self.username, "password": self.password,
        }  # fmt: skip
        if self.ssl:
            options.update(ssl=True, **dict(self.tls))
        return options

    def sentinel_options(self) -> dict[str, Any]:
        """redis-py connection options for the sentinels (auth, TLS)."""
        options: dict[str, Any] = {}
        if self.sentinel_username is not None:
            options["username"] = self.sentinel_username
        if self.sentinel_password is not None:
            options["password"] = self.sentinel_password
        if self.sentinel_ssl:
            options.update(ssl=True, **dict(self.tls))
        return options


def _query_options(query: str, shown: str) -> dict[str, str]:
    """The percent-decoded ``name=value`` options of a Sentinel URL's query."""
    pairs = []
    for item in query.split("&"):
        if item:
            name, _, value = item.partition("=")
            pairs.append((unquote(name), unquote(value)))
    unknown = sorted({name for name, _ in pairs if name not in SENTINEL_OPTIONS})
    if unknown:
        raise ConfigError(
            f"unknown query option(s) {', '.join(unknown)} in {shown!r}; valid options are "
            f"{', '.join(SENTINEL_OPTIONS)}"
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


def _boolean(name: str, value: str, shown: str) -> bool:
    try:
        return _BOOLEANS[value.lower()]
    except KeyError:
        raise ConfigError(
            f"{name}={value!r} in {shown!r} is not a boolean; write {name}=true or {name}=false"
        ) from None


def _tls_options(options: dict[str, str], tls: bool, shown: str) -> tuple[tuple[str, str], ...]:
    given = {name: options[name] for name in _TLS_OPTIONS if name in options}
    if given and not tls:
        raise ConfigError(
            f"{', '.join(given)} in {shown!r} would have no effect: no connection uses TLS; "
            "use rediss+sentinel:// (TLS to the master and the sentinels) or sentinel_ssl=true"
        )
    reqs = given.get("ssl_cert_reqs")
    if reqs is not None and reqs.lower() not in _CERT_REQS:
        raise ConfigError(
            f"ssl_cert_reqs={reqs!r} in {shown!r} is invalid; use one of {', '.join(_CERT_REQS)}"
        )
    if reqs is not None:
        given["ssl_cert_reqs"] = reqs.lower()
    if "ssl_keyfile" in given and "ssl_certfile" not in given:
        raise ConfigError(
            f"ssl_keyfile in {shown!r} needs ssl_certfile (the client certificate it belongs to)"
        )
    return tuple(given.items())


def parse_sentinel_url(url: str) -> SentinelTarget:
    """Split ``redis+sentinel://[user:password@]h1:p1,h2:p2/service_name[/db][?options]``.

    Options (percent-encoded values): ``sentinel_username``, ``sentinel_password`` (the
    sentinels' credentials; none by default), ``sentinel_ssl`` (TLS to the sentinels; by
    default as the scheme: ``rediss+sentinel://`` is TLS to master and sentinels), and
    ``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile``, ``ssl_cert_reqs`` for every TLS
    connection.

    Raises:
        ConfigError: naming the bad part and showing a valid URL; passwords are masked.
    """
    shown = redact_url(url)
    parts = urlsplit(url)
    if parts.fragment:
        raise ConfigError(
            f"backend URL {shown!r} has a '#' fragment; percent-encode '#' in passwords as %23"
        )
    netloc = parts.netloc
    username = password = None
    if "@" in netloc:
        userinfo, netloc = netloc.rsplit("@", 1)
        user, _, secret = userinfo.partition(":")
        username, password = unquote(user) or None, unquote(secret) or None
    sentinels = []
    for item in netloc.split(","):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(
                f"sentinel address {item!r} in {shown!r} is invalid; write host:port"
                f"[,host:port...], e.g. {_SENTINEL_EXAMPLE!r}"
            )
        sentinels.append((host.strip("[]"), int(port)))
    path = [unquote(p) for p in parts.path.split("/")[1:]]
    if not path or not path[0]:
        raise ConfigError(
            f"backend URL {shown!r} names no Sentinel service (the master's name in "
            f"`sentinel monitor <name> ...`); e.g. {_SENTINEL_EXAMPLE!r}"
        )
    if len(path) > 2 or (len(path) == 2 and path[1] and not path[1].isdigit()):
        raise ConfigError(
            f"backend URL {shown!r} has an invalid path {parts.path!r}; write /service_name or "
            f"/service_name/db with a numeric db, e.g. {_SENTINEL_EXAMPLE!r}"
        )
    options = _query_options(parts.query, shown)
    ssl = parts.scheme.startswith("rediss")
    sentinel_ssl = ssl
    if "sentinel_ssl" in options:
        sentinel_ssl = _boolean("sentinel_ssl", options["sentinel_ssl"], shown)
    return SentinelTarget(
        sentinels=tuple(sentinels),
        service=path[0],
        db=int(path[1]) if len(path) == 2 and path[1] else 0,
        username=username,
        password=password,
        ssl=ssl,
        sentinel_username=options.get("sentinel_username"),
        sentinel_password=options.get("sentinel_password"),
        sentinel_ssl=sentinel_ssl,
        tls=_tls_options(options, ssl or sentinel_ssl, shown),
    )
