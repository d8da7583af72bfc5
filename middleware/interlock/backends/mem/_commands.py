"""``mem://`` commands on strings, keys and hashes (Redis semantics)."""

from __future__ import annotations

import fnmatch
from typing import Any

from interlock.backends.mem._keyspace import (
    CommandError,
    Keyspace,
    _int,
    _ZSet,
)


class KeyCommands(Keyspace):
    """GET/SET and friends, key expiry, TIME, PUBLISH, and hashes."""

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

    def cmd_info(self, *_: bytes) -> bytes:
        """The fields the lock scripts read. An in-process store cannot restart under its
        clients (it dies with them), so it reports an uptime past any restart grace."""
        return b"# Server\r\nrun_id:embedded\r\nuptime_in_seconds:1000000\r\n"

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

    def cmd_scan(self, cursor: bytes, *opts: bytes) -> list[Any]:
        """``SCAN cursor [MATCH pattern] [COUNT n]``. The cursor encodes the last key
        returned (keys are walked in sorted order), so every key present for the whole
        scan is returned, also when keys are deleted between the calls."""
        flags = [o.upper() for o in opts]
        glob = "*"
        if b"MATCH" in flags:
            glob = opts[flags.index(b"MATCH") + 1].decode(errors="replace")
        count = _int(opts[flags.index(b"COUNT") + 1]) if b"COUNT" in flags else 10
        position = _int(cursor)
        after = position.to_bytes((position.bit_length() + 7) // 8, "big")[1:]
        live = sorted(k for k in list(self._data) if self._get(k) is not None and k > after)
        page = live[:count]
        found = [k for k in page if fnmatch.fnmatchcase(k.decode(errors="replace"), glob)]
        following = int.from_bytes(b"\x01" + page[-1], "big") if len(live) > count else 0
        return [str(following).encode(), found]

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
