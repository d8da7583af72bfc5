"""Distributed locks: the pure parts shared by the sync and async drivers.

The drivers are :class:`interlock.AsyncLock` / :class:`interlock.Lock` (generated from
``interlock/_async/lock.py``); the atomic steps are the Lua scripts in
``interlock._lock_scripts``. What lives here has no I/O: key layout, holder info, the
decoding of script replies and the renewal schedule.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from interlock import _context
from interlock._keys import base_key

FENCE_IDLE_MS = 60_000  # fence counters of idle locks expire; server time keeps fences rising
QUEUE_REGISTRATION_S = 10.0  # a waiter re-registers this often, so dead waiters drop out
_HOST = socket.gethostname()


@dataclass(frozen=True, slots=True)
class LockInfo:
    """Who holds a lock, as stored with it.

    Attributes:
        name: lock name.
        key: encoded resource key.
        fence: the holder's fencing token.
        host: host name of the holder.
        pid: process id of the holder.
        acquired_at: Unix time (seconds) when the holder got the lease.
        ttl_remaining: seconds until the lease expires unless renewed.
        request_id: the holder's request id, when it held the lock for a request.
        trace_id: the holder's trace id, likewise.
    """

    name: str
    key: str
    fence: int
    host: str
    pid: int
    acquired_at: float
    ttl_remaining: float
    request_id: str | None
    trace_id: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "pid": self.pid,
            "fence": self.fence,
            "acquired_at": self.acquired_at,
            "request_id": self.request_id,
            "trace_id": self.trace_id,
        }


def lock_keys(namespace: str, name: str, key: object) -> list[str]:
    """KEYS of the lock scripts: lock hash, fence counter, waiter queue, waiter info."""
    base = base_key(namespace, "lock", name, key)
    return [f"{base}:h", f"{base}:f", f"{base}:q", f"{base}:w"]


def new_token() -> str:
    """A random owner token (128 bits)."""
    return secrets.token_hex(16)


def holder_args() -> list[str]:
    """ARGV describing this holder: host, pid, request id, trace id."""
    ctx = _context.current()
    rid = (ctx.request_id if ctx else None) or ""
    tid = (ctx.trace_id if ctx else None) or ""
    return [_HOST, str(os.getpid()), rid.replace("|", "_"), tid.replace("|", "_")]


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value or "")


def holder_from_reply(reply: Sequence[Any]) -> dict[str, Any]:
    """Holder fields from a not-acquired ACQUIRE reply ``{0, wait, fence, host, pid, at, ...}``."""
    fence, host, pid, at, rid, tid = (list(reply[2:8]) + [None] * 6)[:6]
    if fence is None:
        return {}
    return {
        "fence": int(fence),
        "host": _text(host),
        "pid": int(pid) if pid else 0,
        "acquired_at": int(at) / 1000 if at else 0.0,
        "request_id": _text(rid) or None,
        "trace_id": _text(tid) or None,
    }


def info_from_reply(name: str, key: str, reply: Sequence[Any]) -> LockInfo | None:
    """Decode the INFO script reply ``{pttl, field, value, ...}``."""
    if not reply or int(reply[0]) == -2:
        return None
    fields = {_text(reply[i]): reply[i + 1] for i in range(1, len(reply) - 1, 2)}
    return LockInfo(
        name=name,
        key=key,
        fence=int(fields.get("fence", 0)),
        host=_text(fields.get("host")),
        pid=int(fields.get("pid") or 0),
        acquired_at=int(fields.get("at") or 0) / 1000,
        ttl_remaining=max(0, int(reply[0])) / 1000,
        request_id=_text(fields.get("rid")) or None,
        trace_id=_text(fields.get("tid")) or None,
    )


def renew_due(deadline: float, ttl: float, now: float) -> bool:
    """A lease is renewed once a third of its TTL has passed since the last renewal."""
    return deadline - now <= ttl * 2 / 3


def wait_seconds(hint_ms: int, remaining: float | None) -> float:
    """How long a waiter sleeps before retrying by itself (no wake-up arrived).

    It wakes when the holder's TTL runs out (``hint_ms`` + a little slack for clock
    granularity), before its queue registration lapses, and at its own deadline.
    """
    expiry = hint_ms / 1000 + 0.002 if hint_ms >= 0 else 0.1
    bound = min(expiry, QUEUE_REGISTRATION_S * 0.8)
    return bound if remaining is None else max(0.0, min(bound, remaining))
