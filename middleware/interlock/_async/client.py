"""The facade: ``AsyncInterlock``, from which the blocking ``Interlock`` is generated."""

from __future__ import annotations

from typing import Any, Unpack

from prometheus_client import CollectorRegistry

from interlock._async.backend.base import AsyncBackend, create_backend
from interlock._async.backend.chaos import AsyncChaosBackend
from interlock._async.cache.cache import AsyncCache
from interlock._async.lock.lock import _UNSET, AsyncLock, OnLost
from interlock._async.lock.service import AsyncLockService
from interlock._async.txn.manager import AsyncTransactionManager
from interlock._async.txn.transaction import AsyncTransaction
from interlock._config import Settings, load_settings
from interlock._keys import base_key
from interlock._tracing import Tracer
from interlock.backends._redis_url import redact_url
from interlock.cache._core import CacheKwargs, cache_options
from interlock.chaos._plan import ChaosPlan, parse_chaos
from interlock.errors import ConfigError, FenceRejected
from interlock.lock._core import LockInfo, info_from_reply
from interlock.lock._scripts import FENCED_SET, INFO
from interlock.metrics import Metrics
from interlock.txn._records import RecoveryReport

_DEFAULT_REGISTRY: Any = object()


class AsyncInterlock:
    """Distributed locks, caches and transactions for one deployment (async API).

    Args:
        url: backend URL: ``mem://`` (default; embedded, one process), ``redis://``,
            ``rediss://user:password@host:port/db``, ``redis+cluster://h1:p1,h2:p2`` or
            ``redis+sentinel://h1:p1,h2:p2/service_name[/db]``.
            Falls back to ``INTERLOCK_URL``.
        namespace: key prefix of this deployment (``INTERLOCK_NAMESPACE``).
        registry: Prometheus registry for interlock's metrics. By default a registry of
            this instance's own (``.registry``); pass ``prometheus_client.REGISTRY`` to
            join the global one, or ``None`` to register nowhere.
        decision_log: where transactions record commit decisions: ``None`` (the backend;
            Redis must run with ``appendfsync always``), a ``postgresql://`` URL, or a
            decision-log object. See docs/transactions.md.
        durability: ``"strict"`` (default) refuses a decision log that may lose
            decisions; ``"relaxed"`` logs a warning instead.
        recovery: ``True`` (default) runs the leader-elected transaction recovery worker
            by itself once a recovery resource is registered or the first transaction is
            opened (async API: at the first such call inside an event loop, or the
            middleware's lifespan start-up); ``False`` leaves recovery to explicit
            ``transactions.start_recovery()`` / ``recover()`` calls. See
            docs/transactions.md, *Recovery*.
        tracer_provider: the OpenTelemetry ``TracerProvider`` of interlock's spans; by
            default the global one the app configured (docs/tracing.md). Without
            ``opentelemetry-api`` (``pip install 'interlock[otel]'``) no spans are made.
        **options: ``socket_timeout``, ``connect_timeout``, ``lock_ttl``,
            ``lock_timeout``, ``label_cap``, ``chaos`` (see ``interlock._config.Settings``
            and ``interlock.chaos``).

    Raises:
        ConfigError: for an invalid URL or option, naming the fix.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        namespace: str | None = None,
        registry: CollectorRegistry | None = _DEFAULT_REGISTRY,
        backend: AsyncBackend | None = None,
        decision_log: object = None,
        durability: str = "strict",
        recovery: bool = True,
        tracer_provider: object | None = None,
        **options: Any,
    ) -> None:
        self.settings: Settings = load_settings(url, namespace=namespace, **options)
        if registry is _DEFAULT_REGISTRY:
            registry = CollectorRegistry()
        self.registry: CollectorRegistry | None = registry
        self.metrics = Metrics(registry, self.settings.label_cap)
        self.tracer = Tracer(tracer_provider)
        self.backend: AsyncBackend = backend or create_backend(self.settings)
        if self.settings.chaos:
            plan = ChaosPlan(parse_chaos(self.settings.chaos))
            self.backend = AsyncChaosBackend(self.backend, plan, self.metrics)
        self.locks = AsyncLockService(self.backend, self.settings, self.metrics, self.tracer)
        self.transactions = AsyncTransactionManager(
            self.backend,
            self.namespace,
            self.metrics,
            self.lock,
            decision_log=decision_log,
            durability=durability,
            recovery=recovery,
            tracer=self.tracer,
        )
        self._caches: dict[str, tuple[AsyncCache, dict[str, Any]]] = {}

    @property
    def namespace(self) -> str:
        return self.settings.namespace

    def lock(
        self,
        name: str,
        key: object = "",
        *,
        ttl: float | None = None,
        timeout: float | None = _UNSET,
        reentrant: bool = False,
        auto_renew: bool = True,
        on_lost: OnLost | None = None,
    ) -> AsyncLock:
        """A distributed lock on the resource ``key`` of the lock family ``name``.

        Args:
            name: low-cardinality family name (a metric label), e.g. ``"account"``.
            key: the resource (str, int or tuple of them), e.g. the account id.
            ttl: lease time-to-live in seconds (default ``lock_ttl``, 30 s). With
                ``auto_renew`` the lease is extended every ttl/3 while held, so the TTL
                only bounds how long a crashed holder blocks others.
            timeout: seconds to wait before ``LockTimeout`` (default ``lock_timeout``,
                10 s; ``None`` waits forever).
            reentrant: let the holding task/thread acquire again (nesting count);
                otherwise re-acquiring raises ``LockAlreadyHeld``.
            auto_renew: renew the lease in the background while held.
            on_lost: called with the lease if it is lost while held.
        """
        return AsyncLock(
            self.locks,
            name,
            key,
            ttl=ttl,
            timeout=timeout,
            reentrant=reentrant,
            auto_renew=auto_renew,
            on_lost=on_lost,
        )

    async def lock_info(self, name: str, key: object = "") -> LockInfo | None:
        """The current holder of ``(name, key)``, or ``None`` when the lock is free."""
        lock = self.lock(name, key)
        reply = await self.backend.run(INFO, lock.keys[:1], [])
        return info_from_reply(lock.name, lock.key, reply)

    def _fenced_key(self, resource: object) -> str:
        return base_key(self.namespace, "fenced", "resource", resource)

    async def fenced_set(
        self, resource: object, value: bytes | str, fence: int, *, ttl: float | None = None
    ) -> None:
        """Write ``value`` to ``resource`` unless a newer fence already wrote it.

        Use the lease's fence: a holder that was paused past its TTL carries an older fence
        than the lock's next holder and is refused.

        Raises:
            FenceRejected: a write with a greater fence happened.
        """
        ttl_ms = 0 if ttl is None else int(ttl * 1000)
        args = [int(fence), value, ttl_ms]
        if await self.backend.run(FENCED_SET, [self._fenced_key(resource)], args) != 1:
            raise FenceRejected(f"fence {fence} is older than the last write to {resource!r}")

    async def fenced_get(self, resource: object) -> tuple[bytes, int] | None:
        """The value and fence last written by :meth:`fenced_set`, or ``None``."""
        reply = await self.backend.execute("HMGET", self._fenced_key(resource), "value", "fence")
        if reply[0] is None:
            return None
        return reply[0], int(reply[1])

    def transaction(self, name: str, *, timeout: float | None = None) -> AsyncTransaction:
        """A two-phase-commit transaction; commits on clean exit, aborts on exception.

        Args:
            name: low-cardinality name (a metric label), e.g. ``"checkout"``.
            timeout: seconds within which every branch must vote (default 10).
        """
        return self.transactions.transaction(name, timeout)

    async def recover(self, *, safety: float = 60.0) -> RecoveryReport:
        """Resolve in-doubt transactions of this namespace once; returns a report.

        Args:
            safety: seconds an undecided transaction is given before it is presumed
                aborted; keep it above your longest transaction timeout.
        """
        return await self.transactions.recover(safety=safety)

    def cache(self, name: str, **options: Unpack[CacheKwargs]) -> AsyncCache:
        """The named cache ``name``, created on first use; later calls return the same one.

        Args:
            name: low-cardinality cache name (a metric label), e.g. ``"products"``.
            **options: only on first use (the same values again are accepted):
                ``ttl`` (60 s), ``stale_ttl`` (0: serve stale while refreshing),
                ``negative_ttl`` (min(ttl, 10 s); 0 = don't cache ``None``), ``jitter``
                (0.1), ``early_refresh`` (XFetch beta, 1.0; 0 = off), ``near`` (False),
                ``near_size`` (1024), ``near_ttl`` (min(ttl, 5 s)), ``serializer``
                ("msgpack", "json" or a ``Serializer`` such as
                ``PickleSerializer(hmac_key=...)``), ``compress_threshold`` (4096 bytes;
                None = never), ``lock_wait`` (5 s), ``breaker_threshold`` (3),
                ``breaker_cooldown`` (1 s), ``tag_retention``. See docs/cache.md.

        Raises:
            ConfigError: for an invalid option, or options that differ from the ones the
                cache was created with.
        """
        known = self._caches.get(name)
        if known is None:
            created = AsyncCache(
                self.backend, self.settings, self.metrics, name, cache_options(**options),
                self.tracer,
            )  # fmt: skip
            known = self._caches.setdefault(name, (created, dict(options)))
        cache, first = known
        if options and options != first:
            raise ConfigError(
                f"cache {name!r} already exists with options {first!r}; pass the same "
                "options, none, or use another cache name"
            )
        return cache

    async def aclose(self) -> None:
        """Stop background work and close connections."""
        for cache, _ in list(self._caches.values()):
            await cache.aclose()
        await self.transactions.aclose()
        await self.locks.aclose()
        await self.backend.aclose()

    async def __aenter__(self) -> AsyncInterlock:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        url = redact_url(self.settings.url)  # never the URL's passwords
        return f"<{type(self).__name__} {url} namespace={self.namespace!r}>"
