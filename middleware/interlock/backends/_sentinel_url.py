"""Sentinel URLs (``redis+sentinel://``, ``rediss+sentinel://``).

A Sentinel URL carries two sets of credentials: the user info is for the master and its
replicas, the ``sentinel_username``/``sentinel_password`` query options for the sentinels,
which redis-py asks for the master's address before every (re)connect. Messages built from a
URL show it through :func:`~interlock.backends._redis_url.redact_url` (re-exported here).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from interlock.backends._redis_url import (
    parse_address,
    query_options,
    redact_url,
    split_url,
    split_userinfo,
    tls_options,
)
from interlock.errors import ConfigError

__all__ = ["SENTINEL_OPTIONS", "SentinelTarget", "parse_sentinel_url", "redact_url"]

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
_DB = re.compile(r"^[0-9]{1,10}$")
_BOOLEANS = {"true": True, "yes": True, "on": True, "1": True,
             "false": False, "no": False, "off": False, "0": False}  # fmt: skip


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


def _boolean(name: str, value: str, shown: str) -> bool:
    try:
        return _BOOLEANS[value.lower()]
    except KeyError:
        raise ConfigError(
            f"{name}={value!r} in {shown!r} is not a boolean; write {name}=true or {name}=false"
        ) from None


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
    scheme, netloc, raw_path, query = split_url(url)
    username, password, hosts = split_userinfo(netloc)
    sentinels = tuple(
        parse_address(item, shown, "sentinel address", _SENTINEL_EXAMPLE, port_required=True)
        for item in hosts.split(",")
    )
    path = [unquote(p) for p in raw_path.split("/")[1:]]
    if not path or not path[0]:
        raise ConfigError(
            f"backend URL {shown!r} names no Sentinel service (the master's name in "
            f"`sentinel monitor <name> ...`); e.g. {_SENTINEL_EXAMPLE!r}"
        )
    if len(path) > 2 or (len(path) == 2 and path[1] and not _DB.match(path[1])):
        raise ConfigError(
            f"backend URL {shown!r} has an invalid path {raw_path!r}; write /service_name or "
            f"/service_name/db with a numeric db, e.g. {_SENTINEL_EXAMPLE!r}"
        )
    options = query_options(query, shown, SENTINEL_OPTIONS)
    ssl = scheme.startswith("rediss")
    sentinel_ssl = ssl
    if "sentinel_ssl" in options:
        sentinel_ssl = _boolean("sentinel_ssl", options["sentinel_ssl"], shown)
    tls_fix = "use rediss+sentinel:// (TLS to the master and the sentinels) or sentinel_ssl=true"
    return SentinelTarget(
        sentinels=sentinels,
        service=path[0],
        db=int(path[1]) if len(path) == 2 and path[1] else 0,
        username=username,
        password=password,
        ssl=ssl,
        sentinel_username=options.get("sentinel_username"),
        sentinel_password=options.get("sentinel_password"),
        sentinel_ssl=sentinel_ssl,
        tls=tls_options(options, ssl or sentinel_ssl, shown, tls_fix),
    )
