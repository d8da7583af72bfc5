"""The distributed cache: the pure parts shared by :class:`AsyncCache` and :class:`Cache`.

The drivers live in ``interlock/_async/cache.py`` (``_sync`` is generated); the atomic
steps are the Lua scripts in ``interlock._cache_scripts``. What lives here has no I/O:
options, key layout, the stored envelope, the early-refresh (XFetch) and jitter math.

Entry envelope (big-endian), then the serialized (possibly zlib-compressed) value::

    magic "il" | format 1 | codec u8 | flags u8 | created_ms u64 | ttl_ms u32 |
    stale_ms u32 | loader_us u32 | tag count u8 | per tag: len u8, tag, version u64

``ttl_ms`` is the (jittered) fresh lifetime, ``stale_ms`` how long the entry may be served
stale after it, ``loader_us`` how long the loader took (the XFetch ``delta``), and each tag
carries the version it had when the load began (see docs/cache.md, "Tags").
"""

from __future__ import annotations

import inspect
import math
import struct
import zlib
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from interlock._keys import MAX_KEY_BYTES, encode_key
from interlock.errors import ConfigError, SerializationError
from interlock.serializers import Serializer, resolve_serializer

_P = ParamSpec("_P")
_R = TypeVar("_R")
AsyncCachedFunction = Callable[_P, Awaitable[_R]]  # what AsyncCache.cached decorates
CachedFunction = Callable[_P, _R]  # what Cache.cached decorates

RESULTS = ("hit", "near_hit", "stale", "miss", "coalesced", "negative_hit", "bypass", "error")
FILL_WINDOW_S = 60.0  # a load older than this is not written back (nor is one invalidated)
MAX_TTL_S = 30 * 86400.0
MAX_TAGS = 32

_MAGIC = b"il"
_FORMAT = 1
_HEADER = struct.Struct(">2sBBBQIIIB")
HEADER_SIZE = _HEADER.size
_TAG_VERSION = struct.Struct(">Q")
FLAG_COMPRESSED = 1
FLAG_NEGATIVE = 2
_U32 = 2**32 - 1


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


def cache_options(**options: Any) -> CacheOptions:
    """Validate cache options; unknown names and bad values raise :class:`ConfigError`."""
    known = set(CacheOptions.__dataclass_fields__)
    unknown = set(options) - known
    if unknown:
        raise ConfigError(
            f"unknown cache option(s) {', '.join(sorted(unknown))}; valid options are "
            f"{', '.join(sorted(known))}"
        )
    values = dict(options)
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

    __slots__ = ("encoded", "entry", "generation", "lease")

    def __init__(self, encoded: str, entry: str, lease: str, generation: str) -> None:
        self.encoded = encoded
        self.entry = entry
        self.lease = lease
        self.generation = generation

    @property
    def all(self) -> list[str]:
        return [self.entry, self.lease, self.generation]


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
    base = f"{namespace}:cache:{{{name}:{encoded}}}"
    return EntryKeys(encoded, base, f"{base}:l", f"{base}:g")


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
    now_ms: float, fresh_until_ms: int, delta_us: int, beta: float, rand: float
) -> bool:
    """XFetch (Vattani et al., VLDB 2015): refresh now with a probability that rises
    towards expiry, earlier for slow loaders: ``now - delta * beta * ln(rand) >= expiry``."""
    if beta <= 0 or delta_us <= 0:
        return False
    return now_ms - delta_us / 1000 * beta * math.log(rand or 1e-300) >= fresh_until_ms


# -- envelope ------------------------------------------------------------------------------


class Envelope:
    """A decoded entry header plus its (still serialized) value bytes."""

    __slots__ = ("codec", "created_ms", "delta_us", "flags", "header", "payload", "stale_ms",
                 "tags", "ttl_ms")  # fmt: skip

    def __init__(self, data: bytes) -> None:
        try:
            magic, fmt, codec, flags, created, ttl, stale, delta, count = _HEADER.unpack_from(data)
        except struct.error:
            raise SerializationError("cache entry is truncated or not interlock's") from None
        if magic != _MAGIC or fmt != _FORMAT:
            raise SerializationError("cache entry has an unknown format; not decoded")
        self.codec, self.flags, self.created_ms = codec, flags, created
        self.ttl_ms, self.stale_ms, self.delta_us = ttl, stale, delta
        offset = HEADER_SIZE
        tags: list[tuple[str, int]] = []
        try:
            for _ in range(count):
                size = data[offset]
                tag = data[offset + 1 : offset + 1 + size].decode()
                (version,) = _TAG_VERSION.unpack_from(data, offset + 1 + size)
                tags.append((tag, version))
                offset += 1 + size + _TAG_VERSION.size
        except (IndexError, struct.error, UnicodeDecodeError):
            raise SerializationError("cache entry has a corrupt tag list") from None
        self.tags = tags
        self.header = data[:HEADER_SIZE]
        self.payload = data[offset:]

    @property
    def negative(self) -> bool:
        return bool(self.flags & FLAG_NEGATIVE)

    @property
    def fresh_until_ms(self) -> int:
        return self.created_ms + self.ttl_ms  # type: ignore[no-any-return]

    @property
    def expires_ms(self) -> int:
        return self.created_ms + self.ttl_ms + self.stale_ms  # type: ignore[no-any-return]

    def value(self, serializer: Serializer) -> Any:
        """Decode the value; a foreign codec (e.g. a planted pickle) is refused unread."""
        if self.negative:
            return None
        if self.codec != serializer.codec:
            raise SerializationError(
                f"cache entry uses codec {self.codec}, this cache reads codec {serializer.codec}"
            )
        body = self.payload
        if self.flags & FLAG_COMPRESSED:
            try:
                body = zlib.decompress(body)
            except zlib.error as exc:
                raise SerializationError(f"cache entry fails to decompress: {exc}") from exc
        return serializer.loads(body)

    def stale_against(self, current: dict[str, int]) -> bool:
        """True if a tag was invalidated after this entry's load began."""
        return any(current.get(tag, 0) > version for tag, version in self.tags)


def encode_envelope(
    value: Any,
    serializer: Serializer,
    *,
    created_ms: int,
    ttl_ms: int,
    stale_ms: int,
    delta_us: int,
    tags: Sequence[tuple[str, int]] = (),
    compress_threshold: int | None = None,
) -> bytes:
    """Serialize ``value`` (``None`` becomes a negative entry) into a stored envelope."""
    flags = 0
    if value is None:
        flags, body = FLAG_NEGATIVE, b""
    else:
        body = serializer.dumps(value)
        if compress_threshold is not None and len(body) >= compress_threshold:
            packed = zlib.compress(body, 1)
            if len(packed) < len(body):
                flags, body = FLAG_COMPRESSED, packed
    parts = [
        _HEADER.pack(
            _MAGIC, _FORMAT, serializer.codec, flags, created_ms,
            min(ttl_ms, _U32), min(stale_ms, _U32), min(max(delta_us, 0), _U32), len(tags),
        )
    ]  # fmt: skip
    for tag, version in tags:
        raw = tag.encode()
        parts.append(bytes((len(raw),)) + raw + _TAG_VERSION.pack(version))
    parts.append(body)
    return b"".join(parts)
