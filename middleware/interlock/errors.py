"""The exception tree of interlock.

Every error interlock raises derives from :class:`InterlockError`::

    InterlockError
    ├── ConfigError (also ValueError)          bad option or URL, raised at construction
    ├── BackendError                           the coordination backend misbehaved
    │   ├── BackendUnavailable                 cannot reach Redis within the timeouts
    │   └── ScriptError                        a Lua script returned an unknown code
    ├── LockError
    │   ├── LockTimeout                        waited `timeout` seconds; carries the holder
    │   ├── LockAlreadyHeld                    non-reentrant lock re-acquired by its holder
    │   ├── LockLost                           the lease expired or was taken (also on release)
    │   └── FenceRejected                      a fenced write carried a stale fence
    ├── CacheError
    │   └── SerializationError                 a value cannot be encoded or decoded
    └── TransactionError
        ├── TransactionAborted                 the transaction was rolled back; has `reason`
        ├── TransactionTimeout (also Aborted)  a participant did not vote before the deadline
        ├── TransactionBlocked (also Aborted)  a statement's row lock wait hit the deadline
        ├── TransactionInDoubt                 the decision could not be recorded nor read back
        ├── HeuristicOutcome                   a branch was resolved against the decision
        └── DurabilityError                    the decision log cannot promise durability

Foreign errors (redis-py, psycopg, PyMySQL) are mapped in one place per driver and
chained with ``raise ... from``, so the original stays visible in tracebacks.
"""

from __future__ import annotations

from typing import Any


class InterlockError(Exception):
    """Base class of every error raised by interlock."""


class ConfigError(InterlockError, ValueError):
    """An option, URL or environment variable is invalid; the message names the fix."""


class BackendError(InterlockError):
    """The coordination backend failed."""


class BackendUnavailable(BackendError):
    """The backend cannot be reached within the configured timeouts."""


class ScriptError(BackendError):
    """A backend script returned a code interlock does not know."""


class LockError(InterlockError):
    """Base class of lock errors."""


class LockTimeout(LockError):
    """The lock could not be acquired within ``timeout`` seconds.

    Attributes:
        name: the lock name.
        key: the resource key.
        holder: holder info of the lease that blocked us (may be empty if it vanished).
    """

    def __init__(self, name: str, key: str, timeout: float, holder: dict[str, Any]) -> None:
        who = holder.get("host", "?"), holder.get("pid", "?")
        super().__init__(
            f"lock {name!r} key {key!r} not acquired within {timeout:g}s; "
            f"held by host={who[0]} pid={who[1]}"
        )
        self.name = name
        self.key = key
        self.timeout = timeout
        self.holder = holder


class LockAlreadyHeld(LockError):
    """The current task or thread already holds this lock and it is not reentrant."""


class LockLost(LockError):
    """The lease was lost: renewal failed or the lock expired while we held it.

    ``release()`` and ``extend()`` raise it too when the lease is no longer ours.
    """


class FenceRejected(LockError):
    """A fenced write was refused because a newer fence already wrote."""


class CacheError(InterlockError):
    """Base class of cache errors."""


class SerializationError(CacheError):
    """A value cannot be serialized or a stored payload cannot be decoded."""


class TransactionError(InterlockError):
    """Base class of two-phase-commit errors."""


class TransactionAborted(TransactionError):
    """The transaction was aborted; ``reason`` is vote_no, timeout, lock_timeout, error,
    durability or client."""

    def __init__(self, message: str, *, reason: str = "error", xid: str = "") -> None:
        super().__init__(message)
        self.reason = reason
        self.xid = xid


class TransactionTimeout(TransactionAborted):
    """A participant did not vote before the transaction deadline."""


class TransactionBlocked(TransactionAborted):
    """A statement of a branch waited for a row lock until the transaction's deadline.

    Each PostgreSQL and MySQL branch caps its lock wait to the time the transaction has
    left (``lock_timeout`` / ``innodb_lock_wait_timeout``), so a row held by another
    transaction fails the request fast instead of after the database's own wait. Most
    often the holder is a *prepared* branch left behind by a crashed coordinator or a lost
    decision log: it keeps its locks until it is committed or rolled back, which
    ``interlock txn recover`` (or the recovery worker) does. The transaction was rolled
    back (``reason`` ``lock_timeout``).

    Attributes:
        resource: the branch whose statement was blocked.
    """

    def __init__(self, message: str, *, resource: str, xid: str = "") -> None:
        super().__init__(message, reason="lock_timeout", xid=xid)
        self.resource = resource


class TransactionInDoubt(TransactionError):
    """The outcome is not known yet: the decision could not be recorded nor read back.

    The branches stay prepared; recovery resolves them from the decision log once it is
    reachable again (commit if the decision was recorded, abort otherwise).
    """

    def __init__(self, message: str, *, xid: str = "") -> None:
        super().__init__(message)
        self.xid = xid


class HeuristicOutcome(TransactionError):
    """A branch was committed or rolled back by hand against the logged decision."""


class DurabilityError(TransactionError):
    """The decision log cannot guarantee durable decisions (e.g. Redis without AOF).

    Attributes:
        cause: what is wrong and how to fix the server, without the way to accept the
            risk instead (the message adds ``durability='relaxed'``; the ``interlock txn``
            command says ``--durability relaxed``).
    """

    def __init__(self, cause: str, *, accept: str = "pass durability='relaxed'") -> None:
        super().__init__(f"{cause}, or {accept} to accept the risk")
        self.cause = cause


__all__ = [
    "BackendError",
    "BackendUnavailable",
    "CacheError",
    "ConfigError",
    "DurabilityError",
    "FenceRejected",
    "HeuristicOutcome",
    "InterlockError",
    "LockAlreadyHeld",
    "LockError",
    "LockLost",
    "LockTimeout",
    "ScriptError",
    "SerializationError",
    "TransactionAborted",
    "TransactionBlocked",
    "TransactionError",
    "TransactionInDoubt",
    "TransactionTimeout",
]
