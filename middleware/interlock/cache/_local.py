"""Process-local parts of the cache: the near cache (LRU) and the circuit breaker.

Both are plain thread-safe objects without I/O, shared by the async and sync drivers; the
near cache is also touched by the pub/sub listener (a task, a thread, or the publisher's
thread for ``mem://``), hence the lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from interlock.cache._entry import Envelope

logger = logging.getLogger("interlock.cache")

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"


class NearEntry:
    """A value held in the near cache (the same object is returned to every reader)."""

    __slots__ = ("expires", "negative", "tags", "value")

    def __init__(self, value: Any, negative: bool, tags: tuple[str, ...], expires: float) -> None:
        self.value = value
        self.negative = negative
        self.tags = tags
        self.expires = expires


class NearCache:
    """A bounded LRU of decoded values with a local TTL, invalidated by channel messages.

    ``epoch`` increases on every invalidation: a reader notes it before asking Redis and
    :meth:`put` refuses the value if it changed meanwhile, so a value read just before an
    invalidation arrived cannot be cached after it.
    """

    def __init__(self, size: int, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.size = size
        self.ttl = ttl
        self.epoch = 0
        self._clock = clock
        self._data: OrderedDict[str, NearEntry] = OrderedDict()
        self._by_tag: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: str) -> NearEntry | None:
        with self._lock:
            entry = self._data.get(key)
            if entry is None:
                return None
            if entry.expires <= self._clock():
                self._remove(key)
                return None
            self._data.move_to_end(key)
            return entry

    def put(
        self,
        key: str,
        value: Any,
        *,
        negative: bool,
        tags: Iterable[str],
        fresh_for: float,
        epoch: int,
    ) -> bool:
        """Hold ``value`` for min(near_ttl, ``fresh_for``) seconds unless ``epoch`` is stale."""
        if fresh_for <= 0:
            return False
        with self._lock:
            if epoch != self.epoch:
                return False
            if key in self._data:
                self._remove(key)
            tag_tuple = tuple(tags)
            expires = self._clock() + min(self.ttl, fresh_for)
            self._data[key] = NearEntry(value, negative, tag_tuple, expires)
            for tag in tag_tuple:
                self._by_tag.setdefault(tag, set()).add(key)
            while len(self._data) > self.size:
                self._remove(next(iter(self._data)))
            return True

    def remember(self, key: str, value: Any, envelope: Envelope, epoch: int) -> bool:
        """Hold a value just read or written, while its envelope says it is fresh."""
        fresh_for = (envelope.fresh_until_ms - time.time() * 1000) / 1000
        tags = [tag for tag, _ in envelope.tags]
        return self.put(
            key, value, negative=envelope.negative, tags=tags, fresh_for=fresh_for, epoch=epoch
        )

    def drop(self, key: str) -> None:
        with self._lock:
            self.epoch += 1
            if key in self._data:
                self._remove(key)

    def drop_tag(self, tag: str) -> None:
        with self._lock:
            self.epoch += 1
            for key in self._by_tag.pop(tag, ()):
                if key in self._data:
                    self._remove(key)

    def clear(self) -> None:
        with self._lock:
            self.epoch += 1
            self._data.clear()
            self._by_tag.clear()

    def _remove(self, key: str) -> None:
        entry = self._data.pop(key)
        for tag in entry.tags:
            keys = self._by_tag.get(tag)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_tag[tag]


class CircuitBreaker:
    """Closed → open after ``threshold`` consecutive failures → half-open after ``cooldown``.

    While open, callers skip the backend (the cache fails open). Once the cooldown has
    passed one caller is let through as a probe: its success closes the breaker, its
    failure opens it for another cooldown. :meth:`failure` and :meth:`success` return True
    when they changed whether the cache is degraded, so the caller can log and set gauges.
    """

    def __init__(
        self, threshold: int, cooldown: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self.state = CLOSED
        self.failures = 0  # consecutive
        self._clock = clock
        self._retry_at = 0.0
        self._lock = threading.Lock()

    @property
    def degraded(self) -> bool:
        return self.state != CLOSED

    def allow(self) -> bool:
        """May this call use the backend? (At most one probe per cooldown while open.)"""
        if self.state is CLOSED:
            return True
        with self._lock:
            now = self._clock()
            if self.state is CLOSED:
                return True
            if now < self._retry_at:
                return False
            self.state = HALF_OPEN
            self._retry_at = now + self.cooldown  # a probe that never reports is retried
            return True

    def success(self) -> bool:
        if self.state is CLOSED and not self.failures:
            return False
        with self._lock:
            recovered = self.state is not CLOSED
            self.state = CLOSED
            self.failures = 0
            return recovered

    def failure(self) -> bool:
        with self._lock:
            self.failures += 1
            if self.state is CLOSED and self.failures < self.threshold:
                return False
            opened = self.state is CLOSED
            self.state = OPEN
            self._retry_at = self._clock() + self.cooldown
            return opened


class Health:
    """A cache's circuit breaker and what it reports: the ``interlock_cache_degraded``
    gauge and one log event when the cache degrades and one when it recovers."""

    def __init__(self, name: str, breaker: CircuitBreaker, gauge: Any) -> None:
        self.name = name
        self.breaker = breaker
        self._gauge = gauge
        gauge.set(0)

    def allow(self) -> bool:
        return self.breaker.allow()

    def failed(self, exc: BaseException) -> None:
        if self.breaker.failure():
            self._gauge.set(1)
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

    def ok(self) -> None:
        if self.breaker.success():
            self._gauge.set(0)
            logger.info(
                "cache %r recovered: backend reachable again",
                self.name,
                extra={"event.action": "cache-recovered", "interlock.cache.name": self.name},
            )
