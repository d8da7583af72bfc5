"""Loading for the cache: single-flight in the process, one fill lease across processes.

A miss makes the caller the leader of a *flight* for the key (later callers of this
process share its outcome). The leader asks Redis for the key's fill lease: if it gets it,
it runs the loader and writes the value (unless a delete or write happened meanwhile);
if another process holds it, the leader sleeps until that process's fill is announced on
the cache's channel, at most ``lock_wait`` seconds, then loads by itself.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

from interlock._async.cache_store import ACQUIRED, FOUND, AsyncCacheStore
from interlock._cache_local import CircuitBreaker, NearCache
from interlock._synchronization import AsyncEvent, AsyncFlight, async_call, async_shielded
from interlock.cache import (
    FILL_WINDOW_S,
    HEADER_SIZE,
    CacheOptions,
    EntryKeys,
    Envelope,
    encode_envelope,
    jittered_ms,
)
from interlock.errors import BackendError, SerializationError
from interlock.lock import new_token

logger = logging.getLogger("interlock.cache")
LoadFunction = Callable[[], Any]
Tags = Sequence[tuple[str, str]]
FRESH, STALE, ABSENT, REJECTED, CORRUPT = "fresh", "stale", "absent", "rejected", "corrupt"


class Verdict:
    """What a read found: its state, the envelope, the value, and when it was judged."""

    __slots__ = ("envelope", "now_ms", "rejected", "state", "value")

    def __init__(
        self,
        state: str,
        envelope: Envelope | None = None,
        value: Any = None,
        now_ms: float = 0.0,
        rejected: bytes = b"",
    ) -> None:
        self.state = state
        self.envelope = envelope
        self.value = value
        self.now_ms = now_ms
        self.rejected = rejected


class Job:
    """One load: the key, its tags and the versions of them seen so far, its TTL, the
    loader, and the header of a stored entry already found unusable (``b""``: none)."""

    __slots__ = ("keys", "loader", "rejected", "tags", "ttl", "versions")

    def __init__(
        self,
        keys: EntryKeys,
        tags: Tags,
        ttl: float,
        loader: LoadFunction,
        rejected: bytes,
        versions: dict[str, int],
    ) -> None:
        self.keys = keys
        self.tags = tags
        self.ttl = ttl
        self.loader = loader
        self.rejected = rejected
        self.versions = versions


class Load:
    """A flight in progress: followers check it began after the last invalidation."""

    __slots__ = ("degraded", "flight", "generation", "started", "tags", "versions")

    def __init__(self, tags: Tags, degraded: bool = False) -> None:
        self.flight = AsyncFlight()
        self.started = AsyncEvent()
        self.generation: str | None = None
        self.versions: dict[str, int] = {}
        self.tags = {tag for tag, _ in tags}
        self.degraded = degraded
        if degraded:
            self.started.set()

    def matches(self, generation: str, versions: dict[str, int]) -> bool:
        """Did no delete, write or tag invalidation happen since this load began?"""
        if self.degraded:
            return True
        if self.generation != generation or not set(versions) <= self.tags:
            return False
        return all(self.versions.get(tag, 0) >= v for tag, v in versions.items())


class AsyncLoader:
    """The loading half of a cache (see the module docstring)."""

    def __init__(
        self,
        name: str,
        options: CacheOptions,
        store: AsyncCacheStore,
        near: NearCache | None,
        breaker: CircuitBreaker,
        observe_load: Callable[[float], None],
        on_failure: Callable[[BaseException], None],
        tag_entry: Callable[[str], tuple[str, str]],
    ) -> None:
        self.name = name
        self.options = options
        self.store = store
        self.near = near
        self.breaker = breaker
        self.flights: dict[str, Load] = {}
        self.refreshing: dict[str, AsyncFlight] = {}
        self.lease_ms = int(max(options.lock_wait, 1.0) * 1000)
        self.closed = False
        self._observe_load = observe_load
        self._failed = on_failure
        self._tag_entry = tag_entry

    async def judge(self, keys: EntryKeys, data: bytes | None, versions: dict[str, int]) -> Verdict:
        """Decide whether stored ``data`` may be served, given the current tag versions."""
        if data is None:
            return Verdict(ABSENT)
        try:
            envelope = Envelope(data)
            if envelope.tags:
                missing = [self._tag_entry(t) for t, _ in envelope.tags if t not in versions]
                if missing:  # written under tags the caller did not name: one more read
                    versions = {**versions, **await self.store.versions(missing)}
                if envelope.stale_against(versions):
                    return Verdict(REJECTED, envelope, rejected=envelope.header)
            now_ms = time.time() * 1000
            if now_ms >= envelope.expires_ms:
                return Verdict(REJECTED, envelope, rejected=envelope.header)
            state = FRESH if now_ms < envelope.fresh_until_ms else STALE
            return Verdict(state, envelope, envelope.value(self.options.codec), now_ms)
        except SerializationError as exc:
            logger.warning(
                "cache %r: unreadable entry treated as a miss: %s",
                self.name,
                exc,
                extra={
                    "event.action": "cache-entry-rejected",
                    "interlock.cache.name": self.name,
                    "interlock.cache.key": keys.encoded,
                    "error.message": str(exc),
                },
            )
            return Verdict(CORRUPT, rejected=data[:HEADER_SIZE])

    # -- envelopes -----------------------------------------------------------------------

    def envelope(
        self, value: Any, ttl: float, duration: float, versions: dict[str, int], tags: Tags
    ) -> tuple[bytes, int, int]:
        """The stored bytes of ``value``, its PX in ms and its fresh lifetime in ms."""
        options = self.options
        negative = value is None
        life = options.negative_ttl if negative and options.negative_ttl > 0 else ttl
        fresh_ms = jittered_ms(life, options.jitter, random.random())
        stale_ms = 0 if negative else int(options.stale_ttl * 1000)
        data = encode_envelope(
            value,
            options.codec,
            created_ms=int(time.time() * 1000),
            ttl_ms=fresh_ms,
            stale_ms=stale_ms,
            delta_us=int(duration * 1_000_000),
            tags=[(tag, versions.get(tag, 0)) for tag, _ in tags],
            compress_threshold=options.compress_threshold,
        )
        return data, fresh_ms + stale_ms, fresh_ms

    def remember(self, keys: EntryKeys, value: Any, envelope: Envelope, epoch: int) -> None:
        """Put a value read or written just now into the near cache."""
        if self.near is not None:
            fresh_for = (envelope.fresh_until_ms - time.time() * 1000) / 1000
            tags = [tag for tag, _ in envelope.tags]
            self.near.put(
                keys.encoded, value, negative=envelope.negative, tags=tags,
                fresh_for=fresh_for, epoch=epoch,
            )  # fmt: skip

    # -- leading a flight ----------------------------------------------------------------

    async def lead(self, load: Load, job: Job) -> tuple[Any, str]:
        """Lead a flight: find or load the value; returns (value, result)."""
        try:
            return await self._lead(load, job)
        finally:
            load.started.set()
            if self.flights.get(job.keys.entry) is load:
                del self.flights[job.keys.entry]

    async def load_only(self, load: Load, loader: LoadFunction, key: str) -> tuple[Any, str]:
        """Lead a flight without the backend (the cache is degraded)."""
        try:
            started = time.monotonic()
            value = await async_call(loader)
            self._observe_load(time.monotonic() - started)
            return value, "bypass"
        finally:
            if self.flights.get(key) is load:
                del self.flights[key]

    async def _lead(self, load: Load, job: Job) -> tuple[Any, str]:
        token: str | None = new_token()
        generation, seen, leased_at = "0", b"", time.monotonic()
        deadline = leased_at + self.options.lock_wait
        waited = False
        event: AsyncEvent | None = None
        try:
            await self.store.ensure_listening()  # before leasing, so no wake-up is lost
            event = self.store.add_waiter(job.keys.encoded)
            while True:
                event.clear()
                leased_at = time.monotonic()
                reply = await self.store.lease(
                    job.keys, job.tags, token or "", self.lease_ms, job.rejected, True,
                    job.versions,
                )  # fmt: skip
                generation, job.versions = reply.generation, reply.versions
                seen = job.rejected if reply.present else b""
                if load.generation is None:
                    load.generation, load.versions = generation, reply.versions
                    load.started.set()
                if reply.state == FOUND:
                    verdict = await self.judge(job.keys, reply.entry, reply.versions)
                    if verdict.state in (FRESH, STALE):
                        return verdict.value, "coalesced" if waited else "hit"
                    job.rejected = verdict.rejected
                    continue
                if reply.state == ACQUIRED:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    token = ""  # waited long enough: load without the lease
                    break
                waited = True
                await event.wait(min(reply.pttl_ms / 1000 + 0.005, remaining))
        except BackendError as exc:
            self._failed(exc)
            load.degraded = True
            token = None
        finally:
            load.started.set()
            if event is not None:
                self.store.remove_waiter(job.keys.encoded, event)
        value = await self.load_and_fill(job, token, generation, seen, leased_at)
        return value, "miss" if token is not None else "bypass"

    async def load_and_fill(
        self,
        job: Job,
        token: str | None,
        generation: str,
        seen: bytes,
        leased_at: float,
        keep_lease_on_error: bool = False,
    ) -> Any:
        """Run the loader; write its value unless ``token`` is None (backend unusable).

        ``generation``, ``seen`` (the entry header found, ``b""`` for none) and the job's
        tag versions are what the load began under: the fill is refused if they moved.
        """
        started = time.monotonic()
        try:
            value = await async_call(job.loader)
        except BaseException:
            if token and not keep_lease_on_error:
                await async_shielded(self._release(job.keys, token))
            raise
        duration = time.monotonic() - started
        self._observe_load(duration)
        if token is None:
            return value
        if time.monotonic() - leased_at > FILL_WINDOW_S or (
            value is None and self.options.negative_ttl <= 0
        ):
            if token:
                await self._release(job.keys, token)
            return value
        try:
            data, px, _ = self.envelope(value, job.ttl, duration, job.versions, job.tags)
        except SerializationError:
            if token:
                await self._release(job.keys, token)
            raise
        epoch = self.near.epoch if self.near is not None else 0
        try:
            written = await self.store.fill(job.keys, data, px, token, generation, seen)
        except BackendError as exc:
            self._failed(exc)
            return value
        if written:
            self.remember(job.keys, value, Envelope(data), epoch)
        return value

    async def _release(self, keys: EntryKeys, token: str) -> bool:
        try:
            await self.store.release(keys, token)
        except BackendError as exc:  # the lease lapses by itself
            self._failed(exc)
            return False
        return True

    # -- background refresh (XFetch, stale-while-revalidate) ------------------------------

    def refresh(self, job: Job) -> None:
        """Reload ``job`` in the background unless this or another process already does."""
        key = job.keys.entry
        if self.closed or key in self.refreshing or key in self.flights:
            return
        flight = self.refreshing[key] = AsyncFlight()
        flight.start(lambda: self._refresh(job), background=True)

    async def _refresh(self, job: Job) -> None:
        try:
            token = new_token()
            leased_at = time.monotonic()
            reply = await self.store.lease(
                job.keys, job.tags, token, self.lease_ms, job.rejected, True, job.versions
            )
            if reply.state == ACQUIRED:
                job.versions = reply.versions
                seen = job.rejected if reply.present else b""
                # A failed refresh keeps the lease until it lapses: the stale value is
                # served meanwhile and the origin is retried once per lease, not per call.
                await self.load_and_fill(job, token, reply.generation, seen, leased_at, True)
        except BackendError as exc:
            self._failed(exc)
        except Exception as exc:  # the caller already has a value; report, don't raise
            logger.warning(
                "background refresh of cache %r failed: %s",
                self.name,
                exc,
                extra={
                    "event.action": "cache-refresh-failed",
                    "interlock.cache.name": self.name,
                    "interlock.cache.key": job.keys.encoded,
                    "error.message": str(exc),
                    "error.type": type(exc).__name__,
                },
            )
        finally:
            self.refreshing.pop(job.keys.entry, None)

    async def aclose(self) -> None:
        self.closed = True
        for flight in list(self.refreshing.values()):
            await flight.settle(2.0)
