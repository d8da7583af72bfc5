"""Two-phase commit: the pure parts (ids, states, decision records, reports).

The drivers are generated pairs in ``interlock._async.txn*`` / ``interlock._sync.txn*``;
their public types (``Transaction``, ``Participant``, ...) are exported by ``interlock``.
Start a transaction with ``Interlock.transaction(name)``; see docs/transactions.md.
"""

from interlock.txn._errors import TransactionInDoubt
from interlock.txn._records import (
    BranchRef,
    Decision,
    Heuristic,
    PreparedBranch,
    RecoveryReport,
)
from interlock.txn._state import State, Vote
from interlock.txn._xid import FORMAT_ID, XidInfo, parse_gtrid

__all__ = [
    "FORMAT_ID",
    "BranchRef",
    "Decision",
    "Heuristic",
    "PreparedBranch",
    "RecoveryReport",
    "State",
    "TransactionInDoubt",
    "Vote",
    "XidInfo",
    "parse_gtrid",
]
