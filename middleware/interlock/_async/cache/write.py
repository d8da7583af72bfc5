"""Writes for the cache: ``set``, ``delete`` and ``invalidate_tag``.

Reads fail open while the backend is down; writes do not: a write is refused while the
cache is degraded, and a failed write raises (a lost write must not go unseen). The near
cache drops the key (or tag) before a delete or invalidation and after every write, so
this process never serves what it has just replaced.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from typing import Any

from interlock._async.cache.store import AsyncCacheStore
from interlock.cache._core import CacheOptions, EntryKeys, call_ttl, entry_keys, tag_keys
from interlock.cache._entry import build_entry
from interlock.cache._local import Health, NearCache
from interlock.errors import BackendError, BackendUnavailable


class AsyncWriter:
    """The writing half of a cache (see the module docstring)."""

    def __init__(
        self,
        name: str,
        namespace: str,
        options: CacheOptions,
        store: AsyncCacheStore,
        near: NearCache | None,
        health: Health,
    ) -> None:
        self.name = name
        self.namespace = namespace
        self.options = options
        self.store = store
        self.near = near
        self.health = health

    async def set(
        self, key: object, value: Any, ttl: float | None, tags: Sequence[str | int]
    ) -> None:
        """``AsyncCache.set`` (see there)."""
        keys = entry_keys(self.namespace, self.name, key)
        wanted = tag_keys(self.namespace, self.name, tags) if tags else ()
        life = self.options.ttl if ttl is None else call_ttl(self.options, ttl, bool(wanted))

        async def write() -> None:
            versions = await self.store.versions(wanted) if wanted else {}
            data, px, _ = build_entry(
                value, self.options, ttl=life, duration=0.0,
                tags=[(tag, versions.get(tag, 0)) for tag, _ in wanted],
                now_ms=int(time.time() * 1000), rand=random.random(),
            )  # fmt: skip
            await self.store.write(keys, data, px)

        await self._write(write)
        if self.near is not None:
            self.near.drop(keys.encoded)

    async def delete(self, key: object) -> bool:
        """``AsyncCache.delete`` (see there)."""
        keys = entry_keys(self.namespace, self.name, key)
        if self.near is not None:
            self.near.drop(keys.encoded)
        existed: bool = await self._write(lambda: self.store.delete(keys))
        if self.near is not None:
            self.near.drop(keys.encoded)
        return existed

    async def invalidate_tag(self, tag: str | int) -> None:
        """``AsyncCache.invalidate_tag`` (see there)."""
        ((encoded, version_key),) = tag_keys(self.namespace, self.name, [tag])
        if self.near is not None:
            self.near.drop_tag(encoded)
        retention_ms = int(self.options.tag_retention * 1000)
        await self._write(lambda: self.store.invalidate_tag(encoded, version_key, retention_ms))
        if self.near is not None:
            self.near.drop_tag(encoded)

    async def invalidate(self, keys: Sequence[object], tags: Sequence[str | int]) -> None:
        """``AsyncCache.invalidate`` (see there)."""
        entries = [entry_keys(self.namespace, self.name, key) for key in keys]
        versions = tag_keys(self.namespace, self.name, list(tags))
        if not entries and not versions:
            return
        self._drop(entries, versions)
        retention_ms = int(self.options.tag_retention * 1000)
        await self._write(lambda: self.store.invalidate(entries, versions, retention_ms))
        self._drop(entries, versions)

    def _drop(self, entries: Sequence[EntryKeys], versions: Sequence[tuple[str, str]]) -> None:
        if self.near is not None:
            for keys in entries:
                self.near.drop(keys.encoded)
            for encoded, _ in versions:
                self.near.drop_tag(encoded)

    async def _write(self, operation: Callable[[], Any]) -> Any:
        """Run a write unless degraded; failures raise (a lost write must not go unseen)."""
        if not self.health.allow():
            raise BackendUnavailable(
                f"cache {self.name!r} is degraded (backend unreachable); the write was not made"
            )
        try:
            result = await operation()
        except BackendError as exc:
            self.health.failed(exc)
            raise
        self.health.ok()
        return result
