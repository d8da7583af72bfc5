"""Two-phase commit: the pure parts (ids, states, decision records, reports).

The drivers are generated pairs in ``interlock._async.txn`` / ``interlock._sync.txn``; their
public types (``Transaction``, ``Participant``, ...) are exported by ``interlock``.
Start a transaction with ``Interlock.transaction(name)``; see docs/transactions.md.
Remote participants (docs/transactions.md): ``RemoteParticipantConfig`` and
``RemoteBranch`` are plain data; ``RemoteResource`` and ``RemoteRecovery`` (and their
``Async`` twins) need httpx (the ``remote`` extra) and are imported on first use, like
``AsyncPyMySQLConnection`` and ``AsyncPyMySQLCursor`` (PyMySQL for async code, as
``await tx.mysql(pymysql_conn)`` returns it; the ``mysql`` extra).
"""

from typing import Any

from interlock.errors import TransactionInDoubt
from interlock.txn._records import (
    BranchRef,
    Decision,
    Heuristic,
    PreparedBranch,
    RecoveryReport,
)
from interlock.txn._remote import RemoteBranch, RemoteParticipantConfig
from interlock.txn._state import State, Vote
from interlock.txn._xid import FORMAT_ID, XidInfo, parse_gtrid

__all__ = [
    "FORMAT_ID",
    "BranchRef",
    "Decision",
    "Heuristic",
    "PreparedBranch",
    "RecoveryReport",
    "RemoteBranch",
    "RemoteParticipantConfig",
    "State",
    "TransactionInDoubt",
    "Vote",
    "XidInfo",
    "parse_gtrid",
]

_REMOTE = {
    "AsyncPyMySQLConnection": "interlock._xa._session",
    "AsyncPyMySQLCursor": "interlock._xa._session",
    "AsyncRemoteParticipant": "interlock._async.txn.participants.remote",
    "AsyncRemoteRecovery": "interlock._async.txn.participants.remote",
    "AsyncRemoteResource": "interlock._async.txn.participants.remote",
    "RemoteParticipant": "interlock._sync.txn.participants.remote",
    "RemoteRecovery": "interlock._sync.txn.participants.remote",
    "RemoteResource": "interlock._sync.txn.participants.remote",
}


def __getattr__(name: str) -> Any:
    """The httpx-based remote-participant classes and the PyMySQL wrappers, imported on
    first use."""
    module = _REMOTE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
