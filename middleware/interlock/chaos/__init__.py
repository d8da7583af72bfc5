"""Fault injection: latency and backend errors on chosen operations. Off unless configured.

A chaos spec is a comma-separated list of rules ``kind:target:probability[:seconds]``:

* ``latency:lock_acquire:0.1:0.05`` — delay 10 % of lock acquisitions by 50 ms;
* ``error:GET:0.01`` — fail 1 % of plain ``GET`` commands with ``BackendUnavailable``;
* ``error:*:0.5`` — fail half of all backend operations.

Targets are backend operations: Lua script names (``lock_acquire``, ``lock_release``,
``lock_extend``, the cache and transaction scripts) and plain command names (``GET``,
``SET``, ...), or ``*``. Pass the spec as ``Interlock(..., chaos=spec)`` or set
``INTERLOCK_CHAOS``; each injected fault counts in
``interlock_chaos_injected_total{kind,target}`` (the target label is the rule's target, so it
stays bounded). Use it in staging and demos to watch dashboards and alerts react.
"""

from __future__ import annotations

from interlock.chaos._plan import (
    KINDS,
    ChaosPlan,
    ChaosRule,
    parse_chaos,
)

__all__ = [
    "KINDS",
    "ChaosPlan",
    "ChaosRule",
    "parse_chaos",
]
