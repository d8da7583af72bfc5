"""The backend protocol, the embedded ``mem://`` backend and the URL factory."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from interlock._config import Settings
from interlock.backends._script import Arg, Script
from interlock.backends.mem._store import MemStore, shared_store
from interlock.errors import ConfigError

Subscriber = Callable[[bytes], None]


class AsyncBackend(Protocol):
    """What locks, caches and transactions need from a coordination backend.

    Pub/sub callbacks run on the backend's listener (a task, a thread, or the publisher's
    thread for ``mem://``): they must be quick and thread-safe, e.g. set an event.
    """

    url: str
    signals: bool  # wait_signal() is supported (a blocking pop on a list)

    @property
    def restarts(self) -> int:
        """How often the server changed under the listener (a new ``run_id``: restarted
        or failed over); callers compare it before and after an ``on_reset``."""

    async def run(
        self,
        script: Script,
        keys: Sequence[str],
        args: Sequence[Arg],
        *,
        budget: float | None = None,
    ) -> Any:
        """Run a Lua script atomically; keys share one hash tag.

        ``budget`` (seconds) bounds the whole round trip where the backend can (single-node
        Redis and Sentinel; Cluster keeps ``socket_timeout``): past it the call raises
        :class:`~interlock.errors.BackendUnavailable`.
        """

    async def run_many(
        self, calls: Sequence[tuple[Script, Sequence[str], Sequence[Arg]]]
    ) -> list[Any]:
        """Run several scripts in one batch; failures come back as exception objects."""

    async def execute(self, *args: Arg) -> Any:
        """Run one plain command (GET, SET, DEL, PUBLISH, ...)."""

    async def subscribe(
        self, channel: str, callback: Subscriber, timeout: float | None = None
    ) -> None:
        """Call ``callback(payload)`` for each message on ``channel``; returns once active.

        Raises :class:`~interlock.errors.BackendUnavailable` if it is not active within
        ``timeout`` seconds (default: the connect and socket timeouts); the subscription
        stays registered and becomes active when the backend answers.
        """

    async def unsubscribe(self, channel: str, callback: Subscriber) -> None:
        """Stop calling ``callback`` for ``channel``."""

    def on_reset(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` whenever the subscription stream may have missed messages."""

    async def wait_signal(self, key: str, timeout: float) -> bytes | None:
        """Pop the first item of list ``key``, waiting up to ``timeout`` s (None: none came).

        Only when :attr:`signals` is true; the caller's connection is busy meanwhile.
        """

    async def aclose(self) -> None:
        """Release connections and stop background work."""


class AsyncNodeScans(Protocol):
    """An optional capability: reading keys node by node (the Redis backend has it).

    For tools that visit every node of a Cluster, e.g. ``interlock top``.
    """

    async def primaries(self) -> list[object]:
        """The Cluster's primary nodes; empty when the backend has one node."""

    async def scan(
        self, node: object, cursor: int, *, match: str, count: int
    ) -> tuple[int, list[bytes]]:
        """One SCAN step on ``node``: the next cursor (0: done) and the keys found."""


class AsyncMemoryBackend:
    """The embedded backend: a process-local :class:`MemStore` running the same Lua."""

    signals = False  # waiters are woken in-process through subscribe()
    restarts = 0  # the store lives and dies with this process

    def __init__(self, url: str, store: MemStore) -> None:
        self.url = url
        self.store = store
        self._subscriptions: list[tuple[str, Subscriber]] = []

    async def run(
        self,
        script: Script,
        keys: Sequence[str],
        args: Sequence[Arg],
        *,
        budget: float | None = None,
    ) -> Any:
        return self.store.run_script(script, keys, args)  # in-process: nothing to bound

    async def run_many(
        self, calls: Sequence[tuple[Script, Sequence[str], Sequence[Arg]]]
    ) -> list[Any]:
        results: list[Any] = []
        for script, keys, args in calls:
            try:
                results.append(self.store.run_script(script, keys, args))
            except Exception as exc:  # reported per call, like a pipeline
                results.append(exc)
        return results

    async def execute(self, *args: Arg) -> Any:
        return self.store.execute(*args)

    async def subscribe(
        self, channel: str, callback: Subscriber, timeout: float | None = None
    ) -> None:
        self.store.subscribe(channel, callback)
        self._subscriptions.append((channel, callback))

    async def unsubscribe(self, channel: str, callback: Subscriber) -> None:
        self.store.unsubscribe(channel, callback)
        if (channel, callback) in self._subscriptions:
            self._subscriptions.remove((channel, callback))

    def on_reset(self, callback: Callable[[], None]) -> None:
        """The in-process stream never misses messages; nothing to do."""

    async def wait_signal(self, key: str, timeout: float) -> bytes | None:
        raise NotImplementedError("mem:// wakes waiters through subscribe()")

    async def aclose(self) -> None:
        for channel, callback in self._subscriptions:
            self.store.unsubscribe(channel, callback)
        self._subscriptions.clear()


def create_backend(settings: Settings) -> AsyncBackend:
    """Build the backend named by ``settings.url`` (no I/O happens here).

    Raises:
        ConfigError: if the URL needs an extra that is not installed.
    """
    if settings.scheme == "mem":
        name = settings.url.split("://", 1)[1].strip("/")
        return AsyncMemoryBackend(settings.url, shared_store(name))
    try:
        from interlock._async.backend.redis import AsyncRedisBackend
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise ConfigError(
            f"{settings.url.split('://')[0]}:// needs redis-py: pip install 'interlock[redis]'"
        ) from exc
    return AsyncRedisBackend(settings)
