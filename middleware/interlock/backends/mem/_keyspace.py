"""The keyspace of the ``mem://`` store: values, per-key expiry, and type checks.

The command mixins (``_memcommands``, ``_memcollections``) implement Redis commands on top
of it; ``_memstore.MemStore`` adds locking, the Lua runtime and publish delivery.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from interlock.errors import ScriptError

Subscriber = Callable[[bytes], None]


class CommandError(ScriptError):
    """A command was used with the wrong arguments or against the wrong type."""


def _b(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, bool):
        return b"1" if value else b"0"
    if isinstance(value, int):
        return str(value).encode()
    if isinstance(value, float):
        return str(int(value)).encode() if value.is_integer() else repr(value).encode()
    if isinstance(value, str):
        return value.encode()
    raise CommandError(f"unsupported argument {value!r}")


def _num(value: bytes) -> float:
    text = value.decode()
    if text in ("+inf", "inf"):
        return float("inf")
    if text == "-inf":
        return float("-inf")
    return float(text)


def _int(value: bytes) -> int:
    try:
        return int(value)
    except ValueError:
        raise CommandError("ERR value is not an integer or out of range") from None


class _ZSet(dict[bytes, float]):
    """A sorted set: member -> score (sorted on read; the store is small and local)."""


class Keyspace:
    """Values by key with lazy expiry; callers hold the store lock."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._data: dict[bytes, Any] = {}
        self._expiry: dict[bytes, float] = {}
        self._subscribers: dict[bytes, list[Subscriber]] = {}
        self._outbox: list[tuple[bytes, bytes]] = []

    def _now_ms(self) -> float:
        return self._clock() * 1000.0

    def _get(self, key: bytes, kind: type | None = None) -> Any:
        deadline = self._expiry.get(key)
        if deadline is not None and deadline <= self._now_ms():
            del self._expiry[key]
            self._data.pop(key, None)
        value = self._data.get(key)
        if value is not None and kind is not None and not isinstance(value, kind):
            raise CommandError("WRONGTYPE Operation against a key holding the wrong kind of value")
        return value

    def _put(self, key: bytes, value: Any, keep_ttl: bool = True) -> None:
        self._data[key] = value
        if not keep_ttl:
            self._expiry.pop(key, None)

    def _container(self, key: bytes, kind: type) -> Any:
        value = self._get(key, kind)
        if value is None:
            value = kind()
            self._data[key] = value
        return value

    def _drop_if_empty(self, key: bytes) -> None:
        if not self._data.get(key):
            self._data.pop(key, None)
            self._expiry.pop(key, None)
