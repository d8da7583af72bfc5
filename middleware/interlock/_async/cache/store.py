"""The Redis side of one cache: reads, fill leases, guarded writes and its event channel.

Everything here is one round trip: on a single node the entry's script also reads the
tag versions it needs; on Redis Cluster the tag versions live in another slot, so they
come from ``TAG_VERSIONS`` sent in the same pipeline (see docs/cache.md, "Tags").
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from interlock._async.backend.base import AsyncBackend
from interlock._concurrency import AsyncEvent, AsyncMutex
from interlock.backends._script import Arg, Script
from interlock.cache._core import FILL_WINDOW_S, EntryKeys, channel, message, tag_key
from interlock.cache._entry import CORRUPT, Envelope, Verdict, judge
from interlock.cache._scripts import (
    DELETE,
    FILL,
    INVALIDATE_TAG,
    LEASE,
    READ,
    RELEASE,
    TAG_VERSIONS,
    WRITE,
)
from interlock.serializers import Serializer

logger = logging.getLogger("interlock.cache")
Tags = Sequence[tuple[str, str]]  # (encoded tag, tag version key)
OnEvent = Callable[[str, str, str], None]

FOUND, ACQUIRED, HELD, FREE = 1, 2, 3, 0
_GENERATION_TTL_MS = int(FILL_WINDOW_S * 1000)


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else str(value)


class LeaseReply:
    """What ``LEASE`` found: state, generation, lease TTL, the entry (when usable or not)
    and the current versions of the caller's tags."""

    __slots__ = ("entry", "generation", "present", "pttl_ms", "state", "versions")

    def __init__(self, reply: list[Any], versions: dict[str, int]) -> None:
        self.state = int(reply[0])
        self.generation = _text(reply[1])
        self.pttl_ms = int(reply[2])
        self.entry: bytes | None = reply[3]
        self.present = bool(reply[4])
        self.versions = versions


class AsyncCacheStore:
    """Scripts and pub/sub of one cache (see ``interlock.cache._scripts``)."""

    def __init__(
        self,
        backend: AsyncBackend,
        namespace: str,
        name: str,
        *,
        serializer: Serializer,
        cluster: bool,
        origin: str,
        on_event: OnEvent,
    ) -> None:
        self.backend = backend
        self.name = name
        self.namespace = namespace
        self.serializer = serializer
        self.cluster = cluster
        self.origin = origin
        self.channel = channel(namespace, name)
        self.listening = False
        self._on_event = on_event
        self._waiters: dict[str, list[AsyncEvent]] = {}
        self._reset_hooked = False
        self._subscribing = AsyncMutex()
        self._closed = False

    # -- scripts -------------------------------------------------------------------------

    async def _with_tags(
        self, script: Script, keys: Sequence[str], args: Sequence[Arg], tags: Tags, fixed: int
    ) -> tuple[list[Any], dict[str, int]]:
        """Run ``script`` and read the versions of ``tags`` in the same round trip."""
        if not tags:
            reply: list[Any] = await self.backend.run(script, keys, args)
            return reply, {}
        tag_keys = [key for _, key in tags]
        if not self.cluster:
            reply = await self.backend.run(script, [*keys, *tag_keys], args)
            versions = reply[fixed:]
        else:
            calls: list[tuple[Script, Sequence[str], Sequence[Arg]]] = [
                (script, keys, args),
                (TAG_VERSIONS, tag_keys, []),
            ]
            reply, versions = await self.backend.run_many(calls)
            for result in (reply, versions):
                if isinstance(result, BaseException):
                    raise result
        return reply, {tag: int(v) for (tag, _), v in zip(tags, versions, strict=True)}

    async def read(self, entry: str, tags: Tags) -> tuple[bytes | None, dict[str, int]]:
        """The stored entry (or ``None``) and the current versions of ``tags``."""
        if not tags:
            data: bytes | None = await self.backend.execute("GET", entry)
            return data, {}
        reply, versions = await self._with_tags(READ, [entry], [], tags, 1)
        return reply[0], versions

    async def versions(self, tags: Tags) -> dict[str, int]:
        reply = await self.backend.run(TAG_VERSIONS, [key for _, key in tags], [])
        return {tag: int(v) for (tag, _), v in zip(tags, reply, strict=True)}

    def verdict(
        self, keys: EntryKeys, data: bytes | None, versions: dict[str, int]
    ) -> Verdict | None:
        """``_cache_entry.judge`` now; an unreadable entry is logged (and never decoded)."""
        verdict = judge(data, versions, self.serializer, time.time() * 1000)
        if verdict is not None and verdict.state is CORRUPT:
            logger.warning(
                "cache %r: unreadable entry treated as a miss: %s",
                self.name,
                verdict.error,
                extra={
                    "event.action": "cache-entry-rejected",
                    "interlock.cache.name": self.name,
                    "interlock.cache.key": keys.encoded,
                    "error.message": verdict.error,
                },
            )
        return verdict

    async def judge(self, keys: EntryKeys, data: bytes | None, versions: dict[str, int]) -> Verdict:
        """:meth:`verdict`, first reading the versions of tags the caller did not name."""
        verdict = self.verdict(keys, data, versions)
        if verdict is None:
            assert data is not None
            missing = [tag for tag, _ in Envelope(data).tags if tag not in versions]
            tags = [(tag, tag_key(self.namespace, self.name, tag)) for tag in missing]
            verdict = self.verdict(keys, data, {**versions, **await self.versions(tags)})
            assert verdict is not None
        return verdict

    async def lease(
        self,
        keys: EntryKeys,
        tags: Tags,
        token: str,
        lease_ms: int,
        rejected: bytes,
        take: bool,
        known: dict[str, int],
    ) -> LeaseReply:
        """Find a usable entry or take the fill lease (``take``), in one round trip.

        ``known`` are the tag versions the caller has seen: a lease taken under older
        ones (or an older generation) is outdated and taken over.
        """
        recorded = " ".join(f"{tag}:{known.get(tag, 0)}" for tag, _ in tags)
        args: list[Arg] = ["1" if take else "0", token or "-", lease_ms, rejected, recorded]
        reply, versions = await self._with_tags(LEASE, keys.all, args, tags, 5)
        return LeaseReply(reply, versions)

    async def fill(
        self,
        keys: EntryKeys,
        envelope: bytes,
        px: int,
        token: str,
        generation: str,
        seen: bytes,
        tags: Tags = (),
        versions: dict[str, int] | None = None,
    ) -> bool:
        """Write a loaded value if nothing changed since the load began (see ``FILL``):
        ``versions`` are those of ``tags`` read before loading."""
        tags = () if self.cluster else tags  # other slot: readers check the envelope
        known = " ".join(str((versions or {}).get(tag, 0)) for tag, _ in tags)
        args: list[Arg] = [
            envelope, px, token, generation, seen, self.channel, self._msg("k", keys), known
        ]  # fmt: skip
        script_keys = [*keys.all, *(key for _, key in tags)]
        return bool(await self.backend.run(FILL, script_keys, args) == 1)

    async def release(self, keys: EntryKeys, token: str) -> None:
        args: list[Arg] = [token, self.channel, self._msg("r", keys)]
        await self.backend.run(RELEASE, [keys.lease], args)

    async def write(self, keys: EntryKeys, envelope: bytes, px: int) -> None:
        args: list[Arg] = [envelope, px, _GENERATION_TTL_MS, self.channel, self._msg("k", keys)]
        await self.backend.run(WRITE, [keys.entry, keys.generation], args)

    async def delete(self, keys: EntryKeys) -> bool:
        args: list[Arg] = [_GENERATION_TTL_MS, self.channel, self._msg("k", keys)]
        return bool(await self.backend.run(DELETE, [keys.entry, keys.generation], args))

    async def invalidate_tag(self, tag: str, key: str, retention_ms: int) -> None:
        args: list[Arg] = [retention_ms, self.channel, message(self.origin, "t", tag)]
        await self.backend.run(INVALIDATE_TAG, [key], args)

    async def invalidate(
        self, keys: Sequence[EntryKeys], tags: Sequence[tuple[str, str]], retention_ms: int
    ) -> None:
        """:meth:`delete` each of ``keys`` and :meth:`invalidate_tag` each ``(tag,
        version key)``, in one pipeline."""
        calls: list[tuple[Script, Sequence[str], Sequence[Arg]]] = [
            (DELETE, [k.entry, k.generation], [_GENERATION_TTL_MS, self.channel, self._msg("k", k)])
            for k in keys
        ]
        calls += [
            (INVALIDATE_TAG, [key], [retention_ms, self.channel, message(self.origin, "t", tag)])
            for tag, key in tags
        ]
        for result in await self.backend.run_many(calls):
            if isinstance(result, Exception):
                raise result

    def _msg(self, op: str, keys: EntryKeys) -> str:
        return message(self.origin, op, keys.encoded)

    # -- channel -------------------------------------------------------------------------

    async def ensure_listening(self) -> None:
        """Subscribe to the cache's channel (once); returns when messages will arrive."""
        if self.listening:
            return
        async with self._subscribing:  # one subscription, even for concurrent first callers
            if not self._subscribed():
                await self.backend.subscribe(self.channel, self._on_message)
                if not self._reset_hooked:
                    self._reset_hooked = True
                    self.backend.on_reset(self._on_reset)
                self.listening = True

    def _subscribed(self) -> bool:
        return self.listening

    def add_waiter(self, key: str) -> AsyncEvent:
        """An event set when ``key`` is filled, written, deleted or its lease is freed."""
        event = AsyncEvent()
        self._waiters.setdefault(key, []).append(event)
        return event

    def remove_waiter(self, key: str, event: AsyncEvent) -> None:
        events = self._waiters.get(key)
        if events is not None and event in events:
            events.remove(event)
            if not events:
                del self._waiters[key]

    def _on_message(self, payload: bytes) -> None:
        try:
            origin, op, subject = payload.decode().split("|", 2)
        except ValueError:
            logger.warning("ignoring malformed message on %s: %r", self.channel, payload[:80])
            return
        if op in ("k", "r"):
            for event in list(self._waiters.get(subject, ())):
                event.set()
        self._on_event(origin, op, subject)

    def _on_reset(self) -> None:
        """Messages may have been missed: wake every waiter; the cache flushes its near cache."""
        if self._closed:
            return
        for events in list(self._waiters.values()):
            for event in list(events):
                event.set()
        self._on_event("", "*", "")

    async def aclose(self) -> None:
        self._closed = True
        if self.listening:
            self.listening = False
            await self.backend.unsubscribe(self.channel, self._on_message)
