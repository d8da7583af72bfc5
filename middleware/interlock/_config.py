"""Settings, from constructor arguments or ``INTERLOCK_*`` environment variables.

Arguments win over the environment; the environment wins over defaults. Every value is
validated here, once, at construction, with an error that names the bad value and the fix.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields

from interlock.backends._redis_url import parse_redis_url, redact_url
from interlock.backends._sentinel_url import parse_sentinel_url
from interlock.errors import ConfigError

SCHEMES = (
    "mem",
    "redis",
    "rediss",
    "redis+sentinel",
    "rediss+sentinel",
    "redis+cluster",
    "rediss+cluster",
)
_NAMESPACE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass(frozen=True, slots=True)
class Settings:
    """Validated options shared by :class:`Interlock` and :class:`AsyncInterlock`.

    Attributes:
        url: backend URL: ``mem://`` (default), ``redis://``, ``rediss://``,
            ``redis+sentinel://h1:p1,h2:p2/service[/db][?sentinel_password=...]`` (options in
            :func:`~interlock.backends._sentinel_url.parse_sentinel_url`), ``redis+cluster://h1:p1,h2:p2``.
            Shown with its passwords masked in the repr.
        namespace: prefix of every key, so deployments sharing a Redis never collide.
        socket_timeout: seconds a Redis command may take before ``BackendUnavailable``.
        connect_timeout: seconds to establish a Redis connection.
        lock_ttl: default lease time-to-live in seconds.
        lock_timeout: default wait for a lock in seconds; ``None`` waits forever.
        label_cap: distinct values per metric label before folding into ``__overflow__``.
        chaos: fault-injection spec (see :mod:`interlock.chaos`); empty means off.
    """

    url: str = "mem://"
    namespace: str = "interlock"
    socket_timeout: float = 1.0
    connect_timeout: float = 1.0
    lock_ttl: float = 30.0
    lock_timeout: float | None = 10.0
    label_cap: int = 500
    chaos: str = ""

    @property
    def scheme(self) -> str:
        return self.url.partition("://")[0]

    def __repr__(self) -> str:  # the URL's passwords never reach a repr
        values = (
            f"{f.name}={redact_url(self.url)!r}"
            if f.name == "url"
            else f"{f.name}={getattr(self, f.name)!r}"
            for f in fields(self)
        )
        return f"Settings({', '.join(values)})"


def _positive(name: str, value: object, env: str) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(
            f"{name}={value!r} is not a number; pass seconds as a float (or set {env})"
        ) from None
    if not number > 0 or number != number or number == float("inf"):
        raise ConfigError(f"{name}={value!r} must be a positive finite number of seconds")
    return number


def validate_url(url: str) -> str:
    """Check the backend URL and return it unchanged.

    ``redis://``, ``rediss://`` and cluster URLs are checked by
    :func:`~interlock.backends._redis_url.parse_redis_url`, Sentinel URLs by
    :func:`~interlock.backends._sentinel_url.parse_sentinel_url`.

    Raises:
        ConfigError: naming the bad part (scheme, host, port, db, query option) and the fix,
            with the URL's passwords masked.
    """
    if not isinstance(url, str) or "://" not in url:
        raise ConfigError(
            f"backend URL {url!r} is invalid; use 'mem://', 'redis://host:6379/0', "
            "'rediss://user:password@host:6380/0', 'redis+sentinel://h1:26379,h2:26379/mymaster' "
            "or 'redis+cluster://h1:p1,h2:p2'"
        )
    scheme = url.split("://", 1)[0]
    if scheme not in SCHEMES:
        hint = " (a Unix socket is not supported: use TCP)" if scheme == "unix" else ""
        raise ConfigError(
            f"backend URL scheme {scheme!r} is not supported{hint}; use one of "
            f"{', '.join(SCHEMES)}"
        )
    if "sentinel" in scheme:
        parse_sentinel_url(url)
    elif scheme != "mem":
        parse_redis_url(url)
    return url


def load_settings(
    url: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    **options: object,
) -> Settings:
    """Build :class:`Settings` from arguments, then ``INTERLOCK_*`` variables, then defaults.

    Args:
        url: backend URL; falls back to ``INTERLOCK_URL``, then ``mem://``.
        environ: the environment to read (``os.environ`` by default).
        **options: any other :class:`Settings` field.

    Raises:
        ConfigError: for unknown options or invalid values.
    """
    env = os.environ if environ is None else environ
    known = set(Settings.__dataclass_fields__) - {"url"}
    unknown = set(options) - known
    if unknown:
        raise ConfigError(
            f"unknown option(s) {', '.join(sorted(unknown))}; valid options are "
            f"{', '.join(sorted(known))}"
        )

    def pick(name: str) -> object:
        value = options.get(name)
        if value is None:
            value = env.get(f"INTERLOCK_{name.upper()}")
        return value

    values: dict[str, object] = {}
    values["url"] = validate_url(url or env.get("INTERLOCK_URL") or "mem://")
    namespace = pick("namespace")
    if namespace is not None:
        if not isinstance(namespace, str) or not _NAMESPACE.match(namespace):
            raise ConfigError(
                f"namespace={namespace!r} is invalid; use 1-64 characters from A-Z a-z 0-9 _ . -"
            )
        values["namespace"] = namespace
    for name in ("socket_timeout", "connect_timeout", "lock_ttl"):
        raw = pick(name)
        if raw is not None:
            values[name] = _positive(name, raw, f"INTERLOCK_{name.upper()}")
    if "lock_timeout" in options and options["lock_timeout"] is None:
        values["lock_timeout"] = None
    else:
        raw = pick("lock_timeout")
        if raw is not None:
            values["lock_timeout"] = _positive("lock_timeout", raw, "INTERLOCK_LOCK_TIMEOUT")
    cap = pick("label_cap")
    if cap is not None:
        try:
            values["label_cap"] = int(cap)  # type: ignore[call-overload]
        except (TypeError, ValueError):
            raise ConfigError(f"label_cap={cap!r} must be an integer ≥ 1") from None
        if values["label_cap"] < 1:  # type: ignore[operator]
            raise ConfigError(f"label_cap={cap!r} must be an integer ≥ 1")
    chaos = pick("chaos")
    if chaos:
        from interlock.chaos._plan import parse_chaos

        parse_chaos(str(chaos))  # fail at construction, naming the bad rule
        values["chaos"] = str(chaos)
    return Settings(**values)  # type: ignore[arg-type]
