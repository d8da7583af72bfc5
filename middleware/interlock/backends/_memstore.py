"""The embedded ``mem://`` store: a small, thread-safe Redis for one process.

It keeps strings, hashes, sorted sets, lists and sets with per-key expiry, and runs the
very same Lua scripts as Redis in a Lua 5.1 runtime (lupa), so ``mem://`` and Redis
share one implementation of every atomic step. Publish delivers to in-process callbacks
after the command or script has finished (outside the store lock).
"""

from __future__ import annotations

import fnmatch
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from lupa import lua51

from interlock.backends._script import Arg, Script
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


class MemStore:
    """In-process data store with Redis semantics for the commands interlock uses."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.RLock()
        self._data: dict[bytes, Any] = {}
        self._expiry: dict[bytes, float] = {}
        self._subscribers: dict[bytes, list[Subscriber]] = {}
        self._outbox: list[tuple[bytes, bytes]] = []
        self._lua = lua51.LuaRuntime(encoding=None, unpack_returned_tuples=False)
        self._compiled: dict[str, Any] = {}
        self._lua.globals().redis = self._lua.table_from(
            {
                b"call": self._lua_call,
                b"pcall": self._lua_pcall,
                b"error_reply": lambda msg: self._lua.table_from({b"err": msg}),
                b"status_reply": lambda msg: self._lua.table_from({b"ok": msg}),
            }
        )
        self._commands: dict[bytes, Callable[..., Any]] = {
            name[4:].upper().encode(): getattr(self, name)
            for name in dir(self)
            if name.startswith("cmd_")
        }

    # -- public entry points -------------------------------------------------------------

    def execute(self, *args: Arg) -> Any:
        """Run one command atomically and deliver what it published."""
        with self._lock:
            result = self._dispatch([_b(a) for a in args])
        self._flush()
        return result

    def run_script(self, script: Script, keys: Sequence[Arg], args: Sequence[Arg]) -> Any:
        """Run ``script`` atomically with KEYS and ARGV, returning a redis-py style reply."""
        with self._lock:
            function = self._compiled.get(script.sha)
            if function is None:
                function = self._lua.eval(f"function(KEYS, ARGV)\n{script.source}\nend")
                self._compiled[script.sha] = function
            lua_keys = self._lua.table_from([_b(k) for k in keys])
            lua_args = self._lua.table_from([_b(a) for a in args])
            try:
                reply = function(lua_keys, lua_args)
            except lua51.LuaError as exc:
                raise ScriptError(f"script {script.name} failed: {exc}") from exc
            result = self._from_lua(reply)
        self._flush()
        return result

    def subscribe(self, channel: str, callback: Subscriber) -> None:
        with self._lock:
            self._subscribers.setdefault(channel.encode(), []).append(callback)

    def unsubscribe(self, channel: str, callback: Subscriber) -> None:
        with self._lock:
            callbacks = self._subscribers.get(channel.encode(), [])
            if callback in callbacks:
                callbacks.remove(callback)

    # -- Lua bridge ----------------------------------------------------------------------

    def _lua_call(self, *args: Any) -> Any:
        return self._to_lua(self._dispatch([_b(a) for a in args]))

    def _lua_pcall(self, *args: Any) -> Any:
        try:
            return self._lua_call(*args)
        except CommandError as exc:
            return self._lua.table_from({b"err": str(exc).encode()})

    def _to_lua(self, value: Any) -> Any:
        if value is None:
            return False
        if isinstance(value, list):
            return self._lua.table_from([self._to_lua(v) for v in value])
        if isinstance(value, str):
            return self._lua.table_from({b"ok": value.encode()})
        return value

    def _from_lua(self, value: Any) -> Any:
        if value is None or value is False:
            return None
        if value is True:
            return 1
        if isinstance(value, float):
            return int(value)
        if isinstance(value, int | bytes):
            return value
        ok = value[b"ok"]
        if ok is not None:
            return ok
        err = value[b"err"]
        if err is not None:
            raise ScriptError(err.decode(errors="replace"))
        items = []
        index = 1
        while (item := value[index]) is not None:
            items.append(self._from_lua(item))
            index += 1
        return items

    # -- internals -----------------------------------------------------------------------

    def _dispatch(self, args: list[bytes]) -> Any:
        command = self._commands.get(args[0].upper())
        if command is None:
            raise CommandError(f"ERR unknown command {args[0]!r} in mem:// backend")
        return command(*args[1:])

    def _flush(self) -> None:
        with self._lock:
            outbox, self._outbox = self._outbox, []
            deliveries = [(cb, msg) for ch, msg in outbox for cb in self._subscribers.get(ch, ())]
        for callback, message in deliveries:
            callback(message)

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

    # -- strings and keys ----------------------------------------------------------------

    def cmd_get(self, key: bytes) -> bytes | None:
        return self._get(key, bytes)  # type: ignore[no-any-return]

    def cmd_getrange(self, key: bytes, start: bytes, end: bytes) -> bytes:
        value = self._get(key, bytes) or b""
        first, last, size = _int(start), _int(end), len(value)
        first = max(0, first + size if first < 0 else first)
        last = last + size if last < 0 else min(last, size - 1)
        return value[first : last + 1] if first <= last else b""

    def cmd_mget(self, *keys: bytes) -> list[bytes | None]:
        return [self._get(k) if isinstance(self._get(k), bytes) else None for k in keys]

    def cmd_set(self, key: bytes, value: bytes, *opts: bytes) -> str | bytes | None:
        flags = [o.upper() for o in opts]
        ttl_ms: float | None = None
        for name, factor in ((b"PX", 1.0), (b"EX", 1000.0)):
            if name in flags:
                ttl_ms = _int(opts[flags.index(name) + 1]) * factor
        exists = self._get(key) is not None
        old = self._get(key, bytes) if b"GET" in flags else None
        if (b"NX" in flags and exists) or (b"XX" in flags and not exists):
            return old if b"GET" in flags else None
        self._put(key, value, keep_ttl=b"KEEPTTL" in flags)
        if ttl_ms is not None:
            self._expiry[key] = self._now_ms() + ttl_ms
        return old if b"GET" in flags else "OK"

    def cmd_del(self, *keys: bytes) -> int:
        count = 0
        for key in keys:
            if self._get(key) is not None:
                count += 1
                self._data.pop(key, None)
                self._expiry.pop(key, None)
        return count

    cmd_unlink = cmd_del

    def cmd_exists(self, *keys: bytes) -> int:
        return sum(self._get(k) is not None for k in keys)

    def cmd_type(self, key: bytes) -> str:
        value = self._get(key)
        names: dict[type, str] = {
            bytes: "string", dict: "hash", _ZSet: "zset", list: "list", set: "set"
        }
        return "none" if value is None else names[type(value)]

    def cmd_pexpire(self, key: bytes, ms: bytes) -> int:
        if self._get(key) is None:
            return 0
        self._expiry[key] = self._now_ms() + _int(ms)
        return 1

    def cmd_expire(self, key: bytes, seconds: bytes) -> int:
        return self.cmd_pexpire(key, str(_int(seconds) * 1000).encode())

    def cmd_pexpireat(self, key: bytes, at_ms: bytes) -> int:
        if self._get(key) is None:
            return 0
        self._expiry[key] = float(_int(at_ms))
        return 1

    def cmd_persist(self, key: bytes) -> int:
        if self._get(key) is None or key not in self._expiry:
            return 0
        del self._expiry[key]
        return 1

    def cmd_pttl(self, key: bytes) -> int:
        if self._get(key) is None:
            return -2
        deadline = self._expiry.get(key)
        return -1 if deadline is None else max(0, int(deadline - self._now_ms()))

    def cmd_ttl(self, key: bytes) -> int:
        pttl = self.cmd_pttl(key)
        return pttl if pttl < 0 else (pttl + 500) // 1000

    def cmd_incrby(self, key: bytes, amount: bytes) -> int:
        value = _int(self._get(key, bytes) or b"0") + _int(amount)
        self._put(key, str(value).encode())
        return value

    def cmd_incr(self, key: bytes) -> int:
        return self.cmd_incrby(key, b"1")

    def cmd_decr(self, key: bytes) -> int:
        return self.cmd_incrby(key, b"-1")

    def cmd_time(self) -> list[bytes]:
        now = self._clock()
        return [str(int(now)).encode(), str(int((now % 1) * 1_000_000)).encode()]

    def cmd_publish(self, channel: bytes, message: bytes) -> int:
        self._outbox.append((channel, message))
        return len(self._subscribers.get(channel, ()))

    def cmd_ping(self) -> str:
        return "PONG"

    def cmd_flushall(self, *_: bytes) -> str:
        self._data.clear()
        self._expiry.clear()
        return "OK"

    def cmd_keys(self, pattern: bytes) -> list[bytes]:
        glob = pattern.decode(errors="replace")
        live = [k for k in list(self._data) if self._get(k) is not None]
        return [k for k in live if fnmatch.fnmatchcase(k.decode(errors="replace"), glob)]

    # -- hashes --------------------------------------------------------------------------

    def cmd_hset(self, key: bytes, *pairs: bytes) -> int:
        if not pairs or len(pairs) % 2:
            raise CommandError("ERR wrong number of arguments for 'hset' command")
        table = self._container(key, dict)
        added = sum(f not in table for f in pairs[::2])
        table.update(zip(pairs[::2], pairs[1::2], strict=True))
        return added

    def cmd_hget(self, key: bytes, field: bytes) -> bytes | None:
        return (self._get(key, dict) or {}).get(field)

    def cmd_hmget(self, key: bytes, *fields: bytes) -> list[bytes | None]:
        table = self._get(key, dict) or {}
        return [table.get(f) for f in fields]

    def cmd_hgetall(self, key: bytes) -> list[bytes]:
        table = self._get(key, dict) or {}
        return [item for pair in table.items() for item in pair]

    def cmd_hdel(self, key: bytes, *fields: bytes) -> int:
        table = self._get(key, dict) or {}
        count = sum(table.pop(f, None) is not None for f in fields)
        self._drop_if_empty(key)
        return count

    def cmd_hexists(self, key: bytes, field: bytes) -> int:
        return int(field in (self._get(key, dict) or {}))

    def cmd_hlen(self, key: bytes) -> int:
        return len(self._get(key, dict) or {})

    def cmd_hincrby(self, key: bytes, field: bytes, amount: bytes) -> int:
        table = self._container(key, dict)
        value = _int(table.get(field, b"0")) + _int(amount)
        table[field] = str(value).encode()
        return value

    # -- sorted sets ---------------------------------------------------------------------

    def cmd_zadd(self, key: bytes, *args: bytes) -> int:
        flags = {b"NX", b"XX", b"GT", b"LT", b"CH"}
        opts = set()
        rest = list(args)
        while rest and rest[0].upper() in flags:
            opts.add(rest.pop(0).upper())
        zset = self._container(key, _ZSet)
        added = 0
        for score_raw, member in zip(rest[::2], rest[1::2], strict=True):
            score = _num(score_raw)
            if member in zset:
                if b"NX" in opts:
                    continue
                current = zset[member]
                if (b"GT" in opts and score <= current) or (b"LT" in opts and score >= current):
                    continue
                zset[member] = score
            elif b"XX" not in opts:
                zset[member] = score
                added += 1
        self._drop_if_empty(key)
        return added

    def cmd_zrem(self, key: bytes, *members: bytes) -> int:
        zset = self._get(key, _ZSet) or {}
        count = sum(zset.pop(m, None) is not None for m in members)
        self._drop_if_empty(key)
        return count

    def cmd_zscore(self, key: bytes, member: bytes) -> bytes | None:
        score = (self._get(key, _ZSet) or {}).get(member)
        return None if score is None else _b(score)

    def cmd_zcard(self, key: bytes) -> int:
        return len(self._get(key, _ZSet) or {})

    def _sorted(self, key: bytes) -> list[tuple[bytes, float]]:
        zset = self._get(key, _ZSet) or {}
        return sorted(zset.items(), key=lambda item: (item[1], item[0]))

    def cmd_zrank(self, key: bytes, member: bytes) -> int | None:
        members = [m for m, _ in self._sorted(key)]
        return members.index(member) if member in members else None

    def cmd_zrange(self, key: bytes, start: bytes, stop: bytes, *opts: bytes) -> list[bytes]:
        items = self._sorted(key)
        first, last = _int(start), _int(stop)
        n = len(items)
        first = max(0, first + n if first < 0 else first)
        last = last + n if last < 0 else min(last, n - 1)
        chosen = items[first : last + 1] if first <= last else []
        return self._with_scores(chosen, opts)

    def cmd_zrangebyscore(self, key: bytes, low: bytes, high: bytes, *opts: bytes) -> list[bytes]:
        lo_open, hi_open = low.startswith(b"("), high.startswith(b"(")
        lo, hi = _num(low.lstrip(b"(")), _num(high.lstrip(b"("))
        chosen = [
            (m, s)
            for m, s in self._sorted(key)
            if (s > lo if lo_open else s >= lo) and (s < hi if hi_open else s <= hi)
        ]
        flags = [o.upper() for o in opts]
        if b"LIMIT" in flags:
            at = flags.index(b"LIMIT")
            offset, count = _int(opts[at + 1]), _int(opts[at + 2])
            chosen = chosen[offset:] if count < 0 else chosen[offset : offset + count]
        return self._with_scores(chosen, opts)

    @staticmethod
    def _with_scores(items: list[tuple[bytes, float]], opts: Sequence[bytes]) -> list[bytes]:
        if b"WITHSCORES" in [o.upper() for o in opts]:
            return [x for m, s in items for x in (m, _b(s))]
        return [m for m, _ in items]

    # -- lists and sets ------------------------------------------------------------------

    def cmd_rpush(self, key: bytes, *values: bytes) -> int:
        items = self._container(key, list)
        items.extend(values)
        return len(items)

    def cmd_lpush(self, key: bytes, *values: bytes) -> int:
        items = self._container(key, list)
        for value in values:
            items.insert(0, value)
        return len(items)

    def cmd_lpop(self, key: bytes) -> bytes | None:
        items = self._get(key, list)
        value = items.pop(0) if items else None
        self._drop_if_empty(key)
        return value

    def cmd_rpop(self, key: bytes) -> bytes | None:
        items = self._get(key, list)
        value = items.pop() if items else None
        self._drop_if_empty(key)
        return value

    def cmd_llen(self, key: bytes) -> int:
        return len(self._get(key, list) or [])

    def cmd_lrange(self, key: bytes, start: bytes, stop: bytes) -> list[bytes]:
        items = self._get(key, list) or []
        first, last = _int(start), _int(stop)
        n = len(items)
        first = max(0, first + n if first < 0 else first)
        last = last + n if last < 0 else min(last, n - 1)
        return list(items[first : last + 1]) if first <= last else []

    def cmd_lrem(self, key: bytes, count: bytes, value: bytes) -> int:
        items = self._get(key, list) or []
        limit = _int(count)
        if limit < 0:
            raise CommandError("ERR mem:// LREM supports count >= 0 only")
        removed = 0
        kept = []
        for item in items:
            if item == value and (limit == 0 or removed < limit):
                removed += 1
            else:
                kept.append(item)
        if key in self._data:
            self._data[key] = kept
        self._drop_if_empty(key)
        return removed

    def cmd_sadd(self, key: bytes, *members: bytes) -> int:
        members_set = self._container(key, set)
        added = len(set(members) - members_set)
        members_set.update(members)
        return added

    def cmd_srem(self, key: bytes, *members: bytes) -> int:
        members_set = self._get(key, set) or set()
        removed = len(members_set & set(members))
        members_set.difference_update(members)
        self._drop_if_empty(key)
        return removed

    def cmd_smembers(self, key: bytes) -> list[bytes]:
        return sorted(self._get(key, set) or ())

    def cmd_sismember(self, key: bytes, member: bytes) -> int:
        return int(member in (self._get(key, set) or ()))

    def cmd_scard(self, key: bytes) -> int:
        return len(self._get(key, set) or ())


class _ZSet(dict[bytes, float]):
    """A sorted set: member -> score (sorted on read; the store is small and local)."""


_stores: dict[str, MemStore] = {}
_stores_lock = threading.Lock()


def shared_store(name: str) -> MemStore:
    """The process-wide store for ``mem://name`` (``mem://`` is the unnamed one)."""
    with _stores_lock:
        store = _stores.get(name)
        if store is None:
            store = _stores[name] = MemStore()
        return store
