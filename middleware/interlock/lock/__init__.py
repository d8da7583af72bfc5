"""Distributed locks: the pure parts shared by the sync and async drivers.

The drivers are :class:`interlock.AsyncLock` / :class:`interlock.Lock` (generated from
``interlock/_async/lock/lock.py``); the atomic steps are the Lua scripts in
``interlock.lock._scripts``. What lives here has no I/O: key layout, holder info, the
decoding of script replies and the renewal schedule.
"""

from __future__ import annotations

from interlock.lock._core import (
    FENCE_IDLE_MS,
    FENCE_REFRESH_MS,
    LOCK_SUFFIXES,
    MIN_RENEWED_TTL_S,
    QUEUE_REGISTRATION_S,
    RESTART_GRACE_S,
    STEP_FLOOR_S,
    LockInfo,
    cancel_budget,
    holder_arg,
    info_from_reply,
    lock_keys,
    new_lock_token,
    new_token,
    parse_lock,
    renew_due,
    signal_key,
    step_budget,
    wait_seconds,
)

__all__ = [
    "FENCE_IDLE_MS",
    "FENCE_REFRESH_MS",
    "LOCK_SUFFIXES",
    "MIN_RENEWED_TTL_S",
    "QUEUE_REGISTRATION_S",
    "RESTART_GRACE_S",
    "STEP_FLOOR_S",
    "LockInfo",
    "cancel_budget",
    "holder_arg",
    "info_from_reply",
    "lock_keys",
    "new_lock_token",
    "new_token",
    "parse_lock",
    "renew_due",
    "signal_key",
    "step_budget",
    "wait_seconds",
]
