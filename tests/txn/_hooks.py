"""Run test code at a named step of a transaction, via the ``interlock.txn`` log events.

Every state change is a log event, so tests can act "right after the decision" without
any test seam in the library: a handler matches ``event.action`` and runs a callback once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class _Once(logging.Handler):
    def __init__(self, action: str, callback: Callable[[logging.LogRecord], None]) -> None:
        super().__init__(logging.DEBUG)
        self.action = action
        self.callback: Callable[[logging.LogRecord], None] | None = callback

    def emit(self, record: logging.LogRecord) -> None:
        callback = self.callback
        if callback is not None and getattr(record, "event.action", None) == self.action:
            self.callback = None
            callback(record)  # an exception propagates into the logging call


@contextmanager
def on_event(action: str, callback: Callable[[logging.LogRecord], None]) -> Iterator[None]:
    """Call ``callback(record)`` at the first ``action`` event logged inside the block."""
    logger = logging.getLogger("interlock.txn")
    handler = _Once(action, callback)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def xid_of(record: logging.LogRecord) -> str:
    return str(getattr(record, "interlock.txn.xid"))
