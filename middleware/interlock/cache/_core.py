"""The pure cache helpers (documented on :mod:`interlock.cache`): options, entry keys, jitter,
the cached-function wrappers."""

from __future__ import annotations

import inspect
import math
import random
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ParamSpec, TypedDict, TypeVar, Unpack

from interlock._keys import MAX_KEY_BYTES, encode_key
from interlock.errors import ConfigError
from interlock.serializers import Serializer, resolve_serializer

_P = ParamSpec("_P")
_R = TypeVar("_R")
AsyncCachedFunction = Callable[_P, Awaitable[_R]]  # what AsyncCache.cached decorates
CachedFunction = Callable[_P, _R]  # what Cache.cached decorates

RESULTS = ("hit", "near_hit", "stale", "miss", "coalesced", "negative_hit", "bypass", "error")
FILL_WINDOW_S = 60.0  # a load older than this is not written back (nor is one invalidated)
MAX_TTL_S = 30 * 86400.0
MAX_TAGS = 32


def _seconds(name: str, value: object, *, low: float, high: float = MAX_TTL_S) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise ConfigError(f"{name}={value!r} is invalid; pass seconds as a number")
    if not low <= value <= high:
        raise ConfigError(
            f"{name}={value!r} is out of range; pass seconds from {low:g} to {high:g}"
        )
    return float(value)


@dataclass(frozen=True, slots=True)
class CacheOptions:
    """Validated options of one named cache (see ``AsyncInterlock.cache``)."""

    ttl: float = 60.0
    stale_ttl: float = 0.0
    negative_ttl: float = 10.0
    jitter: float = 0.1
    early_refresh: float = 1.0
    near: bool = False
    near_size: int = 1024
    near_ttl: float = 5.0
    serializer: Serializer | None = None
    compress_threshold: int | None = 4096
    lock_wait: float = 5.0
    breaker_threshold: int = 3
    breaker_cooldown: float = 1.0
    tag_retention: float = 0.0

    @property
    def codec(self) -> Serializer:
        assert self.serializer is not None  # resolved by cache_options()
        return self.serializer

    def max_lifetime(self, ttl: float) -> float:
        """Seconds an entry written with ``ttl`` can be read, including the stale window."""
        return ttl + self.stale_ttl


class CacheKwargs(TypedDict, total=False):
    """The keyword options of ``cache(name, **options)``, typed so a checker catches a typo.

    The defaults and ranges are those of :func:`cache_options` (see docs/cache.md).
    """

    ttl: float
    stale_ttl: float
    negative_ttl: float | None  # None: min(ttl, 10 s)
    jitter: float
    early_refresh: float
    near: bool
    near_size: int
    near_ttl: float
    serializer: str | Serializer | None  # "msgpack" (None), "json" or a Serializer
    compress_threshold: int | None  # None: never compress
    lock_wait: float
    breaker_threshold: int
    breaker_cooldown: float
    tag_retention: float | None  # None or 0: max(1 day, 2 * (ttl + stale_ttl) + 60 s)


def cache_options(**options: Unpack[CacheKwargs]) -> CacheOptions:
    """Validate cache options; unknown names and bad values raise :class:`ConfigError`."""
    known = set(CacheOptions.__dataclass_fields__)
    unknown = set(options) - known
    if unknown:
        raise ConfigError(
            f"unknown cache option(s) {', '.join(sorted(unknown))}; valid options are "
            f"{', '.join(sorted(known))}"
        )
    values: dict[str, Any] = dict(options)
    ttl = values["ttl"] = _seconds("ttl", values.get("ttl", 60.0), low=0.001)
    stale = values["stale_ttl"] = _seconds("stale_ttl", values.get("stale_ttl", 0.0), low=0)
    negative = values.get("negative_ttl")
    values["negative_ttl"] = (
        min(ttl, 10.0) if negative is None else _seconds("negative_ttl", negative, low=0)
    )
    values["jitter"] = _seconds("jitter", values.get("jitter", 0.1), low=0, high=0.5)
    values["early_refresh"] = _seconds(
        "early_refresh", values.get("early_refresh", 1.0), low=0, high=100
    )
    values["near_ttl"] = _seconds("near_ttl", values.get("near_ttl", min(ttl, 5.0)), low=0.001)
    values["lock_wait"] = _seconds("lock_wait", values.get("lock_wait", 5.0), low=0, high=3600)
    values["breaker_cooldown"] = _seconds(
        "breaker_cooldown", values.get("breaker_cooldown", 1.0), low=0.001, high=3600
    )
    for name, default, low in (("near_size", 1024, 1), ("breaker_threshold", 3, 1)):
        number = values.get(name, default)
        if isinstance(number, bool) or not isinstance(number, int) or number < low:
            raise ConfigError(f"{name}={number!r} is invalid; pass an integer ≥ {low}")
        values[name] = number
    threshold = values.get("compress_threshold", 4096)
    if threshold is not None and (
        isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 0
    ):
        raise ConfigError(
            f"compress_threshold={threshold!r} is invalid; "
            "pass bytes ≥ 0, or None to never compress"
        )
    if not isinstance(values.get("near", False), bool):
        raise ConfigError(f"near={values['near']!r} is invalid; pass True or False")
    values["serializer"] = resolve_serializer(values.get("serializer"))
    floor = 2 * (ttl + stale) + FILL_WINDOW_S
    retention = values.get("tag_retention")
    values["tag_retention"] = (
        max(86400.0, floor)
        if retention is None or retention == 0.0
        else _seconds("tag_retention", retention, low=floor, high=10 * MAX_TTL_S)
    )
    return CacheOptions(**values)


# -- keys ----------------------------------------------------------------------------------


class EntryKeys:
    """Redis keys of one entry; all share the hash tag ``{name:key}``."""

    __slots__ = ("encoded", "entry")

    def __init__(self, encoded: str, entry: str) -> None:
        self.encoded = encoded
        self.entry = entry

    @property
    def lease(self) -> str:
        return f"{self.entry}:l"

    @property
    def generation(self) -> str:
        return f"{self.entry}:g"

    @property
    def all(self) -> list[str]:
        return [self.entry, f"{self.entry}:l", f"{self.entry}:g"]


def encode(key: object) -> str:
    """``_keys.encode_key``, with a fast path for ints and short alphanumeric strings."""
    if type(key) is int:
        return str(key)
    if type(key) is str and key.isalnum() and key.isascii() and len(key) <= MAX_KEY_BYTES:
        return key
    return encode_key(key)


def entry_keys(namespace: str, name: str, key: object, encoded: str | None = None) -> EntryKeys:
    """Keys of ``key`` in cache ``name``: the entry, its fill lease, its write generation.

    The layout is ``_keys.base_key``'s: ``<ns>:cache:{<name>:<encoded key>}``.
    """
    if encoded is None:
        encoded = encode(key)
    return EntryKeys(encoded, f"{namespace}:cache:{{{name}:{encoded}}}")


def tag_keys(namespace: str, name: str, tags: object) -> tuple[tuple[str, str], ...]:
    """``(encoded tag, version key)`` of each tag; all tags of a cache share ``{name}``."""
    if isinstance(tags, str | bytes) or not isinstance(tags, Iterable):
        raise TypeError(f"tags={tags!r} is invalid; pass a list of str or int tags")
    encoded = sorted({encode_tag(tag) for tag in tags})
    if len(encoded) > MAX_TAGS:
        raise ValueError(f"{len(encoded)} tags is too many; an entry carries at most {MAX_TAGS}")
    return tuple((tag, tag_key(namespace, name, tag)) for tag in encoded)


def tag_key(namespace: str, name: str, encoded_tag: str) -> str:
    """The version key of an (encoded) tag."""
    return f"{namespace}:cache:{{{name}}}:tag:{encoded_tag}"


def encode_tag(tag: object) -> str:
    if isinstance(tag, bool) or not isinstance(tag, str | int):
        raise TypeError(f"tag {tag!r} has type {type(tag).__name__}; use str or int")
    return encode_key(tag)


def call_ttl(options: CacheOptions, ttl: object, tagged: bool) -> float:
    """Validate a per-call ``ttl``; tagged entries must die before their tags' versions."""
    value = _seconds("ttl", ttl, low=0.001)
    if tagged and 2 * options.max_lifetime(value) + FILL_WINDOW_S > options.tag_retention:
        raise ConfigError(
            f"ttl={ttl!r} with tags outlives tag_retention={options.tag_retention:g}s; "
            "raise the cache's tag_retention or shorten the ttl"
        )
    return value


def default_key(function: Callable[..., Any]) -> Callable[..., object]:
    """The ``cached`` decorator's default key: the function's name and bound arguments."""
    signature = inspect.signature(function)
    name = f"{function.__module__}.{function.__qualname__}"

    def make(*args: Any, **kwargs: Any) -> object:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        parts: list[object] = [name]
        for param, value in bound.arguments.items():
            kind = signature.parameters[param].kind
            if kind is inspect.Parameter.VAR_POSITIONAL:
                parts.extend(value)
            elif kind is inspect.Parameter.VAR_KEYWORD:
                parts.extend(part for item in sorted(value.items()) for part in item)
            else:
                parts.append(value)
        return tuple(parts)

    return make


class Job:
    """One load: the key, its tags (``(encoded tag, version key)``) and the versions of
    them seen so far, its TTL, the loader, and the header of a stored entry already found
    unusable (``b""``: none)."""

    __slots__ = ("keys", "loader", "rejected", "tags", "ttl", "versions")

    def __init__(
        self,
        keys: EntryKeys,
        tags: Sequence[tuple[str, str]],
        ttl: float,
        loader: Callable[[], Any],
        rejected: bytes,
        versions: dict[str, int],
    ) -> None:
        self.keys = keys
        self.tags = tags
        self.ttl = ttl
        self.loader = loader
        self.rejected = rejected
        self.versions = versions


def channel(namespace: str, name: str) -> str:
    """The pub/sub channel of a cache: fills, writes, deletes and tag invalidations."""
    return f"{namespace}:cache-events:{name}"


def message(origin: str, op: str, subject: str) -> str:
    """A channel message: ``origin|op|subject`` (op k: key changed, r: lease freed, t: tag)."""
    return f"{origin}|{op}|{subject}"


# -- timing --------------------------------------------------------------------------------


def jittered_ms(ttl: float, jitter: float, rand: float) -> int:
    """A TTL in ms drawn from ``[ttl * (1 - jitter), ttl]``: never longer than asked."""
    return max(1, int(ttl * (1.0 - jitter * rand) * 1000))


def refresh_early(
    now_ms: float,
    fresh_until_ms: int,
    delta_us: int,
    beta: float,
    rand: Callable[[], float] = random.random,
) -> bool:
    """XFetch (Vattani et al., VLDB 2015): refresh now with a probability that rises
    towards expiry, earlier for slow loaders: ``now - delta * beta * ln(rand()) >= expiry``.

    ``rand()`` is uniform in [0, 1) with 53-bit resolution, so ``-ln(rand())`` is at most
    ``_MAX_EXP`` (for 0 it is taken as ``2**-53``): further from expiry than that, no draw
    can refresh, and none is made.
    """
    scale = delta_us / 1000 * beta
    if scale <= 0 or fresh_until_ms - now_ms > scale * _MAX_EXP:
        return False
    return now_ms - scale * math.log(rand() or 2.0**-53) >= fresh_until_ms


_MAX_EXP = -math.log(2.0**-53)
