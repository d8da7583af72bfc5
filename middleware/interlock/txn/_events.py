"""Structured log events of two-phase commit (logger ``interlock.txn``).

Every state change of a transaction is one log record whose ``extra`` carries ECS-style
dotted keys: ``event.action`` (``txn-started``, ``txn-branch-prepared``, ``txn-decided``,
``txn-branch-committed``, ``txn-committed``, ``txn-aborted``, ``txn-in-doubt``,
``txn-recovered``, ``txn-heuristic``, ...) and ``interlock.txn.*`` (name, xid, state,
resource, reason, outcome). Routine steps log at DEBUG, aborts at INFO, in-doubt and
recovery actions at WARNING, heuristic outcomes at ERROR.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger("interlock.txn")


def event(level: int, action: str, message: str, **fields: Any) -> None:
    """Log one transaction event; ``fields`` become ``interlock.txn.<field>`` keys."""
    if not logger.isEnabledFor(level):
        return
    extra: dict[str, Any] = {"event.action": action}
    for key, value in fields.items():
        if value is not None:
            extra[key if "." in key else f"interlock.txn.{key}"] = value
    logger.log(level, message, extra=extra)
