"""Commit markers: the row ``(gtrid, bqual)`` an XA branch writes just before ``XA END``.

A marker exists afterwards exactly when its branch committed, which tells recovery the
fate of a branch that vanished (MySQL keeps no other record). Markers are deleted after a
retention period. Without the table (``interlock txn migrate`` or a registered recovery
resource creates it) branches still work; fates read ``unknown``.
"""

from __future__ import annotations

from typing import Any

MARKER_TABLE = "interlock_xa_branches"
MARKER_RETENTION = 7 * 86400.0  # seconds a commit marker is kept
MARKER_DDL = (
    "CREATE TABLE IF NOT EXISTS interlock_xa_branches ("
    " gtrid VARBINARY(64) NOT NULL,"
    " bqual VARBINARY(64) NOT NULL,"
    " created TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,"
    " PRIMARY KEY (gtrid, bqual),"
    " KEY created (created)"
    ") ENGINE=InnoDB"
)
MARKER_INSERT = "INSERT INTO interlock_xa_branches (gtrid, bqual) VALUES (%s, %s)"
MARKER_SELECT = "SELECT 1 FROM interlock_xa_branches WHERE gtrid = %s AND bqual = %s"
MARKER_EXPIRED = (
    "SELECT gtrid, bqual FROM interlock_xa_branches"
    " WHERE created < NOW() - INTERVAL %s SECOND LIMIT 5000"
)
MARKER_DELETE = "DELETE FROM interlock_xa_branches WHERE gtrid = %s AND bqual = %s"
PURGE_EVERY = 600.0  # seconds between purges of old commit markers


def marker_fate(conn: Any, gtrid: str, bqual: str, marked: bool = True) -> str:
    """``committed`` if the branch's marker exists, ``aborted`` if not, else ``unknown``."""
    if not marked:
        return "unknown"
    with conn.cursor() as cur:
        cur.execute(MARKER_SELECT, (gtrid, bqual))
        found = cur.fetchone() is not None
    if not conn.get_autocommit():
        conn.rollback()
    return "committed" if found else "aborted"
