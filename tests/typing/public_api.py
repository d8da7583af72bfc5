"""The public API as users write it, checked by mypy (``files`` in pyproject.toml); never run.

A regression in the public types (an option that becomes ``Any``, a return type lost) fails
``mypy``: each ``assert_type`` pins a type, and each ``# type: ignore[...]`` marks a mistake
mypy must keep catching (``--strict`` reports an ignore that is no longer needed).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any, assert_type

import interlock.testing
from interlock import (
    AsyncCache,
    AsyncInterlock,
    AsyncLease,
    AsyncLock,
    AsyncTransaction,
    Cache,
    CacheKwargs,
    CacheRule,
    Interlock,
    InterlockMiddleware,
    InterlockWSGIMiddleware,
    Lease,
    LockInfo,
    LockRule,
    Transaction,
)
from interlock.logs import configure_logging

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]


class Inventory:
    """A custom two-phase-commit participant (the ``Participant`` protocol)."""

    def prepare(self, xid: str) -> bool:
        return True

    def commit(self, xid: str) -> None:
        pass

    def abort(self, xid: str) -> None:
        pass


class AsyncInventory:
    """The same under asyncio (the ``AsyncParticipant`` protocol)."""

    async def prepare(self, xid: str) -> bool:
        return True

    async def commit(self, xid: str) -> None:
        pass

    async def abort(self, xid: str) -> None:
        pass


def blocking_api() -> None:
    with Interlock("mem://", namespace="shop") as il:
        lock = il.lock("account", 42, ttl=30, timeout=5.0, reentrant=False, auto_renew=True)
        with lock as lease:
            assert_type(lease, Lease)
            assert_type(lease.fence, int)
            lease.check()
        assert_type(lock.acquire(blocking=False), Lease | None)
        assert_type(il.lock_info("account", 42), LockInfo | None)
        il.lock("account", 42, ttl="30")  # type: ignore[arg-type]

        products = il.cache("products", ttl=60, stale_ttl=30, near=True, serializer="json")
        assert_type(products, Cache)
        products.get_or_load("sku-1", lambda: {"price": 3}, ttl=10, tags=["catalog"])
        products.set("sku-1", {"price": 4})
        products.invalidate_tag("catalog")
        il.cache("products", ttll=60)  # type: ignore[call-arg]
        il.cache("products", near="yes")  # type: ignore[arg-type]
        options: CacheKwargs = {"ttl": 60, "compress_threshold": None}
        il.cache("prices", **options)

        @products.cached(key=lambda sku: sku, ttl=10)
        def price(sku: str) -> float:
            return 3.0

        assert_type(price("sku-1"), float)

        with il.transaction("checkout", timeout=10) as tx:
            assert_type(tx, Transaction)
            tx.redis().set("stock:sku-1", 3)
            tx.enlist(Inventory(), resource="inventory")
            tx.on_commit(lambda: products.delete("sku-1"))


async def async_api() -> None:
    async with AsyncInterlock("mem://", namespace="shop") as il:
        lock = il.lock("account", 42, timeout=None)
        assert_type(lock, AsyncLock)
        async with lock as lease:
            assert_type(lease, AsyncLease)
            lease.check()
        assert_type(await lock.acquire(blocking=False), AsyncLease | None)

        products = il.cache("products", ttl=60, early_refresh=0)
        assert_type(products, AsyncCache)

        async def load() -> dict[str, int]:
            return {"price": 3}

        await products.get_or_load("sku-1", load)
        il.cache("products", stale=30)  # type: ignore[call-arg]

        @products.cached(ttl=10)
        async def price(sku: str) -> float:
            return 3.0

        assert_type(await price("sku-1"), float)

        async with il.transaction("checkout") as tx:
            assert_type(tx, AsyncTransaction)
            tx.redis().set("stock:sku-1", 3)
            tx.enlist(AsyncInventory(), resource="inventory")


async def asgi_app(
    scope: Scope,
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    pass


def wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    return [b""]


def middleware() -> None:
    InterlockMiddleware(
        asgi_app,
        interlock=AsyncInterlock("mem://"),
        locks=[LockRule("/accounts/{account_id}/withdraw", name="account", key="{account_id}")],
        cache=[CacheRule("/products/{product_id}", ttl=60, tags=["product:{product_id}"])],
        routes=["/health"],
        metrics_path=None,
    )
    InterlockWSGIMiddleware(wsgi_app, interlock=Interlock("mem://"), metrics_path="/metrics")


def observability(il: Interlock) -> None:
    assert_type(configure_logging(service="shop", level="INFO", interlock=il), logging.Handler)
    with interlock.testing.capture_logs("interlock") as logs:
        assert_type(logs.records, list[dict[str, Any]])
    assert_type(interlock.testing.metric_value(il, "interlock_lock_acquire_seconds_count"), float)
