"""``mem://`` commands on sorted sets, lists and sets (Redis semantics)."""

from __future__ import annotations

from collections.abc import Sequence

from interlock.backends.mem._keyspace import (
    CommandError,
    Keyspace,
    _b,
    _int,
    _num,
    _ZSet,
)


class CollectionCommands(Keyspace):
    """Sorted sets, lists and sets."""

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
