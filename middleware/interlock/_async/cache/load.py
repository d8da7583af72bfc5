"""Loading for the cache: single-flight in the process, one fill lease across processes.

A miss makes the caller the leader of a *flight* for the key; later callers of this
process share its outcome, unless a delete, write or tag invalidation happened since the
flight began (then they start a new one). The leader asks Redis for the key's fill lease:
if it gets it, it runs the loader and writes the value, unless the load became outdated
meanwhile; if another process holds it, the leader sleeps until that process's fill is
announced on the cache's channel, at most ``lock_wait`` seconds, then loads by itself.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from interlock._async.cache.store import ACQUIRED, FOUND, AsyncCacheStore, Tags
from interlock._concurrency import AsyncEvent, AsyncFlight, async_call, async_shielded
from interlock._tracing import Tracer
from interlock.cache._core import FILL_WINDOW_S, CacheOptions, EntryKeys, Job
from interlock.cache._entry import FRESH, STALE, Envelope, build_entry
from interlock.cache._local import Health, NearCache
from interlock.errors import BackendError, SerializationError
from interlock.lock._core import new_token

LoadFunction = Callable[[], Any]
Outcome = tuple[Any, str]  # (value, result for interlock_cache_requests_total)
LOAD_SPAN = "interlock.cache.load"  # docs/tracing.md


class Load:
    """A flight in progress, and what it loads under (for followers to check)."""

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
        options: CacheOptions,
        store: AsyncCacheStore,
        near: NearCache | None,
        health: Health,
        observe_load: Callable[[float], None],
        tracer: Tracer | None = None,
    ) -> None:
        self.options = options
        self.store = store
        self.near = near
        self.health = health
        self.flights: dict[str, Load] = {}
        self.lease_ms = int(max(options.lock_wait, 1.0) * 1000)
        self._observe_load = observe_load
        self.tracer = tracer or Tracer()

    # -- sharing flights -----------------------------------------------------------------

    async def shared(self, job: Job, replace: bool = False) -> Outcome:
        """Lead a new flight for ``job`` (or follow the one that beat us to it)."""
        load = Load(job.tags)
        if replace:
            self.flights[job.keys.entry] = load
        elif self.flights.setdefault(job.keys.entry, load) is not load:
            return await self.follow(job)
        load.flight.start(lambda: self.lead(load, job))
        outcome: Outcome = await load.flight.wait()
        return outcome

    async def follow(self, job: Job) -> Outcome:
        """Share the flight in progress, unless it began before a delete, write or
        invalidation (then lead a new one); a value that landed meanwhile is served."""
        load = self.flights.get(job.keys.entry)
        if load is None:
            return await self.shared(job)
        if not load.degraded:
            try:
                reply = await self.store.lease(job.keys, job.tags, "", 0, b"", False, {})
                verdict = await self.store.judge(job.keys, reply.entry, reply.versions)
            except BackendError as exc:
                self.health.failed(exc)
            else:
                self.health.ok()
                if verdict.state is FRESH or verdict.state is STALE:
                    return verdict.value, "hit" if verdict.state is FRESH else "stale"
                await load.started.wait(self.options.lock_wait)
                if not load.matches(reply.generation, reply.versions):
                    job.rejected, job.versions = verdict.rejected, reply.versions
                    return await self.shared(job, replace=True)
        value, _ = await load.flight.wait()
        return value, "coalesced"

    async def bypass(self, key: str, tags: Tags, loader: LoadFunction) -> Outcome:
        """Serve from the loader (the backend is down), still one load per key at a time."""
        load = Load(tags, degraded=True)
        current = self.flights.setdefault(key, load)
        if current is not load:
            value, _ = await current.flight.wait()
            return value, "coalesced"
        load.flight.start(lambda: self._load_only(load, loader, key))
        outcome: Outcome = await load.flight.wait()
        return outcome

    async def _load_only(self, load: Load, loader: LoadFunction, key: str) -> Outcome:
        try:
            started = time.monotonic()
            with self.tracer.span(LOAD_SPAN, self._attributes(True)):
                value = await async_call(loader)
            self._observe_load(time.monotonic() - started)
            return value, "bypass"
        finally:
            if self.flights.get(key) is load:
                del self.flights[key]

    # -- leading a flight ----------------------------------------------------------------

    async def lead(self, load: Load, job: Job) -> Outcome:
        """The flight's work: find or load the value."""
        try:
            return await self._lead(load, job)
        finally:
            load.started.set()
            if self.flights.get(job.keys.entry) is load:
                del self.flights[job.keys.entry]

    async def _lead(self, load: Load, job: Job) -> Outcome:
        token: str | None = new_token()
        generation, seen, leased_at = "0", b"", time.monotonic()
        epoch = self.near_epoch()
        deadline = leased_at + self.options.lock_wait
        waited = False
        event: AsyncEvent | None = None
        try:
            await self.store.ensure_listening()  # before leasing, so no wake-up is lost
            event = self.store.add_waiter(job.keys.encoded)
            while True:
                event.clear()
                leased_at, epoch = time.monotonic(), self.near_epoch()
                reply = await self.store.lease(
                    job.keys, job.tags, token or "", self.lease_ms, job.rejected, True,
                    job.versions,
                )  # fmt: skip
                self.health.ok()
                generation, job.versions = reply.generation, reply.versions
                seen = job.rejected if reply.present else b""
                if load.generation is None:
                    load.generation, load.versions = generation, reply.versions
                    load.started.set()
                if reply.state == FOUND:
                    verdict = await self.store.judge(job.keys, reply.entry, reply.versions)
                    if verdict.state is FRESH or verdict.state is STALE:
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
            self.health.failed(exc)
            load.degraded = True
            token = None
        finally:
            load.started.set()
            if event is not None:
                self.store.remove_waiter(job.keys.encoded, event)
        value = await self.load_and_fill(job, token, generation, seen, leased_at, epoch)
        return value, "miss" if token is not None else "bypass"

    def near_epoch(self) -> int:
        """The near cache's invalidation count, noted before reading what a load is
        checked against: a load overtaken by an invalidation is not remembered."""
        return self.near.epoch if self.near is not None else 0

    async def load_and_fill(
        self,
        job: Job,
        token: str | None,
        generation: str,
        seen: bytes,
        leased_at: float,
        epoch: int,
        keep_lease_on_error: bool = False,
    ) -> Any:
        """Run the loader; write its value unless ``token`` is None (backend unusable).

        ``generation``, ``seen`` (the entry header found, ``b""`` for none) and the job's
        tag versions are what the load began under: the fill is refused if they moved.
        The near cache keeps the value only if it saw no invalidation since ``epoch``.
        """
        started = time.monotonic()
        try:
            with self.tracer.span(LOAD_SPAN, self._attributes(token is None)):
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
            data, px, _ = build_entry(
                value, self.options, ttl=job.ttl, duration=duration,
                tags=[(tag, job.versions.get(tag, 0)) for tag, _ in job.tags],
                now_ms=int(time.time() * 1000), rand=random.random(),
            )  # fmt: skip
        except SerializationError:
            if token:
                await self._release(job.keys, token)
            raise
        try:
            written = await self.store.fill(
                job.keys, data, px, token, generation, seen, job.tags, job.versions
            )
        except BackendError as exc:
            self.health.failed(exc)
            return value
        if written and self.near is not None:
            self.near.remember(job.keys.encoded, value, Envelope(data), epoch)
        return value

    def _attributes(self, degraded: bool) -> dict[str, Any]:
        return {"interlock.cache.name": self.store.name, "interlock.cache.degraded": degraded}

    async def _release(self, keys: EntryKeys, token: str) -> bool:
        try:
            await self.store.release(keys, token)
        except BackendError as exc:  # the lease lapses by itself
            self.health.failed(exc)
            return False
        return True
