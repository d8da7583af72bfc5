"""Redis in two-phase commit: reserve / confirm / cancel in Lua on a named store.

A store is a set of string keys sharing one hash tag (so its scripts run on Redis Cluster).
Writes made in a transaction are staged on the client; prepare validates them (integer
bounds, expected values, keys guarded by another prepared branch) and reserves them
atomically, commit applies them, abort discards them. Committed values are read with
:meth:`AsyncRedisBranch.get` or :meth:`AsyncRedisStore.get`; a prepared write is not
visible before commit.
"""

from __future__ import annotations

from typing import Any

from interlock._async.backend.base import AsyncBackend
from interlock._keys import encode_key, validate_name
from interlock.backends._script import Arg
from interlock.errors import HeuristicOutcome
from interlock.txn._records import BranchRef, PreparedBranch
from interlock.txn._scripts import STORE_APPLY, STORE_FINISH, STORE_PREPARE
from interlock.txn._xid import owned_by, parse_gtrid, split_branch

OUTCOME_TTL_MS = 86_400_000
RESOURCE = "redis"


def store_base(namespace: str, store: str) -> str:
    return f"{namespace}:txs:{{{validate_name('store', store)}}}"


def stores_key(namespace: str) -> str:
    return f"{namespace}:txs:stores"


def _finish_keys(base: str, xid: str) -> list[str]:
    return [f"{base}:s:{xid}", f"{base}:g", f"{base}:p", f"{base}:o:{xid}"]


def _text(value: Arg) -> Arg:
    if isinstance(value, bool) or not isinstance(value, str | bytes | int):
        raise TypeError(f"store values are str, bytes or int, not {type(value).__name__}")
    return value


class AsyncRedisStore:
    """Read access to a store's committed values (writes go through transactions)."""

    def __init__(self, backend: AsyncBackend, namespace: str, store: str) -> None:
        self.backend = backend
        self.namespace = namespace
        self.store = store
        self.base = store_base(namespace, store)

    def value_key(self, key: object) -> str:
        return f"{self.base}:v:{encode_key(key)}"

    async def get(self, key: object) -> bytes | None:
        """The committed value of ``key`` (``None`` if absent)."""
        value: bytes | None = await self.backend.execute("GET", self.value_key(key))
        return value


class AsyncRedisBranch(AsyncRedisStore):
    """A transaction's staged writes to one store; created by ``AsyncTransaction.redis``.

    The write methods only stage (no I/O); prepare sends them all in one script.
    """

    kind = "redis"

    def __init__(
        self, backend: AsyncBackend, namespace: str, store: str, registered: set[str]
    ) -> None:
        super().__init__(backend, namespace, store)
        self.resource = RESOURCE
        self.ref = store
        self.refusal: tuple[str, str] | None = None
        self._ops: list[tuple[str, str, Arg, str, str]] = []
        self._registered = registered
        self._sent = False

    def set(self, key: object, value: str | bytes | int) -> None:
        """Stage ``key = value``."""
        self._ops.append(("set", self.value_key(key), _text(value), "", ""))

    def delete(self, key: object) -> None:
        """Stage the deletion of ``key``."""
        self._ops.append(("del", self.value_key(key), "", "", ""))

    def incrby(
        self, key: object, amount: int, *, min: int | None = None, max: int | None = None
    ) -> None:
        """Stage ``key += amount``; prepare votes no if the result leaves [min, max]."""
        if isinstance(amount, bool) or not isinstance(amount, int):
            raise TypeError(f"amount must be an int, not {type(amount).__name__}")
        low = "" if min is None else str(int(min))
        high = "" if max is None else str(int(max))
        self._ops.append(("incr", self.value_key(key), amount, low, high))

    def expect(self, key: object, value: str | bytes | int | None) -> None:
        """Stage a check: prepare votes no unless ``key`` holds ``value`` (None: absent)."""
        if value is None:
            self._ops.append(("absent", self.value_key(key), "", "", ""))
        else:
            self._ops.append(("expect", self.value_key(key), _text(value), "", ""))

    def _script_call(self, xid: str) -> tuple[list[str], list[Arg]]:
        info = parse_gtrid(xid.rpartition(":")[0])
        created = int((info.created if info else 0) * 1000)
        keys = _finish_keys(self.base, xid) + [op[1] for op in self._ops]
        args: list[Arg] = [xid, created, len(self._ops)]
        for op, _key, arg, low, high in self._ops:
            args += [op, arg, low, high]
        return keys, args

    def _refused(self, reply: list[Any]) -> bool:
        index = int(reply[1]) - 1
        reason = reply[2].decode() if isinstance(reply[2], bytes) else str(reply[2])
        self.refusal = (self._ops[index][1], reason)
        return False

    async def prepare(self, xid: str) -> bool:
        if not self._ops:
            return True
        if self.store not in self._registered:
            await self.backend.execute("SADD", stores_key(self.namespace), self.store)
            self._registered.add(self.store)
        keys, args = self._script_call(xid)
        self._sent = True
        reply = await self.backend.run(STORE_PREPARE, keys, args)
        code = int(reply[0])
        if code in (1, 2):
            return True
        if code == 3:
            return bool(reply[1] == b"c")
        return self._refused(reply)

    async def commit_one_phase(self, xid: str) -> bool:
        """Validate and apply at once (the transaction's only branch)."""
        if not self._ops:
            return True
        keys, args = self._script_call(xid)
        reply = await self.backend.run(STORE_APPLY, keys, args)
        return True if int(reply[0]) == 1 else self._refused(reply)

    async def commit(self, xid: str) -> None:
        if not self._ops:
            return
        reply = await self.backend.run(
            STORE_FINISH, _finish_keys(self.base, xid), [xid, "c", OUTCOME_TTL_MS]
        )
        if int(reply[0]) != 1 and reply[1] != b"c":
            raise HeuristicOutcome(
                f"branch {xid} on store {self.store!r} was "
                f"{'aborted' if reply[1] == b'a' else 'lost'} although the decision is commit"
            )

    async def abort(self, xid: str) -> None:
        if not self._sent:
            return
        reply = await self.backend.run(
            STORE_FINISH, _finish_keys(self.base, xid), [xid, "a", OUTCOME_TTL_MS]
        )
        if int(reply[0]) != 1 and reply[1] == b"c":
            raise HeuristicOutcome(
                f"branch {xid} on store {self.store!r} was committed although the decision is abort"
            )


class AsyncRedisResource:
    """Recovery's view of every store of a namespace on the coordination backend."""

    kind = "redis"

    def __init__(self, backend: AsyncBackend, namespace: str) -> None:
        self.name = RESOURCE
        self.backend = backend
        self.namespace = namespace

    async def check(self) -> None:
        """Durability is the decision log's check when both share the backend."""

    async def prepared(self, namespace: str) -> list[PreparedBranch]:
        stores = await self.backend.execute("SMEMBERS", stores_key(namespace))
        found = []
        for raw in sorted(stores or ()):
            store = raw.decode() if isinstance(raw, bytes) else str(raw)
            base = store_base(namespace, store)
            for member in await self.backend.execute("ZRANGE", f"{base}:p", 0, -1):
                xid = member.decode() if isinstance(member, bytes) else str(member)
                parts = split_branch(xid)
                if parts is None or not owned_by(parts[0], namespace):
                    continue
                info = parse_gtrid(parts[0])
                created = info.created if info else 0.0
                found.append(PreparedBranch(self.name, parts[0], parts[1], created, store))
        return found

    async def finish(self, branch: PreparedBranch, commit: bool) -> str:
        xid = f"{branch.gtrid}:{branch.bqual}"
        base = store_base(self.namespace, branch.ref)
        reply: Any = await self.backend.run(
            STORE_FINISH, _finish_keys(base, xid), [xid, "c" if commit else "a", OUTCOME_TTL_MS]
        )
        return "done" if int(reply[0]) == 1 else "gone"

    async def fate(self, gtrid: str, ref: BranchRef) -> str:
        if not ref.ref:
            return "unknown"
        xid = f"{gtrid}:{ref.bqual}"
        keys = _finish_keys(store_base(self.namespace, ref.ref), xid)
        outcome = await self.backend.execute("GET", keys[3])
        if outcome == b"c":
            return "committed"
        if outcome == b"a":
            return "aborted"
        prepared = await self.backend.execute("ZSCORE", keys[2], xid)
        return "prepared" if prepared is not None else "unknown"

    async def cleanup(self) -> None:
        """Outcome markers expire by themselves."""

    async def aclose(self) -> None:
        """The backend belongs to the interlock instance."""
