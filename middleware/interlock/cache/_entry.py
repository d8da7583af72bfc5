"""The stored form of a cache entry (an envelope around the serialized value) and the
decision whether a stored entry may be served. Pure: no I/O, shared by both drivers.

Envelope (big-endian), then the serialized (possibly zlib-compressed) value::

    magic "il" | format 1 | codec u8 | flags u8 | created_ms u64 | ttl_ms u32 |
    stale_ms u32 | loader_us u32 | tag count u8 | per tag: len u8, tag, version u64

``ttl_ms`` is the (jittered) fresh lifetime (``FOREVER_MS``: never expires, for Django's
``timeout=None``; named caches never write it, their TTLs stop at 30 days), ``stale_ms``
how long the entry may be served stale after it, ``loader_us`` how long the loader took
(the XFetch ``delta``), and each tag carries the version it had when the load began (see
docs/cache.md, "Tags").
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from typing import Any

from interlock.cache._core import CacheOptions, jittered_ms
from interlock.errors import SerializationError
from interlock.serializers import Serializer

_MAGIC = b"il"
_FORMAT = 1
_HEADER = struct.Struct(">2sBBBQIIIB")
HEADER_SIZE = _HEADER.size
_TAG_VERSION = struct.Struct(">Q")
FLAG_COMPRESSED = 1
FLAG_NEGATIVE = 2
_U32 = 2**32 - 1
FOREVER_MS = _U32  # ttl_ms of an entry that never expires
_NEVER_MS = 2**63

FRESH, STALE, ABSENT, REJECTED, CORRUPT = "fresh", "stale", "absent", "rejected", "corrupt"


class Envelope:
    """A decoded entry header plus its (still serialized) value bytes."""

    __slots__ = ("codec", "created_ms", "data", "delta_us", "expires_ms", "flags",
                 "fresh_until_ms", "negative", "offset", "stale_ms", "tags", "ttl_ms")  # fmt: skip

    def __init__(self, data: bytes) -> None:
        try:
            magic, fmt, codec, flags, created, ttl, stale, delta, count = _HEADER.unpack_from(data)
        except struct.error:
            raise SerializationError("cache entry is truncated or not interlock's") from None
        if magic != _MAGIC or fmt != _FORMAT:
            raise SerializationError("cache entry has an unknown format; not decoded")
        self.codec, self.flags, self.created_ms = codec, flags, created
        self.ttl_ms, self.stale_ms, self.delta_us = ttl, stale, delta
        self.fresh_until_ms: int = created + ttl
        self.expires_ms: int = created + ttl + stale
        if ttl == FOREVER_MS:
            self.fresh_until_ms = self.expires_ms = _NEVER_MS
        self.negative = bool(flags & FLAG_NEGATIVE)
        self.data = data
        offset = HEADER_SIZE
        tags: list[tuple[str, int]] = []
        if not count:
            self.tags, self.offset = tags, offset
            return
        try:
            for _ in range(count):
                size = data[offset]
                tag = data[offset + 1 : offset + 1 + size].decode()
                (version,) = _TAG_VERSION.unpack_from(data, offset + 1 + size)
                tags.append((tag, version))
                offset += 1 + size + _TAG_VERSION.size
        except (IndexError, struct.error, UnicodeDecodeError):
            raise SerializationError("cache entry has a corrupt tag list") from None
        self.tags, self.offset = tags, offset

    @property
    def header(self) -> bytes:
        """The fixed-size header: identifies this version of the entry (compare-and-set)."""
        return self.data[:HEADER_SIZE]

    @property
    def payload(self) -> bytes:
        return self.data[self.offset :]

    def value(self, serializer: Serializer) -> Any:
        """Decode the value; a foreign codec (e.g. a planted pickle) is refused unread."""
        if self.negative:
            return None
        if self.codec != serializer.codec:
            raise SerializationError(
                f"cache entry uses codec {self.codec}, this cache reads codec {serializer.codec}"
            )
        body = self.data[self.offset :]
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


class Verdict:
    """What a read found: its state (``FRESH``, ``STALE``, ``ABSENT``, ``REJECTED`` or
    ``CORRUPT``), the envelope and decoded value, when it was judged, and the header to
    pass on as "already rejected" (``b""``: nothing stored, or nothing to reject)."""

    __slots__ = ("envelope", "error", "now_ms", "rejected", "state", "value")

    def __init__(
        self,
        state: str,
        envelope: Envelope | None = None,
        value: Any = None,
        now_ms: float = 0.0,
        rejected: bytes = b"",
        error: str = "",
    ) -> None:
        self.state = state
        self.envelope = envelope
        self.value = value
        self.now_ms = now_ms
        self.rejected = rejected
        self.error = error


ABSENT_VERDICT = Verdict(ABSENT)


def build_entry(
    value: Any,
    options: CacheOptions,
    *,
    ttl: float,
    duration: float,
    tags: Sequence[tuple[str, int]],
    now_ms: int,
    rand: float,
) -> tuple[bytes, int, int]:
    """The stored bytes of ``value``, their PX and their fresh lifetime, both in ms.

    ``None`` is a negative entry: it lives ``negative_ttl`` (``ttl`` when negative caching
    is off) and is never served stale. Every lifetime is jittered downwards.
    """
    negative = value is None
    life = options.negative_ttl if negative and options.negative_ttl > 0 else ttl
    fresh_ms = jittered_ms(life, options.jitter, rand)
    stale_ms = 0 if negative else int(options.stale_ttl * 1000)
    data = encode_envelope(
        value,
        options.codec,
        created_ms=now_ms,
        ttl_ms=fresh_ms,
        stale_ms=stale_ms,
        delta_us=int(duration * 1_000_000),
        tags=tags,
        compress_threshold=options.compress_threshold,
    )
    return data, fresh_ms + stale_ms, fresh_ms


def judge(
    data: bytes | None, versions: dict[str, int], serializer: Serializer, now_ms: float
) -> Verdict | None:
    """May stored ``data`` be served, given the current versions of its tags?

    Returns ``None`` when the entry carries a tag missing from ``versions`` (read those
    versions, then judge again). An entry of a foreign format or codec, or one whose
    signature does not verify, is ``CORRUPT`` and its payload is never decoded.
    """
    if data is None:
        return ABSENT_VERDICT
    try:
        envelope = Envelope(data)
        if envelope.tags:
            if any(tag not in versions for tag, _ in envelope.tags):
                return None
            if envelope.stale_against(versions):
                return Verdict(REJECTED, envelope, rejected=envelope.header)
        if now_ms >= envelope.expires_ms:
            return Verdict(REJECTED, envelope, rejected=envelope.header)
        state = FRESH if now_ms < envelope.fresh_until_ms else STALE
        return Verdict(state, envelope, envelope.value(serializer), now_ms)
    except SerializationError as exc:
        return Verdict(CORRUPT, rejected=data[:HEADER_SIZE], error=str(exc))
