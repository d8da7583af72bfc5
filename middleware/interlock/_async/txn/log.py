"""Decision logs: where the coordinator records, durably, that a transaction commits.

The contract of every log: :meth:`decide` records a decision unless one is already
recorded and returns the one that won, atomically; once it returns, the decision survives
a crash of the coordinator and of the log's server. Recovery relies on the first-wins rule:
it writes an ``abort`` tombstone before rolling back an undecided branch, so a coordinator
that wakes up late finds the abort instead of committing half a transaction.

* :class:`AsyncRedisDecisionLog` keeps decisions on the coordination backend. Durable only
  with ``appendonly yes`` and ``appendfsync always`` (checked; ``durability="relaxed"``
  accepts a weaker setup with a warning). On ``mem://`` decisions live in process memory.
* ``AsyncPostgresDecisionLog`` (:mod:`interlock._async.txn.log_postgres`) keeps them
  in a PostgreSQL table, written in autocommit with ``synchronous_commit=on``; the
  server must run with ``fsync=on`` (checked).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from interlock._async.backend.base import AsyncBackend
from interlock.backends._script import Arg
from interlock.errors import (
    BackendError,
    BackendUnavailable,
    ConfigError,
    DurabilityError,
)
from interlock.txn._records import Decision, decode_decision, encode_decision
from interlock.txn._scripts import LOG_DECIDE, LOG_FORGET

logger = logging.getLogger("interlock.txn")
DURABILITY = ("strict", "relaxed")


def validate_durability(durability: str) -> str:
    if durability not in DURABILITY:
        raise ConfigError(
            f"durability={durability!r} is invalid; use 'strict' (default: refuse a decision "
            "log that may lose decisions) or 'relaxed' (warn and go on)"
        )
    return durability


@runtime_checkable
class AsyncDecisionRecords(Protocol):
    """The methods an object passed as ``decision_log=`` must have (see
    :class:`AsyncDecisionLog` for the whole contract)."""

    async def check(self) -> None: ...
    async def decide(self, decision: Decision, forget: Sequence[str] = ()) -> Decision: ...
    async def get(self, xid: str) -> Decision | None: ...
    async def forget(self, xids: Sequence[str]) -> None: ...
    async def list(self) -> list[Decision]: ...


class AsyncDecisionLog(Protocol):
    """Where commit decisions are recorded between the two phases."""

    durability: str

    async def check(self) -> None:
        """Verify the durability contract (and create storage); raise DurabilityError."""

    async def decide(self, decision: Decision, forget: Sequence[str] = ()) -> Decision:
        """Record ``decision`` unless one exists for its xid; return the recorded one.

        ``forget`` names completed transactions whose decisions go in the same write.
        """

    async def get(self, xid: str) -> Decision | None:
        """The recorded decision of ``xid``, if any."""

    async def forget(self, xids: Sequence[str]) -> None:
        """Remove the decisions of fully resolved transactions."""

    async def list(self) -> list[Decision]:
        """Every recorded decision of this namespace, oldest first."""

    async def aclose(self) -> None:
        """Release connections."""


@runtime_checkable
class LastResourceLog(Protocol):
    """A decision log a branch can commit the decision in (last-resource commit: the
    PostgreSQL log, docs/transactions.md)."""

    table: str
    """The decision table; a branch checks at enlist whether it is on the same database."""
    identity: tuple[str, str, str] | None
    """The table's server start time, database and oid, once checked (else ``None``)."""

    def last_resource_statements(
        self, decision: Decision, forget: Sequence[str] = ()
    ) -> list[tuple[Any, list[Any]]]:
        """The statements that record ``decision`` inside the branch's own transaction."""


@runtime_checkable
class AsyncMigratableLog(Protocol):
    """A decision log whose storage is created by ``interlock txn migrate``."""

    table: str

    async def migrate(self) -> None:
        """Create the decision table if it does not exist."""


class AsyncRedisDecisionLog:
    """Decisions in one hash on the coordination backend (see module docstring)."""

    def __init__(self, backend: AsyncBackend, namespace: str, durability: str = "strict"):
        self.backend = backend
        self.durability = validate_durability(durability)
        base = f"{namespace}:txn:{{log}}"
        self.keys = [f"{base}:d", f"{base}:t"]

    async def check(self) -> None:
        url = self.backend.url
        if url.startswith("mem:"):
            logger.warning(
                "transaction decisions are kept in process memory (%s): a crash between the "
                "two phases leaves prepared branches that recovery can only abort; use a "
                "Redis URL or decision_log='postgresql://...' in production",
                url,
                extra={"event.action": "txn-log-not-durable"},
            )
            return
        try:
            appendonly = _config_value(await self.backend.execute("CONFIG", "GET", "appendonly"))
            appendfsync = _config_value(await self.backend.execute("CONFIG", "GET", "appendfsync"))
        except BackendUnavailable:
            raise
        except BackendError as exc:
            self._weak(f"its configuration cannot be read ({exc})")
            return
        if appendonly != "yes" or appendfsync != "always":
            self._weak(f"it runs with appendonly={appendonly} appendfsync={appendfsync}")

    def _weak(self, why: str) -> None:
        refused = DurabilityError(
            f"the Redis decision log at {safe_url(self.backend.url)} cannot promise durable "
            f"decisions: {why}. A crash of Redis could lose a commit decision and leave a "
            "transaction half committed. Set `appendonly yes` and `appendfsync always` "
            "(redis.conf or CONFIG SET)"
        )
        if self.durability == "strict":
            raise refused
        logger.warning(str(refused), extra={"event.action": "txn-log-not-durable"})

    async def decide(self, decision: Decision, forget: Sequence[str] = ()) -> Decision:
        args: list[Arg] = [decision.xid, encode_decision(decision), int(decision.created * 1000)]
        args.extend(forget)
        reply = await self.backend.run(LOG_DECIDE, self.keys, args)
        return decision if reply[0] == 1 else decode_decision(reply[1])

    async def get(self, xid: str) -> Decision | None:
        raw = await self.backend.execute("HGET", self.keys[0], xid)
        return None if raw is None else decode_decision(raw)

    async def forget(self, xids: Sequence[str]) -> None:
        if xids:
            await self.backend.run(LOG_FORGET, self.keys, list(xids))

    async def list(self) -> list[Decision]:
        flat = await self.backend.execute("HGETALL", self.keys[0])
        # A dict from clients with response callbacks, else a flat field/value list.
        raws = list(flat.values()) if isinstance(flat, dict) else list(flat[1::2])
        return sorted((decode_decision(raw) for raw in raws), key=lambda d: d.created)

    async def aclose(self) -> None:
        """The backend belongs to the interlock instance; nothing to release."""


def _config_value(reply: Any) -> str:
    if isinstance(reply, dict):
        values = list(reply.values())
    elif isinstance(reply, list | tuple):
        values = list(reply[1::2])
    else:
        values = []
    if not values:
        return "unknown"
    value = values[0]
    return value.decode() if isinstance(value, bytes) else str(value)


def safe_url(url: str) -> str:
    return re.sub(r"//[^@/]*@", "//***@", url)


def create_decision_log(
    spec: object, backend: AsyncBackend, namespace: str, durability: str
) -> AsyncDecisionLog:
    """The decision log named by ``spec``.

    Args:
        spec: ``None`` or ``"backend"`` (the coordination backend), a ``postgresql://``
            or ``postgres://`` URL, or a ready decision-log object.
    """
    if spec is None or spec == "backend":
        return AsyncRedisDecisionLog(backend, namespace, durability)
    if isinstance(spec, str):
        if spec.startswith(("postgresql://", "postgres://")):
            from interlock._async.txn.log_postgres import AsyncPostgresDecisionLog

            return AsyncPostgresDecisionLog(spec, namespace, durability=durability)
        raise ConfigError(
            f"decision_log={safe_url(spec)!r} is not supported; pass None (the backend), "
            "a postgresql:// URL, or a decision-log object"
        )
    if isinstance(spec, AsyncDecisionRecords):
        return spec  # type: ignore[return-value]
    raise ConfigError(f"decision_log={spec!r} is not a decision log")


__all__ = [
    "AsyncDecisionLog",
    "AsyncDecisionRecords",
    "AsyncMigratableLog",
    "AsyncRedisDecisionLog",
    "create_decision_log",
    "validate_durability",
]
