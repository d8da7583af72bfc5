"""The I/O of the Django cache backend (``interlock.django.InterlockCache``) on one cache.

Keys here are Django's finished keys (``make_key``: prefix, version, key). Entries are
ordinary envelopes of the cache (``interlock.cache._entry``), so ``get`` and ``get_or_set``
go through :class:`AsyncCache` (near cache, single flight, stale serving, breaker,
``interlock_cache_*`` metrics); what Django adds — exact timeouts including "forever",
``add``, ``incr``/``decr``, ``touch``, ``clear`` — are the scripts of
``interlock.cache._django_scripts``. Timeouts arrive resolved: seconds, ``None`` for
"never expires", or ``0`` for "expire now".
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import Any

from interlock._async.cache.cache import AsyncCache
from interlock.backends._script import Arg, Script
from interlock.cache._core import EntryKeys, entry_keys, message
from interlock.cache._django_scripts import ADD, REPLACE, SET
from interlock.cache._entry import FOREVER_MS, FRESH, Envelope, encode_envelope
from interlock.cache._scripts import DELETE, READ
from interlock.errors import BackendError, BackendUnavailable

MISSING: Any = object()
_GENERATION_TTL_MS = 60_000
_LONGEST_MS = FOREVER_MS - 1  # longer timeouts are shortened to this (~49.7 days)
_ATTEMPTS = 100  # compare-and-set rounds before giving up (each lost one is another's win)


class AsyncDjangoStore:
    """Django's cache operations on one :class:`AsyncCache` (see the module docstring)."""

    def __init__(self, cache: AsyncCache) -> None:
        self.cache = cache
        self._store = cache._store
        self._near = cache._near
        self._health = cache._health
        self._options = cache.options
        self._namespace = cache._namespace

    def _keys(self, key: str) -> EntryKeys:
        return entry_keys(self._namespace, self.cache.name, key)

    def _envelope(
        self, value: Any, timeout: float | None, created_ms: int | None = None
    ) -> tuple[bytes, str]:
        """The stored bytes of ``value`` and their PX argument."""
        now_ms = int(time.time() * 1000) if created_ms is None else created_ms
        if timeout is None:
            ttl_ms, stale_ms = FOREVER_MS, 0
        else:
            ttl_ms = min(max(1, int(timeout * 1000)), _LONGEST_MS)
            stale_ms = 0 if value is None else int(self._options.stale_ttl * 1000)
        data = encode_envelope(
            value, self._options.codec, created_ms=now_ms, ttl_ms=ttl_ms, stale_ms=stale_ms,
            delta_us=0, compress_threshold=self._options.compress_threshold,
        )  # fmt: skip
        return data, "0" if timeout is None else str(ttl_ms + stale_ms)

    def _announce(self, keys: EntryKeys) -> list[Arg]:
        note = message(self._store.origin, "k", keys.encoded)
        return [_GENERATION_TTL_MS, self._store.channel, note]

    def _dropped(self, keys: EntryKeys) -> None:
        if self._near is not None:
            self._near.drop(keys.encoded)

    async def _write(self, operation: Callable[[], Any]) -> Any:
        """Run a write unless degraded; failures raise (a lost write must not go unseen)."""
        if not self._health.allow():
            raise BackendUnavailable(
                f"cache {self.cache.name!r} is degraded (backend unreachable); "
                "the write was not made"
            )
        try:
            result = await operation()
        except BackendError as exc:
            self._health.failed(exc)
            raise
        self._health.ok()
        return result

    async def _run(self, script: Script, keys: EntryKeys, args: list[Arg]) -> Any:
        """Run one of the entry's scripts as a write (see :meth:`_write`)."""
        backend = self._store.backend
        return await self._write(lambda: backend.run(script, [keys.entry, keys.generation], args))

    async def _read(self, keys: EntryKeys) -> tuple[bytes | None, Any]:
        """The stored bytes and the value if fresh (``MISSING`` otherwise)."""
        data = await self._write(lambda: self._store.backend.execute("GET", keys.entry))
        if data is None:
            return None, MISSING
        verdict = await self._store.judge(keys, data, {})
        return data, verdict.value if verdict.state is FRESH else MISSING

    # -- reads ---------------------------------------------------------------------------

    async def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key`` (also a stored ``None``), else ``default``."""
        value = await self.cache.get(key, MISSING)
        return default if value is MISSING else value

    async def has_key(self, key: str) -> bool:
        return await self.cache.get(key, MISSING) is not MISSING

    async def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """The fresh values of ``keys`` that have one: one pipelined round trip."""
        found: dict[str, Any] = {}
        wanted = [(key, self._keys(key)) for key in keys]
        if not wanted:
            return found
        if not self._health.allow():
            for _ in wanted:
                self.cache._done("bypass", None)
            return found
        calls: list[tuple[Script, list[str], list[Arg]]] = [
            (READ, [k.entry], []) for _, k in wanted
        ]
        try:
            replies = await self._store.backend.run_many(calls)
            for reply in replies:
                if isinstance(reply, BaseException):
                    raise reply
        except BackendError as exc:
            self._health.failed(exc)
            for _ in wanted:
                self.cache._done("bypass", None)
            return found
        self._health.ok()
        for (key, entry), reply in zip(wanted, replies, strict=True):
            verdict = await self._store.judge(entry, reply[0], {})
            envelope = verdict.envelope
            if verdict.state is FRESH and envelope is not None:
                found[key] = self.cache._done(
                    "negative_hit" if envelope.negative else "hit", verdict.value
                )
            else:
                self.cache._done("error" if verdict.error else "miss", None)
        return found

    async def get_or_set(self, key: str, loader: Callable[[], Any], timeout: float) -> Any:
        """``AsyncCache.get_or_load``: one load per key across callers and processes."""
        return await self.cache.get_or_load(key, loader, ttl=timeout)

    # -- writes --------------------------------------------------------------------------

    async def set(self, key: str, value: Any, timeout: float | None) -> None:
        keys = self._keys(key)
        if timeout is not None and timeout <= 0:
            await self.delete(key)
            return
        data, px = self._envelope(value, timeout)
        await self._run(SET, keys, [data, px, *self._announce(keys)])
        self._dropped(keys)

    async def set_many(self, data: Mapping[str, Any], timeout: float | None) -> list[str]:
        """Store every item in one pipelined round trip; returns the keys not stored."""
        if timeout is not None and timeout <= 0:
            await self.delete_many(data)
            return []
        calls: list[tuple[Script, list[str], list[Arg]]] = []
        for key, value in data.items():
            keys = self._keys(key)
            envelope, px = self._envelope(value, timeout)
            calls.append(
                (SET, [keys.entry, keys.generation], [envelope, px, *self._announce(keys)])
            )
        if not calls:
            return []
        replies = await self._write(lambda: self._store.backend.run_many(calls))
        for key in data:
            self._dropped(self._keys(key))
        failed = zip(data, replies, strict=True)
        return [key for key, reply in failed if isinstance(reply, BaseException)]

    async def add(self, key: str, value: Any, timeout: float | None) -> bool:
        """Store ``value`` unless ``key`` has a fresh value; True if stored."""
        keys = self._keys(key)
        if timeout is not None and timeout <= 0:
            return not await self.has_key(key)
        data, px = self._envelope(value, timeout)
        seen = b""
        for _ in range(_ATTEMPTS):
            args: list[Arg] = [data, px, seen, *self._announce(keys)]
            reply = await self._run(ADD, keys, args)
            if int(reply[0]) == 1:
                self._dropped(keys)
                return True
            verdict = await self._store.judge(keys, reply[1], {})
            if verdict.state is FRESH:
                return False
            seen = verdict.rejected or Envelope(reply[1]).header
        raise BackendError(f"add({key!r}) lost {_ATTEMPTS} races in a row")

    async def _replace(
        self, key: str, change: Callable[[bytes, Any], tuple[bytes, str] | None]
    ) -> bool:
        """Compare-and-set loop: ``change(stored, value)`` gives the new entry and PX
        (``None``: leave it); False if ``key`` has no fresh value."""
        keys = self._keys(key)
        for _ in range(_ATTEMPTS):
            stored, value = await self._read(keys)
            if stored is None or value is MISSING:
                return False
            new = change(stored, value)
            if new is None:
                return True
            args: list[Arg] = [stored, new[0], new[1], *self._announce(keys)]
            replaced = await self._run(REPLACE, keys, args)
            if replaced == 1:
                self._dropped(keys)
                return True
        raise BackendError(f"{key!r} changed {_ATTEMPTS} times while being updated")

    async def incr(self, key: str, delta: int) -> Any:
        """Add ``delta`` to the value of ``key``, keeping its expiry.

        Raises:
            ValueError: ``key`` has no value.
            TypeError: the value is not a number.
        """
        result: list[Any] = []

        def change(stored: bytes, value: Any) -> tuple[bytes, str]:
            new = value + delta  # TypeError for None, str, ...
            old = Envelope(stored)
            result[:] = [new]
            data = encode_envelope(
                new, self._options.codec, created_ms=old.created_ms, ttl_ms=old.ttl_ms,
                stale_ms=old.stale_ms, delta_us=0, tags=old.tags,
                compress_threshold=self._options.compress_threshold,
            )  # fmt: skip
            return data, "keep"

        if not await self._replace(key, change):
            raise ValueError(f"Key {key!r} not found")
        return result[0]

    async def touch(self, key: str, timeout: float | None) -> bool:
        """Give ``key`` a new timeout from now; False if it has no value."""
        if timeout is not None and timeout <= 0:
            return await self.delete(key) if await self.has_key(key) else False

        def change(stored: bytes, value: Any) -> tuple[bytes, str]:
            return self._envelope(value, timeout)

        return await self._replace(key, change)

    async def delete(self, key: str) -> bool:
        return await self.cache.delete(key)

    async def delete_many(self, keys: Iterable[str]) -> None:
        """Delete ``keys`` in one pipelined round trip."""
        entries = [self._keys(key) for key in keys]
        if not entries:
            return
        for entry in entries:
            self._dropped(entry)
        calls = [(DELETE, [k.entry, k.generation], self._announce(k)) for k in entries]
        replies = await self._write(lambda: self._store.backend.run_many(calls))
        for entry in entries:
            self._dropped(entry)
        for reply in replies:
            if isinstance(reply, BaseException):
                raise reply

    async def clear(self) -> None:
        """Delete every entry of this cache (all Django key prefixes and versions).

        Walks the cache's keys with ``SCAN`` and deletes them in pipelined batches; other
        processes' near caches are flushed. Not on Redis Cluster (``SCAN`` is per node).
        """
        if self._store.cluster:
            raise NotImplementedError(
                "clear() is not supported on Redis Cluster yet; delete keys explicitly "
                "or use a version (incr_version / VERSION) to retire them"
            )
        name = self.cache.name
        pattern = _glob_escape(f"{self._namespace}:cache:{{{name}:") + "*"
        cursor: Any = b"0"
        backend = self._store.backend
        if self._near is not None:
            self._near.clear()
        while True:
            page: list[Arg] = ["SCAN", cursor, "MATCH", pattern, "COUNT", 500]
            cursor, found = await self._write(partial(backend.execute, *page))
            entries = [_entry_of(k) for k in found]
            calls = [
                (DELETE, [k.entry, k.generation], self._announce(k))
                for k in entries
                if k is not None
            ]
            if calls:
                await self._write(partial(backend.run_many, calls))
            if int(cursor) == 0:
                break
        flush = message(self._store.origin, "*", "")
        await self._write(lambda: backend.execute("PUBLISH", self._store.channel, flush))
        if self._near is not None:
            self._near.clear()


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _entry_of(key: bytes | str) -> EntryKeys | None:
    """The entry keys of a key found by ``SCAN`` (its lease and generation: ``None``)."""
    text = key.decode() if isinstance(key, bytes) else key
    if not text.endswith("}"):
        return None
    encoded = text[text.index("{") + 1 : -1].split(":", 1)[1]
    return EntryKeys(encoded, text)
