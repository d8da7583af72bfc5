"""The Redis backend: single node, TLS (``rediss://``), Sentinel and Cluster.

With Sentinel (``redis+sentinel://h1:p1,h2:p2/service[/db][?options]``) commands go through
redis-py's ``master_for`` client, which asks the sentinels for the master's address whenever it
opens a connection, so after a failover the next reconnect reaches the promoted replica; the
pub/sub listener asks the sentinels (``discover_master``) before each of its reconnects too.
The sentinels get their own credentials and TLS from the URL's query options (see
:mod:`interlock.backends._sentinel_url`); a sentinel refusing the login is reported as such,
with the fix.

Commands and scripts go through redis-py with bounded socket and connect timeouts and at
most one immediate retry on a refused/broken connection, so a Redis that is down raises
``BackendUnavailable`` quickly instead of hanging; the hot commands skip the client path
(:mod:`~interlock._async.backend.direct`). Pub/sub is :mod:`~interlock._async.backend.pubsub`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis.asyncio as redis_lib
from redis import exceptions as redis_errors
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import MasterNotFoundError, Sentinel
from redis.backoff import NoBackoff

from interlock._async.backend.direct import AsyncDirect
from interlock._async.backend.pubsub import AsyncPubSubListener, Subscriber
from interlock._concurrency import AsyncMutex
from interlock._config import Settings
from interlock.backends._cluster import async_cluster_ready
from interlock.backends._errors import REDIS_ERRORS, UNAVAILABLE, map_redis_errors, translate
from interlock.backends._redis_url import parse_redis_url, redact_url
from interlock.backends._resp import pack_command, pack_script_call
from interlock.backends._script import Arg, Script
from interlock.backends._sentinel_url import parse_sentinel_url
from interlock.errors import BackendUnavailable

logger = logging.getLogger("interlock.backend")
_SIGNAL_SLACK = 0.003  # seconds a signal wait reads past its pause before giving up
# commands whose raw reply is what redis-py's client returns (no response callback)
_RAW_REPLIES = frozenset({"GET", "HGET", "HMGET"})


def _common_options(settings: Settings) -> dict[str, Any]:
    return {
        "socket_timeout": settings.socket_timeout,
        "socket_connect_timeout": settings.connect_timeout,
        "retry": Retry(NoBackoff(), 1, supported_errors=(redis_errors.ConnectionError,)),
    }


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
            cluster = parse_redis_url(settings.url)
            nodes, auth = cluster.nodes, cluster.auth_options()
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
        else:  # exactly the parts the settings checked (redis-py reads URLs more loosely)
            node = parse_redis_url(settings.url).node_options()
            self._client = redis_lib.Redis(**node, **options)
            self._pubsub_targets = [{**node, **options}]
        # single node and Sentinel: hot commands skip the client path (see redis_direct)
        self._direct = None
        if self._client is not None:
            self._direct = AsyncDirect(self._client.connection_pool)
        self.signals = self._direct is not None  # Cluster: waiters use pub/sub
        self._pubsub = AsyncPubSubListener(
            settings,
            self._pubsub_targets,
            getattr(self, "_sentinel", None),
            self._sentinel_service,
            getattr(self, "_sentinel_options", None),
        )

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

    async def run(
        self,
        script: Script,
        keys: Sequence[str],
        args: Sequence[Arg],
        *,
        budget: float | None = None,
    ) -> Any:
        if self._direct is not None:
            return await self._run_direct(self._direct, script, keys, args, budget)
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
        direct: AsyncDirect,
        script: Script,
        keys: Sequence[str],
        args: Sequence[Arg],
        budget: float | None,
    ) -> Any:
        started = time.monotonic()
        try:
            try:
                return await direct.call(
                    pack_script_call("EVALSHA", script.sha, keys, args), budget=budget
                )
            except redis_errors.NoScriptError:
                left = None if budget is None else budget - (time.monotonic() - started)
                return await direct.call(
                    pack_command(("EVAL", script.source, len(keys), *keys, *args)),
                    budget=None if left is None else max(left, 0.001),
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
        timeout = max(timeout, 0.001)  # (0 would mean "forever" to BLPOP)
        command = pack_command(("BLPOP", key, f"{timeout:.3f}"))
        try:
            # Redis checks blocking timeouts only at its `hz` ticks (100 ms by default), so the
            # pause is kept here: a read that runs out drops its connection, and a signal it
            # may have popped is found again by the next attempt (the lock is already ours)
            wait = timeout + _SIGNAL_SLACK  # bounds connecting too (a waiter's deadline)
            reply = await self._direct.call(command, wait, budget=wait)
        except redis_errors.TimeoutError:
            return None
        except REDIS_ERRORS as exc:
            raise translate(exc, "lock wait") from exc
        return None if reply is None else bytes(reply[1])

    # -- key scans, node by node (``interlock top``) ----------------------------------------

    async def primaries(self) -> list[object]:
        """The Cluster's primary nodes (redis-py ``ClusterNode`` objects), discovered on first
        use; empty for single-node and Sentinel URLs, whose one node :meth:`execute` reaches.

        For tools that visit every node, e.g. ``interlock top`` runs :meth:`scan` on each.
        """
        if "cluster" not in self._settings.scheme:
            return []
        client = self._client if self._client is not None else await self._connect()
        with map_redis_errors("top scan"):
            return list(client.get_primaries())

    async def scan(
        self, node: object, cursor: int, *, match: str, count: int
    ) -> tuple[int, list[bytes]]:
        """One SCAN step on ``node`` (one of :meth:`primaries`): the next cursor (0 when the
        node is done) and the keys found."""
        client = self._client if self._client is not None else await self._connect()
        with map_redis_errors("top scan"):
            cursors, keys = await client.scan(
                cursor=cursor, match=match, count=count, target_nodes=node
            )
        return int(next(iter(cursors.values()), 0)), list(keys)

    # -- pub/sub -------------------------------------------------------------------------

    @property
    def restarts(self) -> int:
        return self._pubsub.restarts

    async def subscribe(
        self, channel: str, callback: Subscriber, timeout: float | None = None
    ) -> None:
        await self._pubsub.subscribe(channel, callback, timeout)

    async def unsubscribe(self, channel: str, callback: Subscriber) -> None:
        await self._pubsub.unsubscribe(channel, callback)

    def on_reset(self, callback: Callable[[], None]) -> None:
        self._pubsub.on_reset(callback)

    async def aclose(self) -> None:
        await self._pubsub.aclose()
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
