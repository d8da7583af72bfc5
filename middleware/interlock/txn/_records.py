"""Decision-log records and recovery reports: plain data with a stable text encoding.

A :class:`Decision` is what the coordinator writes, durably, between the two phases: the
outcome and the branches that must learn it. Under presumed abort only ``commit`` decisions
are written by coordinators; ``abort`` decisions are tombstones written by recovery before
it rolls back an undecided branch, so that a late coordinator cannot decide commit after.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from interlock.errors import TransactionError

Outcome = Literal["commit", "abort"]
OUTCOMES: tuple[Outcome, ...] = ("commit", "abort")


@dataclass(frozen=True, slots=True)
class BranchRef:
    """One branch of a transaction, as recorded with its decision.

    Attributes:
        resource: name of the resource holding the branch (as registered for recovery).
        kind: ``postgres``, ``mysql``, ``redis`` or a custom participant's kind.
        bqual: the branch qualifier (unique within the transaction).
        ref: what the resource needs to tell the branch's fate later (PostgreSQL: the
            local transaction id; empty for others).
    """

    resource: str
    kind: str
    bqual: str
    ref: str = ""


@dataclass(frozen=True, slots=True)
class Decision:
    """The logged outcome of one global transaction.

    Attributes:
        xid: the global transaction id (gtrid).
        name: the transaction name (a metric label).
        outcome: ``commit`` or ``abort``.
        created: Unix time the decision was made.
        branches: the branches that must apply the outcome (empty for tombstones).
    """

    xid: str
    name: str
    outcome: Outcome
    created: float
    branches: tuple[BranchRef, ...] = ()


def encode_decision(decision: Decision) -> str:
    """Encode a decision as compact JSON (opaque to the Lua scripts and SQL)."""
    return json.dumps(
        {
            "v": 1,
            "xid": decision.xid,
            "name": decision.name,
            "outcome": decision.outcome,
            "created": decision.created,
            "branches": [[b.resource, b.kind, b.bqual, b.ref] for b in decision.branches],
        },
        separators=(",", ":"),
    )


def decode_decision(raw: str | bytes) -> Decision:
    """Decode :func:`encode_decision` output.

    Raises:
        TransactionError: the record is not a decision (a corrupted log).
    """
    try:
        data: dict[str, Any] = json.loads(raw)
        outcome = data["outcome"]
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}")
        branches = tuple(BranchRef(*map(str, item)) for item in data.get("branches", ()))
        return Decision(
            str(data["xid"]), str(data["name"]), outcome, float(data["created"]), branches
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise TransactionError(f"corrupted decision-log record {raw!r}: {exc}") from exc


@dataclass(frozen=True, slots=True)
class PreparedBranch:
    """A branch found prepared on a resource by recovery.

    Attributes:
        resource: the resource's name.
        gtrid: the global id.
        bqual: the branch qualifier.
        created: Unix time the global transaction started (from the xid).
        ref: resource-specific locator (the Redis participant's store name).
    """

    resource: str
    gtrid: str
    bqual: str
    created: float
    ref: str = ""


@dataclass(frozen=True, slots=True)
class Heuristic:
    """A branch whose fate contradicts the logged decision (resolved by hand).

    Attributes:
        xid: the global id.
        name: the transaction name.
        resource: where the branch lived.
        bqual: the branch qualifier.
        decision: the logged decision.
        actual: what happened to the branch (``committed`` or ``aborted``).
    """

    xid: str
    name: str
    resource: str
    bqual: str
    decision: Outcome
    actual: str


@dataclass(slots=True)
class RecoveryReport:
    """What one recovery pass found and did.

    Attributes:
        committed: branches committed (their decision was commit), as ``gtrid:bqual``.
        aborted: branches rolled back (decision abort, or none and older than ``safety``).
        pending: branches left alone: undecided but younger than ``safety``, or busy.
        heuristics: branches resolved by hand against the decision.
        forgotten: decisions removed from the log because every branch was resolved.
        errors: resources or branches that could not be examined, with the reason.
        unregistered: names of resources that decisions list but that are not registered
            for recovery (register them: ``add_postgres``/``add_mysql``/``add_resource``,
            or ``interlock txn --resource NAME=URL``).
        in_doubt: unresolved transactions by name after the pass.
        oldest_in_doubt: age in seconds of the oldest unresolved transaction (0 if none).
    """

    committed: list[str] = field(default_factory=list)
    aborted: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    heuristics: list[Heuristic] = field(default_factory=list)
    forgotten: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    unregistered: list[str] = field(default_factory=list)
    in_doubt: dict[str, int] = field(default_factory=dict)
    oldest_in_doubt: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly form (for the CLI and logs)."""
        return {
            "committed": list(self.committed),
            "aborted": list(self.aborted),
            "pending": list(self.pending),
            "heuristics": [
                {
                    "xid": h.xid,
                    "name": h.name,
                    "resource": h.resource,
                    "bqual": h.bqual,
                    "decision": h.decision,
                    "actual": h.actual,
                }
                for h in self.heuristics
            ],
            "forgotten": list(self.forgotten),
            "errors": list(self.errors),
            "unregistered": list(self.unregistered),
            "in_doubt": dict(self.in_doubt),
            "oldest_in_doubt": round(self.oldest_in_doubt, 3),
        }
