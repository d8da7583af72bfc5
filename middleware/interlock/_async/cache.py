"""Named distributed caches (async API); the blocking ``Cache`` is generated from this file.

A hit is one round trip (a plain GET, or one script when tags are named) plus decoding;
with ``near=True`` it is a dictionary lookup. Misses load through a single flight per key
and process and one fill lease per key across processes (``cache_load``). When the
backend fails the cache fails open behind a circuit breaker: loaders serve every read.
"""

from __future__ import annotations

import functools
import logging
import random
import secrets
from collections.abc import Callable, Sequence
from typing import Any, ParamSpec, TypeVar

from interlock import _context
from interlock._async.backend import AsyncBackend
from interlock._async.cache_load import (
    CORRUPT,
    FRESH,
    STALE,
    AsyncLoader,
    Job,
    Load,
    LoadFunction,
)
from interlock._async.cache_store import AsyncCacheStore
from interlock._cache_local import CircuitBreaker, NearCache
from interlock._config import Settings
from interlock._keys import validate_name
from interlock._synchronization import async_check_cacheable
from interlock.cache import (
    RESULTS,
    AsyncCachedFunction,
    CacheOptions,
    call_ttl,
    default_key,
    encode,
    entry_keys,
    refresh_early,
    tag_key,
    tag_keys,
)
from interlock.errors import BackendError, BackendUnavailable
from interlock.metrics import Metrics

logger = logging.getLogger("interlock.cache")
P = ParamSpec("P")
R = TypeVar("R")
Tags = Sequence[tuple[str, str]]
KeyFunction = Callable[..., object]
TagsOption = Sequence[str | int] | Callable[..., Sequence[str | int]] | None


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
    ) -> None:
        self.name = validate_name("cache", name)
        self.options = options
        self._namespace = settings.namespace
        self._origin = secrets.token_hex(8)
        self._store = AsyncCacheStore(
            backend,
            settings.namespace,
            name,
            cluster="cluster" in settings.scheme,
            origin=self._origin,
            on_event=self._on_event,
        )
        self._near = NearCache(options.near_size, options.near_ttl) if options.near else None
        self._near_ready = False
        self._breaker = CircuitBreaker(options.breaker_threshold, options.breaker_cooldown)
        label = metrics.label("interlock_cache_requests_total", "cache", name)
        self._results = {r: metrics.cache_requests.labels(cache=label, result=r) for r in RESULTS}
        load_label = metrics.label("interlock_cache_load_seconds", "cache", name)
        self._load_seconds = metrics.cache_load.labels(cache=load_label)
        self._degraded = metrics.cache_degraded.labels(
            cache=metrics.label("interlock_cache_degraded", "cache", name)
        )
        self._degraded.set(0)
        self._loader = AsyncLoader(
            name,
            options,
            self._store,
            self._near,
            self._breaker,
            self._load_seconds.observe,
            self._backend_failed,
            lambda tag: (tag, tag_key(self._namespace, self.name, tag)),
        )

    @property
    def degraded(self) -> bool:
        """True while the backend is considered down and the cache fails open."""
        return self._breaker.degraded

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
            if self._near_ready:
                held = near.get(encoded)
                if held is not None:
                    return self._done("negative_hit" if held.negative else "near_hit", held.value)
            else:
                await self._start_near()
        keys = entry_keys(self._namespace, self.name, key, encoded)
        wanted = self._tags(tags) if tags else ()
        if not self._breaker.allow():
            return self._done("bypass", default)
        epoch = near.epoch if near is not None else 0
        try:
            data, versions = await self._store.read(keys.entry, wanted)
            verdict = await self._loader.judge(keys, data, versions)
        except BackendError as exc:
            self._backend_failed(exc)
            return self._done("bypass", default)
        self._backend_ok()
        envelope = verdict.envelope
        if verdict.state is FRESH and envelope is not None:
            self._loader.remember(keys, verdict.value, envelope, epoch)
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
            loader: a function returning the value (async caches: or an awaitable of it).
            ttl: fresh lifetime in seconds (default: the cache's ``ttl``).
            tags: tags to invalidate the entry by (see :meth:`invalidate_tag`).
        """
        encoded = encode(key)
        near = self._near
        if near is not None:
            if self._near_ready:
                held = near.get(encoded)
                if held is not None:
                    return self._done("negative_hit" if held.negative else "near_hit", held.value)
            else:
                await self._start_near()
        keys = entry_keys(self._namespace, self.name, key, encoded)
        wanted = self._tags(tags) if tags else ()
        life = self.options.ttl if ttl is None else call_ttl(self.options, ttl, bool(wanted))
        if not self._breaker.allow():
            return await self._bypass(keys.entry, wanted, loader)
        if keys.entry in self._loader.flights:
            return await self._follow(Job(keys, wanted, life, loader, b"", {}))
        epoch = near.epoch if near is not None else 0
        try:
            data, versions = await self._store.read(keys.entry, wanted)
            verdict = await self._loader.judge(keys, data, versions)
        except BackendError as exc:
            self._backend_failed(exc)
            return await self._bypass(keys.entry, wanted, loader)
        self._backend_ok()
        envelope = verdict.envelope
        if envelope is not None and verdict.state is FRESH:
            beta = self.options.early_refresh
            if beta and refresh_early(
                verdict.now_ms, envelope.fresh_until_ms, envelope.delta_us, beta, random.random()
            ):
                self._loader.refresh(Job(keys, wanted, life, loader, envelope.header, versions))
            self._loader.remember(keys, verdict.value, envelope, epoch)
            return self._done("negative_hit" if envelope.negative else "hit", verdict.value)
        if envelope is not None and verdict.state is STALE:
            self._loader.refresh(Job(keys, wanted, life, loader, envelope.header, versions))
            return self._done("stale", verdict.value)
        job = Job(keys, wanted, life, loader, verdict.rejected, versions)
        return await self._lead(job, "error" if verdict.state is CORRUPT else None)

    async def _lead(self, job: Job, result: str | None = None, replace: bool = False) -> Any:
        flights = self._loader.flights
        load = Load(job.tags)
        if replace:
            flights[job.keys.entry] = load
        elif flights.setdefault(job.keys.entry, load) is not load:
            return await self._follow(job)
        load.flight.start(lambda: self._loader.lead(load, job))
        value, outcome = await load.flight.wait()
        return self._done(result or outcome, value)

    async def _follow(self, job: Job) -> Any:
        """Share the load in flight, unless it began before a delete, write or invalidation."""
        load = self._loader.flights.get(job.keys.entry)
        if load is None:
            return await self._lead(job)
        if not load.degraded:
            try:
                reply = await self._store.lease(job.keys, job.tags, "", 0, b"", False, {})
                verdict = await self._loader.judge(job.keys, reply.entry, reply.versions)
            except BackendError as exc:
                self._backend_failed(exc)
            else:
                if verdict.state is FRESH or verdict.state is STALE:
                    return self._done("hit" if verdict.state is FRESH else "stale", verdict.value)
                await load.started.wait(self.options.lock_wait)
                if not load.matches(reply.generation, reply.versions):
                    job.rejected, job.versions = verdict.rejected, reply.versions
                    return await self._lead(job, replace=True)
        value, _ = await load.flight.wait()
        return self._done("coalesced", value)

    async def _bypass(self, key: str, tags: Tags, loader: LoadFunction) -> Any:
        """Serve from the loader (the backend is down), still one load per key at a time."""
        flights = self._loader.flights
        load = Load(tags, degraded=True)
        current = flights.setdefault(key, load)
        if current is not load:
            value, _ = await current.flight.wait()
            return self._done("coalesced", value)
        load.flight.start(lambda: self._loader.load_only(load, loader, key))
        value, _ = await load.flight.wait()
        return self._done("bypass", value)

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
        keys = entry_keys(self._namespace, self.name, key)
        wanted = self._tags(tags) if tags else ()
        life = self.options.ttl if ttl is None else call_ttl(self.options, ttl, bool(wanted))
        self._writable()
        try:
            versions = await self._store.versions(wanted) if wanted else {}
            data, px, _ = self._loader.envelope(value, life, 0.0, versions, wanted)
            await self._store.write(keys, data, px)
        except BackendError as exc:
            self._backend_failed(exc)
            raise
        self._backend_ok()
        if self._near is not None:
            self._near.drop(keys.encoded)

    async def delete(self, key: object) -> bool:
        """Remove ``key``; a load of it that began earlier is not written back.

        Returns:
            True if an entry was there.

        Raises:
            BackendUnavailable: the delete did not happen (the cache is degraded).
        """
        keys = entry_keys(self._namespace, self.name, key)
        if self._near is not None:
            self._near.drop(keys.encoded)
        self._writable()
        try:
            existed = await self._store.delete(keys)
        except BackendError as exc:
            self._backend_failed(exc)
            raise
        self._backend_ok()
        if self._near is not None:
            self._near.drop(keys.encoded)
        return existed

    async def invalidate_tag(self, tag: str | int) -> None:
        """Invalidate every entry written under ``tag``, in O(1) (no key scans).

        Entries loaded before this call, including loads still in flight, are not served
        afterwards, here or in other processes.

        Raises:
            BackendUnavailable: the invalidation did not happen (the cache is degraded).
        """
        ((encoded, version_key),) = self._tags([tag])
        if self._near is not None:
            self._near.drop_tag(encoded)
        self._writable()
        retention_ms = int(self.options.tag_retention * 1000)
        try:
            await self._store.invalidate_tag(encoded, version_key, retention_ms)
        except BackendError as exc:
            self._backend_failed(exc)
            raise
        self._backend_ok()
        if self._near is not None:
            self._near.drop_tag(encoded)

    # -- decorator -----------------------------------------------------------------------

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

        def decorate(function: AsyncCachedFunction[P, R]) -> AsyncCachedFunction[P, R]:
            async_check_cacheable(function)
            make_key = key or default_key(function)

            @functools.wraps(function)
            async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
                call_tags = tags(*args, **kwargs) if callable(tags) else tags or ()
                result: R = await self.get_or_load(
                    make_key(*args, **kwargs),
                    lambda: function(*args, **kwargs),
                    ttl=ttl,
                    tags=call_tags,
                )
                return result

            async def invalidate(*args: Any, **kwargs: Any) -> bool:
                return await self.delete(make_key(*args, **kwargs))

            wrapper.invalidate = invalidate  # type: ignore[attr-defined]
            wrapper.cache = self  # type: ignore[attr-defined]
            return wrapper

        return decorate

    # -- plumbing ------------------------------------------------------------------------

    def _tags(self, tags: object) -> Tags:
        return tag_keys(self._namespace, self.name, tags)

    def _done(self, result: str, value: Any) -> Any:
        self._results[result].inc()
        _context.record("cache", name=self.name, result=result)
        return value

    def _writable(self) -> None:
        if not self._breaker.allow():
            raise BackendUnavailable(
                f"cache {self.name!r} is degraded (backend unreachable); the write was not made"
            )

    async def _start_near(self) -> None:
        if not self._breaker.allow():
            return
        try:
            await self._store.ensure_listening()
        except BackendError as exc:
            self._backend_failed(exc)
        else:
            self._near_ready = True

    def _on_event(self, origin: str, op: str, subject: str) -> None:
        near = self._near
        if near is None:
            return
        if op == "*":
            near.clear()
        elif origin != self._origin:
            if op == "k":
                near.drop(subject)
            elif op == "t":
                near.drop_tag(subject)

    def _backend_failed(self, exc: BaseException) -> None:
        if self._breaker.failure():
            self._degraded.set(1)
            logger.warning(
                "cache %r degraded: backend unreachable, serving from loaders",
                self.name,
                extra={
                    "event.action": "cache-degraded",
                    "interlock.cache.name": self.name,
                    "error.message": str(exc),
                    "error.type": type(exc).__name__,
                },
            )

    def _backend_ok(self) -> None:
        if self._breaker.success():
            self._degraded.set(0)
            logger.info(
                "cache %r recovered: backend reachable again",
                self.name,
                extra={"event.action": "cache-recovered", "interlock.cache.name": self.name},
            )

    async def aclose(self) -> None:
        """Stop background refreshes and leave the cache's channel."""
        await self._loader.aclose()
        await self._store.aclose()

    def __repr__(self) -> str:
        state = "degraded" if self.degraded else "ok"
        return f"<{type(self).__name__} {self.name!r} ttl={self.options.ttl:g} {state}>"
