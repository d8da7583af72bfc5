"""Errors specific to two-phase commit that are not (yet) in :mod:`interlock.errors`."""

from __future__ import annotations

from interlock.errors import TransactionError


class TransactionInDoubt(TransactionError):
    """The outcome is not known yet: the decision could not be recorded nor read back.

    The branches stay prepared; recovery resolves them from the decision log once it is
    reachable again (commit if the decision was recorded, abort otherwise).
    """

    def __init__(self, message: str, *, xid: str = "") -> None:
        super().__init__(message)
        self.xid = xid
