"""interlock: observable distributed locks, 2PC transactions and caching for web apps.

Importing this package runs nothing: metrics, connections and threads are created when an
:class:`Interlock` or :class:`AsyncInterlock` is built.
"""

from interlock._async.cache.cache import AsyncCache
from interlock._async.client import AsyncInterlock
from interlock._async.lock.lock import AsyncLease, AsyncLock
from interlock._async.txn.transaction import AsyncParticipant, AsyncTransaction
from interlock._context import RequestContext, request_context
from interlock._sync.cache.cache import Cache
from interlock._sync.client import Interlock
from interlock._sync.lock.lock import Lease, Lock
from interlock._sync.txn.transaction import Participant, Transaction
from interlock.asgi import InterlockMiddleware
from interlock.cache import CacheKwargs
from interlock.errors import (
    BackendError,
    BackendUnavailable,
    CacheError,
    ConfigError,
    DurabilityError,
    FenceRejected,
    HeuristicOutcome,
    InterlockError,
    LockAlreadyHeld,
    LockError,
    LockLost,
    LockTimeout,
    ScriptError,
    SerializationError,
    TransactionAborted,
    TransactionBlocked,
    TransactionError,
    TransactionTimeout,
)
from interlock.http._rules import CacheRule, LockRule
from interlock.lock._core import LockInfo
from interlock.txn import RecoveryReport, TransactionInDoubt
from interlock.wsgi import InterlockWSGIMiddleware

__version__ = "0.1.0"

__all__ = [
    "AsyncCache",
    "AsyncInterlock",
    "AsyncLease",
    "AsyncLock",
    "AsyncParticipant",
    "AsyncTransaction",
    "BackendError",
    "BackendUnavailable",
    "Cache",
    "CacheError",
    "CacheKwargs",
    "CacheRule",
    "ConfigError",
    "DurabilityError",
    "FenceRejected",
    "HeuristicOutcome",
    "Interlock",
    "InterlockError",
    "InterlockMiddleware",
    "InterlockWSGIMiddleware",
    "Lease",
    "Lock",
    "LockAlreadyHeld",
    "LockError",
    "LockInfo",
    "LockLost",
    "LockRule",
    "LockTimeout",
    "Participant",
    "RecoveryReport",
    "RequestContext",
    "ScriptError",
    "SerializationError",
    "Transaction",
    "TransactionAborted",
    "TransactionBlocked",
    "TransactionError",
    "TransactionInDoubt",
    "TransactionTimeout",
    "request_context",
]
