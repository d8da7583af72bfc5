"""``interlock.django.InterlockCache``: interlock's cache behind Django's cache API.

::

    CACHES = {
        "default": {
            "BACKEND": "interlock.django.InterlockCache",
            "LOCATION": "redis://localhost:6379/0",
            "TIMEOUT": 300,
            "OPTIONS": {"SERIALIZER": "pickle", "HMAC_KEY": env("CACHE_HMAC_KEY"), "NEAR": True},
        }
    }

Sync methods run on a blocking :class:`~interlock.Interlock`, shared by every alias and
thread of the process with the same settings; the ``a*`` methods run on an
:class:`~interlock.AsyncInterlock` of the running event loop (truly async, no threads).
See docs/django.md for the options, the Django semantics and what differs.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Iterable, Mapping
from typing import Any

from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from interlock.cache._core import MAX_TTL_S, CacheOptions, cache_options
from interlock.errors import ConfigError, SerializationError
from interlock.metrics import Metrics
from interlock.serializers import PickleError, PickleSerializer, Serializer

__all__ = ["InterlockCache"]

_NUMBERS = {
    "NEAR_SIZE": "near_size", "NEAR_TTL": "near_ttl", "STALE_TTL": "stale_ttl",
    "EARLY_REFRESH": "early_refresh", "JITTER": "jitter", "LOCK_WAIT": "lock_wait",
    "BREAKER_THRESHOLD": "breaker_threshold", "BREAKER_COOLDOWN": "breaker_cooldown",
    "COMPRESS_THRESHOLD": "compress_threshold",
}  # fmt: skip
_CLIENT = {"SOCKET_TIMEOUT": "socket_timeout", "CONNECT_TIMEOUT": "connect_timeout"}
_OTHER = {"NAME", "NAMESPACE", "NEAR", "SERIALIZER", "HMAC_KEY", "REGISTRY"}
_KNOWN = set(_NUMBERS) | set(_CLIENT) | _OTHER

_lock = threading.Lock()
_metrics: dict[int, Metrics] = {}  # id(registry) -> the one Metrics registered on it
_sync_stores: dict[tuple[Any, ...], Any] = {}
_async_stores: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[Any, ...], Any]]
_async_stores = weakref.WeakKeyDictionary()
_async_clients: dict[Any, Any] = {}  # an async store -> its AsyncInterlock (for aclose)


def _improper(message: str) -> ImproperlyConfigured:
    return ImproperlyConfigured(f"interlock.django.InterlockCache: {message}")


def _serializer(options: Mapping[str, Any]) -> Serializer | str:
    chosen = options.get("SERIALIZER", "msgpack")
    key = options.get("HMAC_KEY")
    if chosen == "pickle":
        if key is None:
            raise _improper(
                'OPTIONS "SERIALIZER": "pickle" needs "HMAC_KEY": a secret of at least 16 '
                "bytes shared by every process of the cache (pickle runs code on load, so "
                "only payloads signed with it are unpickled)"
            )
        return PickleSerializer(key.encode() if isinstance(key, str) else key)
    if key is not None:
        raise _improper('"HMAC_KEY" is only used with "SERIALIZER": "pickle"; remove it')
    if isinstance(chosen, str) and "." in chosen:
        chosen = import_string(chosen)()
    return chosen  # type: ignore[no-any-return]


def _registry(options: Mapping[str, Any]) -> Any:
    registry = options.get("REGISTRY", "prometheus_client.REGISTRY")
    return import_string(registry) if isinstance(registry, str) else registry


class InterlockCache(BaseCache):  # type: ignore[misc]  # Django ships no types
    """Django cache backend on interlock (``BACKEND: "interlock.django.InterlockCache"``).

    Args:
        server: ``LOCATION``: an interlock backend URL (``redis://``, ``rediss://``,
            ``redis+sentinel://``, ``mem://``; default ``INTERLOCK_URL``).
        params: Django's cache settings; ``OPTIONS`` (see docs/django.md): ``NAME``
            (the interlock cache name and metric label, default ``"django"``),
            ``NAMESPACE``, ``SERIALIZER`` (``"msgpack"``, ``"json"``, ``"pickle"`` with
            ``HMAC_KEY``, or a dotted path to a serializer class), ``NEAR``, ``NEAR_SIZE``,
            ``NEAR_TTL``, ``STALE_TTL``, ``EARLY_REFRESH``, ``JITTER`` (default 0),
            ``LOCK_WAIT``, ``BREAKER_THRESHOLD``, ``BREAKER_COOLDOWN``,
            ``COMPRESS_THRESHOLD``, ``REGISTRY`` (a Prometheus registry, dotted path or
            ``None``; default ``prometheus_client.REGISTRY``), ``SOCKET_TIMEOUT``,
            ``CONNECT_TIMEOUT``.

    Raises:
        ImproperlyConfigured: for an unknown or invalid option, naming the fix.
    """

    def __init__(self, server: str | None, params: dict[str, Any]) -> None:
        options = dict(params.get("OPTIONS") or {})
        culling = {"MAX_ENTRIES", "CULL_FREQUENCY"} & set(options)
        if culling:
            raise _improper(
                f"{', '.join(sorted(culling))} is not supported: Redis evicts by its "
                "maxmemory-policy (e.g. allkeys-lru); remove the option"
            )
        params = {**params, "OPTIONS": {}}
        super().__init__(params)
        unknown = set(options) - _KNOWN
        if unknown:
            raise _improper(
                f"unknown OPTIONS {', '.join(sorted(unknown))}; valid: {', '.join(sorted(_KNOWN))}"
            )
        self._location = server or None
        self._name = str(options.get("NAME", "django"))
        self._namespace = options.get("NAMESPACE")
        self._client_options = {_CLIENT[k]: v for k, v in options.items() if k in _CLIENT}
        ttl = self.default_timeout
        life = MAX_TTL_S if ttl is None or ttl > MAX_TTL_S else max(float(ttl), 0.001)
        values: dict[str, Any] = {"ttl": life, "negative_ttl": life, "jitter": 0.0}
        values.update({_NUMBERS[k]: v for k, v in options.items() if k in _NUMBERS})
        values["near"] = options.get("NEAR", False)
        try:
            values["serializer"] = _serializer(options)
            self._options: CacheOptions = cache_options(**values)
        except ConfigError as exc:
            raise _improper(f"{exc} (set it in OPTIONS in upper case)") from exc
        self._registry = _registry(options)
        self._config = (
            self._location, self._namespace, self._name, id(self._registry),
            tuple(sorted(self._client_options.items())), repr(options),
        )  # fmt: skip

    # -- clients -------------------------------------------------------------------------

    def _metrics(self) -> Metrics:
        registry = self._registry
        if registry is None:
            return Metrics(None)
        known = _metrics.get(id(registry))
        if known is None:
            try:
                known = _metrics[id(registry)] = Metrics(registry)
            except ValueError as exc:  # the registry already has interlock's metrics
                raise _improper(
                    f"cannot register interlock's metrics on {registry!r}: {exc}; give the "
                    'cache its own registry ("REGISTRY") or None'
                ) from exc
        return known

    def _store(self) -> Any:
        store = _sync_stores.get(self._config)
        if store is not None:
            return store
        from interlock._sync.cache.cache import Cache
        from interlock._sync.cache.django import DjangoStore
        from interlock._sync.client import Interlock

        with _lock:
            store = _sync_stores.get(self._config)
            if store is None:
                il = Interlock(
                    self._location, namespace=self._namespace, registry=None, recovery=False,
                    **self._client_options,
                )  # fmt: skip
                cache = Cache(il.backend, il.settings, self._metrics(), self._name, self._options)
                store = _sync_stores[self._config] = DjangoStore(cache)
        return store

    def _astore(self) -> Any:
        loop = asyncio.get_running_loop()
        stores = _async_stores.get(loop)
        store = None if stores is None else stores.get(self._config)
        if store is not None:
            return store
        from interlock._async.cache.cache import AsyncCache
        from interlock._async.cache.django import AsyncDjangoStore
        from interlock._async.client import AsyncInterlock

        with _lock:
            stores = _async_stores.setdefault(loop, {})
            store = stores.get(self._config)
            if store is None:
                ail = AsyncInterlock(
                    self._location, namespace=self._namespace, registry=None, recovery=False,
                    **self._client_options,
                )  # fmt: skip
                cache = AsyncCache(
                    ail.backend, ail.settings, self._metrics(), self._name, self._options
                )
                store = stores[self._config] = AsyncDjangoStore(cache)
                _async_clients[store] = ail
        return store

    # -- timeouts ------------------------------------------------------------------------

    def get_backend_timeout(self, timeout: Any = DEFAULT_TIMEOUT) -> float | None:
        """Seconds from now (``None``: never expires, ``0``: already expired)."""
        if timeout is DEFAULT_TIMEOUT:
            timeout = self.default_timeout
        return None if timeout is None else max(float(timeout), 0.0)

    def _flight_timeout(self, timeout: Any) -> float | None:
        """The TTL for a single-flight ``get_or_set``, or None if it needs the plain path."""
        seconds = self.get_backend_timeout(timeout)
        return seconds if seconds is not None and 0.001 <= seconds <= MAX_TTL_S else None

    def _key(self, key: Any, version: int | None) -> str:
        return str(self.make_and_validate_key(key, version=version))

    # -- the sync API --------------------------------------------------------------------

    def add(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None
    ) -> bool:
        with _pickling():
            return bool(
                self._store().add(self._key(key, version), value, self.get_backend_timeout(timeout))
            )

    def get(self, key: Any, default: Any = None, version: Any = None) -> Any:
        return self._store().get(self._key(key, version), default)

    def set(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None
    ) -> None:
        with _pickling():
            self._store().set(self._key(key, version), value, self.get_backend_timeout(timeout))

    def touch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None) -> bool:
        return bool(self._store().touch(self._key(key, version), self.get_backend_timeout(timeout)))

    def delete(self, key: Any, version: Any = None) -> bool:
        return bool(self._store().delete(self._key(key, version)))

    def has_key(self, key: Any, version: Any = None) -> bool:
        return bool(self._store().has_key(self._key(key, version)))

    def get_many(self, keys: Iterable[Any], version: Any = None) -> dict[Any, Any]:
        named = {self._key(key, version): key for key in keys}
        return {named[k]: v for k, v in self._store().get_many(named).items()}

    def set_many(
        self, data: Mapping[Any, Any], timeout: Any = DEFAULT_TIMEOUT, version: Any = None
    ) -> list[Any]:
        named = {self._key(key, version): key for key in data}
        with _pickling():
            failed = self._store().set_many(
                {k: data[named[k]] for k in named}, self.get_backend_timeout(timeout)
            )
        return [named[k] for k in failed]

    def delete_many(self, keys: Iterable[Any], version: Any = None) -> None:
        self._store().delete_many([self._key(key, version) for key in keys])

    def incr(self, key: Any, delta: int = 1, version: Any = None) -> Any:
        return self._store().incr(self._key(key, version), delta)

    def get_or_set(
        self, key: Any, default: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None
    ) -> Any:
        """Single flight: one caller (per process, and across processes) runs ``default``."""
        ttl = self._flight_timeout(timeout)
        if ttl is None:
            return super().get_or_set(key, default, timeout, version)
        loader = default if callable(default) else (lambda: default)
        with _pickling():
            return self._store().get_or_set(self._key(key, version), loader, ttl)

    def clear(self) -> None:
        self._store().clear()

    def close(self, **kwargs: Any) -> None:
        """Called at the end of each request: connections are kept (they are shared)."""

    # -- the async API: on the running loop's AsyncInterlock -----------------------------

    async def aadd(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None
    ) -> bool:
        with _pickling():
            return bool(
                await self._astore().add(
                    self._key(key, version), value, self.get_backend_timeout(timeout)
                )
            )

    async def aget(self, key: Any, default: Any = None, version: Any = None) -> Any:
        return await self._astore().get(self._key(key, version), default)

    async def aset(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None
    ) -> None:
        with _pickling():
            await self._astore().set(
                self._key(key, version), value, self.get_backend_timeout(timeout)
            )

    async def atouch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None) -> bool:
        return bool(
            await self._astore().touch(self._key(key, version), self.get_backend_timeout(timeout))
        )

    async def adelete(self, key: Any, version: Any = None) -> bool:
        return bool(await self._astore().delete(self._key(key, version)))

    async def ahas_key(self, key: Any, version: Any = None) -> bool:
        return bool(await self._astore().has_key(self._key(key, version)))

    async def aget_many(self, keys: Iterable[Any], version: Any = None) -> dict[Any, Any]:
        named = {self._key(key, version): key for key in keys}
        return {named[k]: v for k, v in (await self._astore().get_many(named)).items()}

    async def aset_many(
        self, data: Mapping[Any, Any], timeout: Any = DEFAULT_TIMEOUT, version: Any = None
    ) -> list[Any]:
        named = {self._key(key, version): key for key in data}
        with _pickling():
            failed = await self._astore().set_many(
                {k: data[named[k]] for k in named}, self.get_backend_timeout(timeout)
            )
        return [named[k] for k in failed]

    async def adelete_many(self, keys: Iterable[Any], version: Any = None) -> None:
        await self._astore().delete_many([self._key(key, version) for key in keys])

    async def aincr(self, key: Any, delta: int = 1, version: Any = None) -> Any:
        return await self._astore().incr(self._key(key, version), delta)

    async def aget_or_set(
        self, key: Any, default: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None
    ) -> Any:
        ttl = self._flight_timeout(timeout)
        if ttl is None:
            return await super().aget_or_set(key, default, timeout, version)
        loader = default if callable(default) else (lambda: default)
        with _pickling():
            return await self._astore().get_or_set(self._key(key, version), loader, ttl)

    async def aclear(self) -> None:
        await self._astore().clear()

    async def aclose(self, **kwargs: Any) -> None:
        """Close this event loop's connections (the next call opens new ones)."""
        loop = asyncio.get_running_loop()
        with _lock:
            store = (_async_stores.get(loop) or {}).pop(self._config, None)
        if store is not None:
            await store.cache.aclose()
            await _async_clients.pop(store).aclose()


class _pickling:
    """Re-raise a pickling failure as the ``pickle.PickleError`` Django's callers expect."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if isinstance(exc, SerializationError) and isinstance(exc.__cause__, PickleError):
            raise exc.__cause__ from exc
