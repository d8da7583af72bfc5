"""Kept for imports of ``interlock.txn._errors``: the error lives in :mod:`interlock.errors`."""

from __future__ import annotations

from interlock.errors import TransactionInDoubt

__all__ = ["TransactionInDoubt"]
