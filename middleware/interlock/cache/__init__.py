"""The distributed cache: the pure parts shared by :class:`AsyncCache` and :class:`Cache`.

The drivers live in ``interlock/_async/cache/cache.py`` (``_sync`` is generated); the atomic
steps are the Lua scripts in ``interlock.cache._scripts``; the stored format is in
``interlock.cache._entry``. What lives here has no I/O: options, key layout, result names,
the early-refresh (XFetch) and jitter math. See docs/cache.md.
"""

from __future__ import annotations

from interlock.cache._core import (
    FILL_WINDOW_S,
    MAX_TAGS,
    MAX_TTL_S,
    RESULTS,
    AsyncCachedFunction,
    CachedFunction,
    CacheKwargs,
    CacheOptions,
    EntryKeys,
    Job,
    cache_options,
    call_ttl,
    channel,
    default_key,
    encode,
    encode_tag,
    entry_keys,
    jittered_ms,
    message,
    refresh_early,
    tag_key,
    tag_keys,
)

__all__ = [
    "FILL_WINDOW_S",
    "MAX_TAGS",
    "MAX_TTL_S",
    "RESULTS",
    "AsyncCachedFunction",
    "CacheKwargs",
    "CacheOptions",
    "CachedFunction",
    "EntryKeys",
    "Job",
    "cache_options",
    "call_ttl",
    "channel",
    "default_key",
    "encode",
    "encode_tag",
    "entry_keys",
    "jittered_ms",
    "message",
    "refresh_early",
    "tag_key",
    "tag_keys",
]
