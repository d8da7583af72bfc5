"""MySQL/MariaDB server details for XA: error numbers, XA ids, the version check."""

from __future__ import annotations

import logging
import re
from typing import Any

import pymysql

from interlock.errors import DurabilityError
from interlock.txn._xid import FORMAT_ID

logger = logging.getLogger("interlock.txn")

# Server error numbers (mysqld_error.h).
XAER_NOTA = 1397  # unknown XID
XAER_OUTSIDE = 1400  # some work is done outside the global transaction
NO_SUCH_TABLE = 1146
LOCK_WAIT_TIMEOUT = 1205
ACCESS_DENIED = (1044, 1045, 1142, 1227)
ROLLED_BACK = (1402, 1613, 1614, 1213, 1205)  # XA_RB*, deadlock, lock wait timeout
_SAFE = re.compile(r"^[A-Za-z0-9_.~:-]{1,64}$")


def driver_error(exc: BaseException) -> bool:
    """True for an error of the driver, PyMySQL or aiomysql (which raises PyMySQL's)."""
    return isinstance(exc, pymysql.err.MySQLError)


def server_errno(exc: BaseException) -> int | None:
    """The server's error number, or ``None`` for client-side/connection errors and for
    anything that is not a MySQL driver's error."""
    if driver_error(exc) and exc.args and isinstance(exc.args[0], int):
        number: int = exc.args[0]
        return number if number >= 1000 and number < 2000 else None
    return None


def xa_xid(gtrid: str, bqual: str) -> str:
    """The XA id literal ``'gtrid','bqual',formatID`` (ids are checked, never user text)."""
    if not _SAFE.match(gtrid) or not _SAFE.match(bqual):
        raise ValueError(f"invalid XA id {gtrid!r}, {bqual!r}")
    return f"'{gtrid}','{bqual}',{FORMAT_ID}"


def check_version(conn: Any, durability: str) -> None:
    """Refuse servers that roll prepared branches back when the session disconnects.

    MariaDB before 10.5.2 and MySQL before 5.7.7 do: a coordinator crash after prepare
    would then lose the branch while the others commit.
    """
    raw = str(getattr(conn, "server_version", "") or "")
    mariadb = "mariadb" in raw.lower()
    text = raw.split("-", 2)[1] if raw.startswith("5.5.5-") and mariadb else raw
    numbers = tuple(int(n) for n in re.findall(r"\d+", text.split("-")[0])[:3])
    if len(numbers) < 3:
        return
    minimum = (10, 5, 2) if mariadb else (5, 7, 7)
    if numbers < minimum:
        message = (
            f"{'MariaDB' if mariadb else 'MySQL'} {'.'.join(map(str, numbers))} rolls prepared "
            "XA branches back when the client disconnects, so a coordinator crash could "
            f"leave a transaction half committed; upgrade to {'.'.join(map(str, minimum))} "
            "or later (or pass durability='relaxed')"
        )
        if durability == "strict":
            raise DurabilityError(message)
        logger.warning(message)
