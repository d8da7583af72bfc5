"""Named distributed caches (async API); the blocking ``Cache`` is generated from this file.

A hit is one round trip (a plain GET, or one script when tags are named) plus decoding;
with ``near=True`` it is a dictionary lookup. Misses load through a single flight per key
and process and one fill lease per key across processes (``cache_load``). When the
backend fails the cache fails open behind a circuit breaker: loaders serve every read.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence
from typing import Any, ParamSpec, TypeVar

from interlock import _context
from interlock._async.backend.base import AsyncBackend
from interlock._async.cache.decorator import KeyFunction, TagsOption, cached
from interlock._async.cache.load import AsyncLoader, LoadFunction, Outcome
from interlock._async.cache.near import AsyncNearLink
from interlock._async.cache.refresh import AsyncRefresher
from interlock._async.cache.store import AsyncCacheStore, Tags
from interlock._async.cache.write import AsyncWriter
from interlock._config import Settings
from interlock._keys import validate_name
from interlock._tracing import Tracer
from interlock.cache._core import (
    RESULTS,
    AsyncCachedFunction,
    CacheOptions,
    Job,
    call_ttl,
    encode,
    entry_keys,
    refresh_early,
    tag_keys,
)
from interlock.cache._entry import CORRUPT, FRESH, STALE, judge
from interlock.cache._local import CLOSED, CircuitBreaker, Health, NearCache
from interlock.errors import BackendError
from interlock.metrics import Metrics

GET_OR_LOAD_SPAN = "interlock.cache.get_or_load"  # docs/tracing.md
P = ParamSpec("P")
R = TypeVar("R")


class AsyncCache:
    """A named cache; create it with ``AsyncInterlock.cache(name, ...)`` (options there).

    Keys are ``str``, ``int`` or tuples of them; values anything the serializer takes
    (msgpack: JSON types plus datetime, date, Decimal, UUID, bytes). ``None`` is "not
    found": a negative entry kept ``negative_ttl`` seconds. Values from the near cache are
    shared objects: treat cached values as immutable.
    """

    def __init__(
        self,
        backend: AsyncBackend,
        settings: Settings,
        metrics: Metrics,
        name: str,
        options: CacheOptions,
        tracer: Tracer | None = None,
    ) -> None:
        self.name = validate_name("cache", name)
        self._tracer = tracer or Tracer()
        self.options = options
        self._namespace = settings.namespace
        self._backend = backend
        self._serializer = options.codec
        self._origin = secrets.token_hex(8)
        self._near = NearCache(options.near_size, options.near_ttl) if options.near else None
        self._link = AsyncNearLink(self._near, self._origin)
        self._store = AsyncCacheStore(
            backend,
            settings.namespace,
            name,
            serializer=options.codec,
            cluster="cluster" in settings.scheme,
            origin=self._origin,
            on_event=self._link.on_event,
        )
        label = metrics.label("interlock_cache_requests_total", "cache", name)
        self._results = {r: metrics.cache_requests.labels(cache=label, result=r) for r in RESULTS}
        gauge = metrics.cache_degraded.labels(
            cache=metrics.label("interlock_cache_degraded", "cache", name)
        )
        self._breaker = CircuitBreaker(options.breaker_threshold, options.breaker_cooldown)
        self._health = Health(name, self._breaker, gauge)
        load_label = metrics.label("interlock_cache_load_seconds", "cache", name)
        self._loader = AsyncLoader(
            options,
            self._store,
            self._near,
            self._health,
            metrics.cache_load.labels(cache=load_label).observe,
            self._tracer,
        )
        self._refresher = AsyncRefresher(name, self._loader)
        self._writer = AsyncWriter(
            self.name, settings.namespace, options, self._store, self._near, self._health
        )

    @property
    def degraded(self) -> bool:
        """True while the backend is considered down and the cache fails open."""
        return self._health.breaker.degraded

    # -- reads ---------------------------------------------------------------------------

    async def get(self, key: object, default: Any = None, *, tags: Sequence[str | int] = ()) -> Any:
        """The fresh cached value of ``key``, ``None`` for a cached "not found", or ``default``.

        Args:
            key: ``str``, ``int`` or a tuple of them.
            default: returned on a miss (and while the backend is down).
            tags: the entry's tags, if known: saves a round trip for tagged entries.
        """
        encoded = encode(key)
        near = self._near
        if near is not None:
            held = await self._link.lookup(near, encoded, self._store, self._health)
            if held is not None:
                return self._done("negative_hit" if held.negative else "near_hit", held.value)
        keys = entry_keys(self._namespace, self.name, key, encoded)
        wanted = self._tags(tags) if tags else ()
        if not self._health.allow():
            return self._done("bypass", default)
        epoch = near.epoch if near is not None else 0
        try:
            data, versions = await self._store.read(keys.entry, wanted)
            verdict = await self._store.judge(keys, data, versions)
        except BackendError as exc:
            self._health.failed(exc)
            return self._done("bypass", default)
        self._health.ok()
        envelope = verdict.envelope
        if verdict.state is FRESH and envelope is not None:
            if near is not None:
                near.remember(encoded, verdict.value, envelope, epoch)
            return self._done("negative_hit" if envelope.negative else "hit", verdict.value)
        return self._done("error" if verdict.state is CORRUPT else "miss", default)

    async def get_or_load(
        self,
        key: object,
        loader: LoadFunction,
        *,
        ttl: float | None = None,
        tags: Sequence[str | int] = (),
    ) -> Any:
        """The cached value of ``key``, loading it with ``loader()`` on a miss.

        The loader runs at most once per key at a time in this process, and once across
        processes as long as its load takes under ``lock_wait`` seconds. A ``None`` result
        is cached as "not found" for ``negative_ttl``. The loader's exceptions propagate
        (to every caller sharing the load); stale values are served while a refresh fails.

        Args:
            key: ``str``, ``int`` or a tuple of them.
            loader: a function returning the value (with asyncio: also a coroutine function).
            ttl: fresh lifetime in seconds (default: the cache's ``ttl``).
            tags: tags to invalidate the entry by (see :meth:`invalidate_tag`).
        """
        with self._tracer.span(GET_OR_LOAD_SPAN) as span:
            if span.recording:
                span.update({"interlock.cache.name": self.name, "interlock.cache.key": encode(key)})
            value, result = await self._get_or_load(key, loader, ttl, tags)
            span.set("interlock.cache.result", result)
        return self._done(result, value)

    async def _get_or_load(
        self, key: object, loader: LoadFunction, ttl: float | None, tags: Sequence[str | int]
    ) -> Outcome:
        encoded = encode(key)
        near = self._near
        if near is not None:
            held = await self._link.lookup(near, encoded, self._store, self._health)
            if held is not None:
                return held.value, "negative_hit" if held.negative else "near_hit"
        keys = entry_keys(self._namespace, self.name, key, encoded)
        entry = keys.entry
        wanted = self._tags(tags) if tags else ()
        life = self.options.ttl if ttl is None else call_ttl(self.options, ttl, bool(wanted))
        breaker = self._breaker
        if breaker.state is not CLOSED and not breaker.allow():
            return await self._loader.bypass(entry, wanted, loader)
        if entry in self._loader.flights:
            job = Job(keys, wanted, life, loader, b"", {})
            return await self._loader.follow(job)
        epoch = near.epoch if near is not None else 0
        try:
            if wanted:
                data, versions = await self._store.read(entry, wanted)
            else:
                data, versions = await self._backend.execute("GET", entry), {}
            verdict = judge(data, versions, self._serializer, time.time() * 1000)
            if verdict is None or verdict.state is CORRUPT:  # tags to read, or to log
                verdict = await self._store.judge(keys, data, versions)
        except BackendError as exc:
            self._health.failed(exc)
            return await self._loader.bypass(entry, wanted, loader)
        if breaker.failures or breaker.state is not CLOSED:
            self._health.ok()
        envelope = verdict.envelope
        if envelope is not None and verdict.state is FRESH:
            beta = self.options.early_refresh
            if beta and refresh_early(
                verdict.now_ms, envelope.fresh_until_ms, envelope.delta_us, beta
            ):
                self._refresher.refresh(Job(keys, wanted, life, loader, envelope.header, versions))
            if near is not None:
                near.remember(encoded, verdict.value, envelope, epoch)
            return verdict.value, "negative_hit" if envelope.negative else "hit"
        if envelope is not None and verdict.state is STALE:
            self._refresher.refresh(Job(keys, wanted, life, loader, envelope.header, versions))
            return verdict.value, "stale"
        value, result = await self._loader.shared(
            Job(keys, wanted, life, loader, verdict.rejected, versions)
        )
        return value, "error" if verdict.state is CORRUPT else result

    # -- writes --------------------------------------------------------------------------

    async def set(
        self,
        key: object,
        value: Any,
        *,
        ttl: float | None = None,
        tags: Sequence[str | int] = (),
    ) -> None:
        """Store ``value`` under ``key`` (``None`` stores a "not found" entry).

        A load of ``key`` that began before this write does not overwrite it.

        Raises:
            SerializationError: the serializer cannot encode ``value``.
            BackendUnavailable: the write did not happen (the cache is degraded).
        """
        await self._writer.set(key, value, ttl, tags)

    async def delete(self, key: object) -> bool:
        """Remove ``key``; a load of it that began earlier is not written back.

        Returns:
            True if an entry was there.

        Raises:
            BackendUnavailable: the delete did not happen (the cache is degraded).
        """
        return await self._writer.delete(key)

    async def invalidate_tag(self, tag: str | int) -> None:
        """Invalidate every entry written under ``tag``, in O(1) (no key scans).

        Entries loaded before this call, including loads still in flight, are not served
        afterwards, here or in other processes.

        Raises:
            BackendUnavailable: the invalidation did not happen (the cache is degraded).
        """
        await self._writer.invalidate_tag(tag)

    async def invalidate(
        self, *, keys: Sequence[object] = (), tags: Sequence[str | int] = ()
    ) -> None:
        """:meth:`delete` each of ``keys`` and :meth:`invalidate_tag` each of ``tags``, in
        one pipelined round trip (none when both are empty).

        Raises:
            BackendUnavailable: the invalidation did not happen (the cache is degraded).
            BackendError: one of the commands failed (the others may have happened).
        """
        await self._writer.invalidate(keys, tags)

    def cached(
        self,
        key: KeyFunction | None = None,
        *,
        ttl: float | None = None,
        tags: TagsOption = None,
    ) -> Callable[[AsyncCachedFunction[P, R]], AsyncCachedFunction[P, R]]:
        """Cache a function's results: ``@products.cached(key=lambda pid: pid)``.

        ``AsyncCache`` decorates ``async def`` functions, the sync ``Cache`` plain ones.

        Args:
            key: builds the cache key from the call's arguments (default: the function's
                qualified name and its bound arguments, which must be str or int).
            ttl: fresh lifetime of the results (default: the cache's ``ttl``).
            tags: tags of every result, or a function of the call's arguments returning them.

        The wrapper has ``invalidate(*args, **kwargs)`` to delete one call's result.
        """
        return cached(self, key, ttl, tags)

    # -- plumbing ------------------------------------------------------------------------

    def _tags(self, tags: object) -> Tags:
        return tag_keys(self._namespace, self.name, tags)

    def _done(self, result: str, value: Any) -> Any:
        self._results[result].inc()
        if _context.current() is not None:
            _context.record("cache", name=self.name, result=result)
        return value

    async def aclose(self) -> None:
        """Stop background refreshes and leave the cache's channel."""
        await self._refresher.aclose()
        await self._store.aclose()

    def __repr__(self) -> str:
        state = "degraded" if self.degraded else "ok"
        return f"<{type(self).__name__} {self.name!r} ttl={self.options.ttl:g} {state}>"
