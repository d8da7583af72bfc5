"""The ``interlock`` command.

Subcommands:
    demo    run the example shop with its load generator and a live summary
    check   is the backend fit for locks, cache and transactions? (``interlock.cli._check``)
    top     live view of held locks and their waiters (``interlock.cli._top``)
    txn     transaction tools (``interlock.cli._txn``)
    log-config  a uvicorn or gunicorn log config writing JSON lines (``interlock.cli._logs``)
"""

from __future__ import annotations

from interlock.cli._main import (
    build_parser,
    main,
)

__all__ = [
    "build_parser",
    "main",
]
