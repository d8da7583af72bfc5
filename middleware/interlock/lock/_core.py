"""The pure lock helpers (documented on :mod:`interlock.lock`): key layout, holder info,
reply decoding, renewal schedule and time budgets."""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from interlock import _context, _tracing
from interlock._keys import tagged

FENCE_IDLE_MS = 60_000  # fence bookkeeping of idle locks expires; server time keeps fences rising
FENCE_REFRESH_MS = 30_000  # ... at most this much later (its expiry is written once per window)
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
        trace_id: the holder's trace id, likewise (or its OpenTelemetry span's).
        span_id: the holder's ``interlock.lock.acquire`` span (or the span active when it
            acquired), when it traced: a waiter's span links to it (docs/tracing.md).
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
    span_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "pid": self.pid,
            "fence": self.fence,
            "acquired_at": self.acquired_at,
            "request_id": self.request_id,
            "trace_id": self.trace_id,
            "span_id": self.span_id,
        }


LOCK_SUFFIXES = (":o", ":n", ":a", ":d")
"""Suffixes of a lock's keys after its base ``<ns>:lock:{name:key}``: the lock, its fence
bookkeeping, the waiter queue and the waiter details (formats in ``lock._scripts``). They
changed with the stored format, so clients of different formats never read each other's."""


def lock_keys(namespace: str, name: str, encoded_key: str) -> list[str]:
    """KEYS of the lock scripts (lock, fence bookkeeping, waiter queue, waiter details)."""
    base = tagged(namespace, "lock", name, encoded_key)
    return [base + suffix for suffix in LOCK_SUFFIXES]


def signal_key(keys: Sequence[str], token: str) -> str:
    """The signal list of a blocking waiter (``<base>:s:<token>``, see lock._scripts)."""
    return f"{keys[0][:-1]}s:{token}"


def new_token() -> str:
    """A random token (128 bits, hex)."""
    return secrets.token_hex(16)


def new_lock_token() -> str:
    """A random lock owner token: 128 bits in 22 characters (URL-safe base64, so never
    ``|`` or ``:``, the separators of the lock's values and wake-ups)."""
    return secrets.token_urlsafe(16)


def holder_arg() -> str:
    """ARGV describing this holder: ``host|pid|request id|trace id``.

    Inside a recording OpenTelemetry span (the acquire's own, when tracing is on) the trace
    field is that span's ``trace id:span id``, so a waiter's span can link to it.
    """
    ids = _tracing.active_ids() if _tracing.AVAILABLE else None
    ctx = _context.current()
    if ids is not None:
        rid = "" if ctx is None else (ctx.request_id or "").replace("|", "_")
        return f"{_HOST}|{os.getpid()}|{rid}|{ids[0]}:{ids[1]}"
    if ctx is None or not (ctx.request_id or ctx.trace_id):
        return f"{_HOST}|{os.getpid()}||"
    rid = (ctx.request_id or "").replace("|", "_")
    tid = (ctx.trace_id or "").replace("|", "_")
    return f"{_HOST}|{os.getpid()}|{rid}|{tid}"


def parse_lock(value: bytes | None) -> dict[str, Any]:
    """Holder fields of a stored lock string ``token|fence|ttl_ms|host|pid|rid|tid|``.

    The acquisition time is the fence's: a fence is the server time of its grant in µs (or,
    if the server clock stepped back, just above the previous fence).
    """
    if not value:
        return {}
    parts = value.decode(errors="replace").split("|")
    parts += [""] * (7 - len(parts))
    fence = int(parts[1] or 0)
    trace_id, _, span_id = parts[6].partition(":")
    return {
        "fence": fence,
        "acquired_at": fence / 1e6,
        "ttl": int(parts[2] or 0) / 1000,
        "host": parts[3],
        "pid": int(parts[4] or 0),
        "request_id": parts[5] or None,
        "trace_id": trace_id or None,
        "span_id": span_id or None,
    }


def info_from_reply(name: str, key: str, reply: Sequence[Any]) -> LockInfo | None:
    """Decode the INFO script reply ``{pttl, lock string}`` (``{-2}`` when free)."""
    if not reply or int(reply[0]) == -2:
        return None
    fields = parse_lock(reply[1])
    return LockInfo(
        name=name,
        key=key,
        fence=fields["fence"],
        host=fields["host"],
        pid=fields["pid"],
        acquired_at=fields["acquired_at"],
        ttl_remaining=max(0, int(reply[0])) / 1000,
        request_id=fields["request_id"],
        trace_id=fields["trace_id"],
        span_id=fields["span_id"],
    )


def renew_due(deadline: float, ttl: float, now: float) -> bool:
    """A lease is renewed once a third of its TTL has passed since the last renewal."""
    return deadline - now <= ttl * 2 / 3


def wait_seconds(hint_ms: int, remaining: float | None, ttl: float) -> float:
    """How long a waiter sleeps before retrying by itself (no wake-up arrived).

    It wakes when the holder's TTL runs out (``hint_ms`` + a little slack for clock
    granularity), before its queue registration lapses, at its own deadline, and after a
    third of its own ``ttl``: a hand-off during the pause counts the new lease from the
    pause's start, so the lease is born with at least two thirds of its TTL.
    """
    expiry = hint_ms / 1000 + 0.002 if hint_ms >= 0 else 0.1
    bound = min(expiry, QUEUE_REGISTRATION_S * 0.8, ttl / 3)
    return bound if remaining is None else max(0.0, min(bound, remaining))


RESTART_GRACE_S = 2
"""Seconds (whole: Redis reports its uptime in seconds) a freshly started Redis refuses to
grant a lock whose fence counter it does not have: a restart without persistence forgot the
locks, and their old holders need this long to notice (their pub/sub connection comes back
and they re-check every lease) before anyone else may be granted one (docs/locks.md)."""

MIN_RENEWED_TTL_S = 0.3
"""The shortest TTL the background renewer serves (it renews every ttl/3)."""

STEP_FLOOR_S = 0.05
"""Seconds every round trip of an acquire may take even when its time is (nearly) up.

A deadline-bound acquire gives each step (an attempt, the final cancel) the time left, but
at least this much, so ``timeout=0`` still gets one real try on a healthy link; it is the
slack an acquire may run past its timeout under a network fault (docs/locks.md).
"""


def step_budget(deadline: float | None, now: float) -> float | None:
    """Seconds one backend round trip of an acquire may take (None: the socket timeout)."""
    if deadline is None:
        return None
    return max(deadline - now, STEP_FLOOR_S)


def cancel_budget(deadline: float | None, now: float) -> float | None:
    """Seconds the final cancel of an acquire may take: what is left of the deadline plus
    the floor, shared with the last attempt, so the acquire ends by ``deadline`` +
    ``STEP_FLOOR_S`` (a cancel that gets no time is skipped: the entry lapses by itself)."""
    if deadline is None:
        return None
    return max(deadline + STEP_FLOOR_S - now, 0.001)
