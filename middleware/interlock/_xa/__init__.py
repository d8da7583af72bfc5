"""MySQL/MariaDB XA, hand-written for its drivers (PyMySQL, aiomysql, asyncmy).

The pieces shared by the branch and recovery.

A branch (``interlock._async.txn.participants.mysql.AsyncMySQLParticipant`` and its generated sync
twin) runs on the app's connection through a session (``_session``: PyMySQL, aiomysql
or asyncmy); :class:`XaRecovery` lists and resolves our prepared branches over its own
blocking PyMySQL autocommit connection (on a thread in async code).

Inside each branch, just before ``XA END``, a marker row ``(gtrid, bqual)`` goes into
``interlock_xa_branches``: it exists afterwards exactly when the branch committed, which
tells recovery the fate of a branch that vanished (MySQL keeps no other record). Markers
are deleted after a retention period. Without the table (``interlock txn migrate`` or a
registered recovery resource creates it) branches still work; fates read ``unknown``.

This module re-exports them: server details in ``_server``, commit markers in
``_markers``, :class:`XaRecovery` in ``_recovery``.
"""

from __future__ import annotations

from interlock._xa._markers import (
    MARKER_DDL,
    MARKER_DELETE,
    MARKER_EXPIRED,
    MARKER_INSERT,
    MARKER_RETENTION,
    MARKER_SELECT,
    MARKER_TABLE,
    PURGE_EVERY,
    marker_fate,
)
from interlock._xa._recovery import XaRecovery
from interlock._xa._server import (
    ACCESS_DENIED,
    LOCK_WAIT_TIMEOUT,
    NO_SUCH_TABLE,
    ROLLED_BACK,
    XAER_NOTA,
    XAER_OUTSIDE,
    check_version,
    driver_error,
    server_errno,
    xa_xid,
)

__all__ = [
    "ACCESS_DENIED",
    "LOCK_WAIT_TIMEOUT",
    "MARKER_DDL",
    "MARKER_DELETE",
    "MARKER_EXPIRED",
    "MARKER_INSERT",
    "MARKER_RETENTION",
    "MARKER_SELECT",
    "MARKER_TABLE",
    "NO_SUCH_TABLE",
    "PURGE_EVERY",
    "ROLLED_BACK",
    "XAER_NOTA",
    "XAER_OUTSIDE",
    "XaRecovery",
    "check_version",
    "driver_error",
    "marker_fate",
    "server_errno",
    "xa_xid",
]
