"""The Redis backend: single node, TLS (``rediss://``), Sentinel and Cluster.

With Sentinel (``redis+sentinel://h1:p1,h2:p2/service[/db][?options]``) commands go through
redis-py's ``master_for`` client, which asks the sentinels for the master's address whenever it
opens a connection, so after a failover the next reconnect reaches the promoted replica; the
pub/sub listener asks the sentinels (``discover_master``) before each of its reconnects too.
The sentinels get their own credentials and TLS from the URL's query options (see
:mod:`interlock._sentinel_url`); a sentinel refusing the login is reported as such, with the fix.

Commands and scripts go through redis-py with bounded socket and connect timeouts and at
most one immediate retry on a refused/broken connection, so a Redis that is down raises
``BackendUnavailable`` quickly instead of hanging. Pub/sub runs on one connection per
backend, owned by a background listener that (re)subscribes after every reconnect and
tells ``on_reset`` callbacks that messages may have been missed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

import redis.asyncio as redis_lib
from redis import exceptions as redis_errors
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import MasterNotFoundError, Sentinel
from redis.backoff import NoBackoff

from interlock._async.redis_direct import AsyncDirect
from interlock._config import Settings
from interlock._sentinel_url import parse_sentinel_url, redact_url
from interlock._synchronization import AsyncEvent, AsyncMutex, AsyncWorker, async_sleep
from interlock.backends._cluster import async_cluster_ready
from interlock.backends._errors import REDIS_ERRORS, UNAVAILABLE, map_redis_errors, translate
from interlock.backends._resp import pack_command
from interlock.backends._script import Arg, Script
from interlock.errors import BackendUnavailable, ConfigError

logger = logging.getLogger("interlock.backend")
Subscriber = Callable[[bytes], None]
_POLL = 0.1  # seconds the listener blocks per read; bounds how fast it notices new channels
_MASTER_CHECK = 1.0  # seconds between the Sentinel listener's "is the master still there?"
# commands whose raw reply is what redis-py's client returns (no response callback)
_RAW_REPLIES = frozenset({"GET", "HGET", "HMGET"})


def _common_options(settings: Settings) -> dict[str, Any]:
    return {
        "socket_timeout": settings.socket_timeout,
        "socket_connect_timeout": settings.connect_timeout,
        "retry": Retry(NoBackoff(), 1, supported_errors=(redis_errors.ConnectionError,)),
    }


def _cluster_nodes(url: str) -> tuple[list[tuple[str, int]], dict[str, Any]]:
    parts = urlsplit(url)
    netloc = parts.netloc
    auth: dict[str, Any] = {}
    if "@" in netloc:
        userinfo, netloc = netloc.rsplit("@", 1)
        user, _, password = userinfo.partition(":")
        auth = {"username": unquote(user) or None, "password": unquote(password) or None}
    nodes = []
    for item in netloc.split(","):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(
                f"cluster node {item!r} in {redact_url(url)!r} is invalid; write "
                "host:port[,host:port...]"
            )
        nodes.append((host, int(port)))
    if parts.scheme.startswith("rediss"):
        auth["ssl"] = True
    return nodes, auth


class AsyncSentinelManager(Sentinel):
    """redis-py's Sentinel, telling "a sentinel refused the login" apart from "no master".

    ``discover_master`` is redis-py's loop, except that an authentication error (a
    ``ConnectionError`` to redis-py, which just tries the next sentinel) is kept by type:
    when no sentinel named a master and one refused the login, the error says so and names
    the URL options that fix it, instead of "No master found".
    """

    async def discover_master(self, service_name: str) -> tuple[str, int]:
        refused, errors = [], []
        healthy: Any = self.check_master_state  # untyped in redis-py's sync Sentinel
        for index, sentinel in enumerate(self.sentinels):
            kwargs = sentinel.connection_pool.connection_kwargs
            where = f"{kwargs.get('host')}:{kwargs.get('port')}"
            try:
                masters: Any = await sentinel.sentinel_masters()
            except redis_errors.AuthenticationError as exc:
                refused.append(f"{where}: {exc}")
                continue
            except (redis_errors.ConnectionError, redis_errors.TimeoutError) as exc:
                errors.append(f"{where}: {exc}")
                continue
            state = masters.get(service_name)
            if state and healthy(state, service_name):
                # the sentinel that answered is asked first next time, as redis-py does
                self.sentinels[0], self.sentinels[index] = sentinel, self.sentinels[0]
                return state["ip"], state["port"]
        if refused:
            raise redis_errors.AuthenticationError(
                f"Sentinel refused the login ({'; '.join(refused + errors)}); the sentinels' "
                "credentials go in the URL's query: ?sentinel_password=... (sentinel.conf "
                "`requirepass`), plus sentinel_username=... for an ACL user; check them (the "
                "user:password@ part of a redis+sentinel:// URL is for the master only)"
            )
        detail = f" : {', '.join(errors)}" if errors else ""
        raise MasterNotFoundError(f"No master found for {service_name!r}{detail}")


class AsyncRedisBackend:
    """A backend on Redis; see the module docstring."""

    def __init__(self, settings: Settings) -> None:
        self.url = redact_url(settings.url)  # for messages: passwords masked
        self._settings = settings
        options = _common_options(settings)
        self._client: Any = None  # a cluster client is built on first use (it does I/O)
        self._connect_mutex = AsyncMutex()
        self._sentinel_service: str | None = None
        if "cluster" in settings.scheme:
            nodes, auth = _cluster_nodes(settings.url)
            self._cluster_nodes = nodes
            self._cluster_options = {**auth, **options}
            self._pubsub_targets = [
                {"host": h, "port": p, **auth, **options} for h, p in nodes
            ]
        elif "sentinel" in settings.scheme:
            target = parse_sentinel_url(settings.url)
            self._sentinel_service = target.service
            # the master (commands, pub/sub) and the sentinels each get their own auth and TLS
            self._sentinel_options: dict[str, Any] = {**target.master_options(), **options}
            factory: Any = AsyncSentinelManager  # redis-py's Sentinel.__init__ is untyped
            self._sentinel: Any = factory(
                list(target.sentinels),
                sentinel_kwargs={
                    **target.sentinel_options(),
                    "socket_timeout": settings.socket_timeout,
                    "socket_connect_timeout": settings.connect_timeout,
                    # no retries: the next sentinel in the list is the retry
                    "retry": Retry(NoBackoff(), 0),
                },
            )
            self._client = self._sentinel.master_for(target.service, **self._sentinel_options)
            self._pubsub_targets = []  # resolved through the sentinels on every (re)connect
        else:
            self._client = redis_lib.Redis.from_url(settings.url, **options)
            self._pubsub_targets = [{"url": settings.url, **options}]
        # single node and Sentinel: hot commands skip the client path (see redis_direct)
        self._direct = None
        if self._client is not None:
            self._direct = AsyncDirect(self._client.connection_pool)
        self.signals = self._direct is not None  # Cluster: waiters use pub/sub
        self._callbacks: dict[str, list[Subscriber]] = {}
        self._active: set[str] = set()
        self._confirmed: dict[str, AsyncEvent] = {}
        self._resets: list[Callable[[], None]] = []
        self._closing = False
        self._listener = AsyncWorker(self._listen, "interlock-redis-listener")

    # -- commands ------------------------------------------------------------------------

    async def _connect(self) -> Any:
        async with self._connect_mutex:
            if self._client is None:
                node: Any = ClusterNode
                with map_redis_errors("cluster discovery"):
                    client = RedisCluster(
                        startup_nodes=[node(h, p) for h, p in self._cluster_nodes],
                        **self._cluster_options,
                    )
                    await async_cluster_ready(client)
                self._client = client
            return self._client

    async def run(self, script: Script, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        if self._direct is not None:
            return await self._run_direct(self._direct, script, keys, args)
        client = self._client if self._client is not None else await self._connect()
        try:
            return await client.evalsha(script.sha, len(keys), *keys, *args)
        except redis_errors.NoScriptError:
            with map_redis_errors(script.name):
                return await client.eval(script.source, len(keys), *keys, *args)
        except REDIS_ERRORS as exc:
            raise translate(exc, script.name) from exc

    @staticmethod
    async def _run_direct(
        direct: AsyncDirect, script: Script, keys: Sequence[str], args: Sequence[Arg]
    ) -> Any:
        try:
            try:
                return await direct.call(
                    pack_command(("EVALSHA", script.sha, len(keys), *keys, *args))
                )
            except redis_errors.NoScriptError:
                return await direct.call(
                    pack_command(("EVAL", script.source, len(keys), *keys, *args))
                )
        except REDIS_ERRORS as exc:
            raise translate(exc, script.name) from exc

    async def run_many(
        self, calls: Sequence[tuple[Script, Sequence[str], Sequence[Arg]]]
    ) -> list[Any]:
        client = self._client if self._client is not None else await self._connect()
        with map_redis_errors("pipeline"):
            pipe = client.pipeline(transaction=False)
            for script, keys, args in calls:
                pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
            results: list[Any] = await pipe.execute(raise_on_error=False)
        for index, result in enumerate(results):
            if isinstance(result, redis_errors.NoScriptError):
                script, keys, args = calls[index]
                try:
                    results[index] = await self.run(script, keys, args)
                except Exception as exc:  # reported per call, like the pipeline
                    results[index] = exc
            elif isinstance(result, UNAVAILABLE):
                results[index] = BackendUnavailable(str(result))
        return results

    async def execute(self, *args: Arg) -> Any:
        direct = self._direct
        try:
            if direct is not None and args[0] in _RAW_REPLIES:
                return await direct.call(pack_command(args))
            client = self._client if self._client is not None else await self._connect()
            return await client.execute_command(*args)
        except REDIS_ERRORS as exc:
            raise translate(exc, str(args[0])) from exc

    async def wait_signal(self, key: str, timeout: float) -> bytes | None:
        if self._direct is None:
            raise NotImplementedError("signal waits need a single-node or Sentinel backend")
        command = pack_command(("BLPOP", key, f"{max(timeout, 0.001):.3f}"))
        try:
            reply = await self._direct.call(command, timeout + self._settings.socket_timeout)
        except REDIS_ERRORS as exc:
            raise translate(exc, "lock wait") from exc
        return None if reply is None else bytes(reply[1])

    # -- pub/sub -------------------------------------------------------------------------

    async def subscribe(self, channel: str, callback: Subscriber) -> None:
        self._callbacks.setdefault(channel, []).append(callback)
        ready = self._confirmed.get(channel)
        if ready is None:
            ready = self._confirmed[channel] = AsyncEvent()
        elif ready.is_set():
            return
        self._listener.start()
        bound = self._settings.connect_timeout + self._settings.socket_timeout + 2 * _POLL
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
                attempt += 1
                await async_sleep(min(0.05 * 2**attempt, 1.0))
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
        for sentinel in getattr(getattr(self, "_sentinel", None), "sentinels", ()):
            try:
                await sentinel.aclose()
            except Exception:
                logger.debug("closing a sentinel connection failed", exc_info=True)
        if self._direct is not None:
            await self._direct.aclose()
        if self._client is None:
            return
        try:
            await self._client.aclose()
        except Exception:
            logger.debug("closing the Redis client failed", exc_info=True)
