"""The embedded ``mem://`` store: a small, thread-safe Redis for one process.

It keeps strings, hashes, sorted sets, lists and sets with per-key expiry, and runs the
very same Lua scripts as Redis in a Lua 5.1 runtime (lupa), so ``mem://`` and Redis
share one implementation of every atomic step. Publish delivers to in-process callbacks
after the command or script has finished (outside the store lock).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from lupa import lua51

from interlock.backends._script import Arg, Script
from interlock.backends.mem._collections import CollectionCommands
from interlock.backends.mem._commands import KeyCommands
from interlock.backends.mem._keyspace import CommandError, Subscriber, _b
from interlock.errors import ScriptError

__all__ = ["CommandError", "MemStore", "shared_store"]


class MemStore(KeyCommands, CollectionCommands):
    """In-process data store with Redis semantics for the commands interlock uses."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        super().__init__(clock)
        self._lock = threading.RLock()
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


_stores: dict[str, MemStore] = {}
_stores_lock = threading.Lock()


def shared_store(name: str) -> MemStore:
    """The process-wide store for ``mem://name`` (``mem://`` is the unnamed one)."""
    with _stores_lock:
        store = _stores.get(name)
        if store is None:
            store = _stores[name] = MemStore()
        return store
