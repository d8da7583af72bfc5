"""The pub/sub side of the Redis backend: one connection per backend, owned by a listener.

The listener (a task, or a daemon thread in the generated sync twin) (re)subscribes to every
channel after each reconnect and tells ``on_reset`` callbacks that messages may have been
missed. Behind Sentinel it connects to the master the sentinels name, asks again before
every reconnect, and checks every ``_MASTER_CHECK`` s that the master has not moved (a
demoted master keeps its subscribers but need not relay what the new one publishes).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as redis_lib
from redis import exceptions as redis_errors

from interlock._concurrency import AsyncEvent, AsyncWorker, async_sleep
from interlock._config import Settings
from interlock.errors import BackendUnavailable

logger = logging.getLogger("interlock.backend")
Subscriber = Callable[[bytes], None]
_POLL = 0.1  # seconds the listener blocks per read; bounds how fast it notices new channels
_MASTER_CHECK = 1.0  # seconds between the Sentinel listener's "is the master still there?"
_RECONNECT_MAX = 0.25  # seconds between reconnects: well inside lock.RESTART_GRACE_S


class AsyncPubSubListener:
    """Subscriptions of one Redis backend and the listener that serves them.

    Args:
        settings: the backend's settings (timeouts).
        targets: connection options to try in turn (Cluster: every node; single: its URL);
            empty behind Sentinel, where the master is asked for on every (re)connect.
        sentinel: the Sentinel manager (``discover_master``), or None.
        service: the Sentinel service name, or None.
        master_options: connection options for the master behind Sentinel.
    """

    def __init__(
        self,
        settings: Settings,
        targets: list[dict[str, Any]],
        sentinel: Any = None,
        service: str | None = None,
        master_options: dict[str, Any] | None = None,
    ) -> None:
        self._settings = settings
        self._pubsub_targets = targets
        self._sentinel = sentinel
        self._sentinel_service = service
        self._sentinel_options = master_options or {}
        self._callbacks: dict[str, list[Subscriber]] = {}
        self._active: set[str] = set()
        self._confirmed: dict[str, AsyncEvent] = {}
        self._resets: list[Callable[[], None]] = []
        self._run_id: str | None = None  # of the server the listener last connected to
        self.restarts = 0  # times that run_id changed
        self._closing = False
        self._listener = AsyncWorker(self._listen, "interlock-redis-listener")

    async def subscribe(
        self, channel: str, callback: Subscriber, timeout: float | None = None
    ) -> None:
        callbacks = self._callbacks.setdefault(channel, [])
        if callback not in callbacks:
            callbacks.append(callback)
        ready = self._confirmed.get(channel)
        if ready is None:
            ready = self._confirmed[channel] = AsyncEvent()
        elif ready.is_set():
            return
        self._listener.start()
        bound = self._settings.connect_timeout + self._settings.socket_timeout + 2 * _POLL
        if timeout is not None:
            bound = min(bound, timeout)
        if not await ready.wait(bound):
            raise BackendUnavailable(f"could not subscribe to {channel!r} within {bound:g}s")

    async def unsubscribe(self, channel: str, callback: Subscriber) -> None:
        callbacks = self._callbacks.get(channel, [])
        if callback in callbacks:
            callbacks.remove(callback)

    def on_reset(self, callback: Callable[[], None]) -> None:
        self._resets.append(callback)

    def _fire_resets(self) -> None:
        for callback in list(self._resets):
            try:
                callback()
            except Exception:  # one bad callback must not stop the listener
                logger.exception("pub/sub reset callback failed")

    async def _pubsub_target(self, attempt: int) -> dict[str, Any]:
        """Where the listener connects next: the current master when behind Sentinel."""
        if self._pubsub_targets:
            return dict(self._pubsub_targets[attempt % len(self._pubsub_targets)])
        host, port = await self._sentinel.discover_master(self._sentinel_service)
        return {"host": host, "port": port, **self._sentinel_options}

    async def _master_moved(self, pubsub: Any) -> bool:
        """Behind Sentinel, every ``_MASTER_CHECK`` s: is the master elsewhere now?

        A demoted master keeps its subscribers and need not relay what the new master
        publishes, so the listener moves by itself.
        """
        if self._sentinel_service is None or time.monotonic() < pubsub.next_check:
            return False
        pubsub.next_check = time.monotonic() + _MASTER_CHECK
        try:
            address = await self._sentinel.discover_master(self._sentinel_service)
        except (redis_errors.RedisError, OSError):  # sentinels unreachable: stay put
            return False
        return bool(tuple(address) != pubsub.address)

    async def _new_pubsub(self, attempt: int) -> Any:
        target = await self._pubsub_target(attempt)
        url = target.pop("url", None)
        client: Any = redis_lib.Redis.from_url(url, **target) if url else redis_lib.Redis(**target)
        run_id = (await client.info("server"))["run_id"]
        if self._run_id is not None and run_id != self._run_id:
            logger.warning(
                "Redis server changed (run_id %s -> %s): restarted or failed over; "
                "held locks are re-checked, those it forgot are lost",
                self._run_id,
                run_id,
                extra={"event.action": "backend-restarted", "server.address": target.get("host")},
            )
            self.restarts += 1
        self._run_id = run_id
        pubsub = client.pubsub()
        pubsub.owner = client  # closed together in _drop
        pubsub.address = (target.get("host"), target.get("port"))
        pubsub.next_check = time.monotonic() + _MASTER_CHECK
        return pubsub

    async def _listen(self) -> None:
        attempt = 0
        pubsub: Any = None
        while not self._closing:
            try:
                if pubsub is not None and await self._master_moved(pubsub):
                    await self._drop(pubsub)
                    pubsub = None
                    self._fire_resets()
                if pubsub is None:
                    pubsub = await self._new_pubsub(attempt)
                    self._active.clear()
                pending = [c for c in self._callbacks if c not in self._active]
                if pending:
                    await pubsub.subscribe(*pending)
                    self._active.update(pending)
                message = await pubsub.get_message(timeout=_POLL)
                if message is None:
                    continue
                channel = message["channel"].decode()
                if message["type"] == "subscribe":
                    if attempt:
                        attempt = 0
                        self._fire_resets()
                    event = self._confirmed.get(channel)
                    if event is not None:
                        event.set()
                elif message["type"] == "message":
                    for callback in list(self._callbacks.get(channel, ())):
                        callback(message["data"])
            except (redis_errors.RedisError, OSError) as exc:
                if pubsub is not None:
                    await self._drop(pubsub)
                if attempt == 0:
                    logger.warning("pub/sub connection lost, reconnecting: %s", exc)
                    self._fire_resets()
                pubsub = None
                for event in self._confirmed.values():
                    event.clear()
                attempt += 1  # soon: held leases are re-checked once it is back
                await async_sleep(min(0.025 * 2**attempt, _RECONNECT_MAX))
        if pubsub is not None:
            await self._drop(pubsub)

    @staticmethod
    async def _drop(pubsub: Any) -> None:
        try:
            await pubsub.aclose()
            await pubsub.owner.aclose()
        except Exception:  # already broken; nothing more to release
            logger.debug("closing a broken pub/sub connection failed", exc_info=True)

    async def aclose(self) -> None:
        self._closing = True
        await self._listener.join(timeout=2 * _POLL + self._settings.socket_timeout)
