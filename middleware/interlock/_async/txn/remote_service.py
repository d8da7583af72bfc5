"""Remote participants over HTTP, the participant side: a service whose database holds
branches of transactions that other services coordinate.

:class:`AsyncBranchService` does the database work behind the endpoints the middleware
serves (sans-IO core in :mod:`interlock.http._participant`): it runs a request in a
PostgreSQL branch and prepares it, and finishes or describes branches on a coordinator's
call; it also answers ``POST …/decisions/{gtrid}`` for a coordinator.
:class:`AsyncRemoteRecovery` resolves the participant's prepared branches against the
coordinators' decision endpoints. The coordinator side is
:mod:`interlock._async.txn.participants.remote`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from interlock._async.txn.log import AsyncDecisionLog
from interlock._async.txn.participants.postgres import (
    AsyncPostgresParticipant,
    AsyncPostgresResource,
)
from interlock._async.txn.participants.remote_client import (
    DEFAULT_TIMEOUT,
    AsyncRemoteClient,
    expect,
    json_body,
)
from interlock._concurrency import AsyncMutex
from interlock.txn._events import event
from interlock.txn._records import BranchRef, Decision, PreparedBranch, RecoveryReport
from interlock.txn._remote import DEFAULT_PREFIX
from interlock.txn._xid import namespace_tag_of, owned_by, parse_gtrid, split_branch

if TYPE_CHECKING:
    from interlock.http._participant import Endpoint

logger = logging.getLogger("interlock.txn")
DEBUG, WARNING = logging.DEBUG, logging.WARNING


class AsyncDecisionAuthority(Protocol):
    """What answering ``decisions/{gtrid}`` needs: the transactions this service
    coordinated (its ``AsyncTransactionManager`` is one)."""

    namespace: str
    log: AsyncDecisionLog

    async def ready(self) -> None:
        """The start-up check (creates a missing decision table), once."""


class AsyncBranchService:
    """The participant side's database work (used by the middleware's glue).

    Args:
        connect: the PostgreSQL database of branches (URL or connection factory), or
            ``None`` when the service only answers the decision endpoint.
        decisions: the service's own transaction manager, or anything with its
            ``namespace``, ``log`` and ``ready()`` (its decision log answers
            ``decisions/{gtrid}`` for transactions this service coordinated).
        safety: seconds before an undecided transaction asked about is presumed aborted.
    """

    def __init__(self, connect: Any, decisions: AsyncDecisionAuthority, safety: float) -> None:
        self._connect = connect
        self._decisions = decisions
        self._safety = safety
        self._resource = AsyncPostgresResource("remote", connect) if connect else None
        self._mutex = AsyncMutex()  # the resource's one session, one call at a time

    @property
    def participates(self) -> bool:
        return self._resource is not None

    async def begin(self, xid: str) -> AsyncPostgresParticipant:
        """Open a connection and start branch ``xid`` on it."""
        if isinstance(self._connect, str):
            import psycopg

            conn = await psycopg.AsyncConnection.connect(self._connect)
        else:
            conn = await self._connect()
        participant = AsyncPostgresParticipant(conn, "remote")
        try:
            await participant.begin(xid)
        except BaseException:
            await conn.close()
            raise
        return participant

    async def end(self, participant: AsyncPostgresParticipant, xid: str, ok: bool) -> bool:
        """Prepare the branch if ``ok`` (True: prepared), else roll it back; close it."""
        try:
            if ok and await participant.prepare(xid):
                event(
                    DEBUG,
                    "txn-branch-prepared",
                    f"remote branch {xid} prepared",
                    xid=xid,
                    resource="remote",
                    branch=xid,
                )
                return True
            await participant.abort(xid)
            return False
        finally:
            await participant.conn.close()

    async def handle(self, endpoint: Endpoint, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Serve one endpoint: ``(status, JSON document)``; 503 when the database or the
        decision log fails (the caller retries; recovery retries)."""
        try:
            return await self._handle(endpoint, body)
        except Exception as exc:
            logger.warning("participant endpoint %s failed: %s", endpoint.route, exc)
            return 503, {"xid": endpoint.xid, "result": "error", "detail": str(exc)}
        finally:
            if self._resource is not None:  # a session per call: nothing left open between
                async with self._mutex:
                    await self._resource.aclose()

    async def _handle(self, endpoint: Endpoint, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if endpoint.action == "decision":
            return await self._decision(endpoint.xid)
        resource = self._resource
        if resource is None:
            return 404, {"detail": "this service takes no part in remote transactions"}
        async with self._mutex:
            if endpoint.action == "list":
                namespace = endpoint.params.get("namespace", "")
                branches = await resource.prepared(namespace) if namespace else []
                items = [{"xid": f"{b.gtrid}:{b.bqual}", "created": b.created} for b in branches]
                return 200, {"branches": items}
            xid = endpoint.xid
            gtrid, bqual = split_branch(xid) or ("", "")
            ref = BranchRef(
                "remote", "postgres", bqual, str(body.get("ref") or endpoint.params.get("ref", ""))
            )
            if endpoint.action == "state":
                listed = await resource.prepared(namespace_tag_of(gtrid))
                if any(b.gtrid == gtrid and b.bqual == bqual for b in listed):
                    return 200, {"xid": xid, "state": "prepared"}
                return 200, {"xid": xid, "state": await resource.fate(gtrid, ref)}
            commit = endpoint.action == "commit"
            result = await resource.finish(PreparedBranch("remote", gtrid, bqual, 0.0), commit)
            if result == "busy":
                return 503, {"xid": xid, "result": "busy"}
            state = "committed" if commit else "aborted"
            if result == "gone":
                fate = await resource.fate(gtrid, ref)
                contradicts = fate != "committed" if commit else fate == "committed"
                if contradicts:
                    return 409, {"xid": xid, "result": "gone", "state": fate}
                state = fate if fate != "unknown" else state
        action = "txn-branch-committed" if commit else "txn-branch-aborted"
        event(
            DEBUG,
            action,
            f"remote branch {xid} {state}",
            xid=gtrid,
            branch=bqual,
            resource="remote",
            outcome=state,
        )
        return 200, {"xid": xid, "result": result, "state": state}

    async def _decision(self, gtrid: str) -> tuple[int, dict[str, Any]]:
        decisions = self._decisions
        info = parse_gtrid(gtrid)
        if info is None or not owned_by(gtrid, decisions.namespace):
            return 404, {"xid": gtrid, "outcome": None, "detail": "not our transaction"}
        await decisions.ready()  # the start-up check, once: creates a missing decision table
        decision = await decisions.log.get(gtrid)
        now = time.time()
        if decision is None:
            if now - info.created < self._safety:
                return 200, {"xid": gtrid, "outcome": None, "state": "pending"}
            # Presumed abort, made binding: a late coordinator cannot commit after this.
            decision = await decisions.log.decide(Decision(gtrid, "", "abort", now))
            event(
                WARNING,
                "txn-presumed-abort",
                f"no decision for {gtrid} asked by a participant: presumed aborted",
                xid=gtrid,
                outcome=decision.outcome,
            )
        return 200, {"xid": gtrid, "outcome": decision.outcome}

    async def aclose(self) -> None:
        if self._resource is not None:
            await self._resource.aclose()


class AsyncRemoteRecovery:
    """A participant's recovery of branches joined over HTTP: asks each coordinator.

    Args:
        connect: the participant's PostgreSQL database (URL or connection factory).
        coordinators: coordinator namespace → its base URL (``http://shop:8000``).
        secret: the secret shared with the coordinators.
        prefix: the coordinators' endpoint prefix.
    """

    def __init__(
        self,
        connect: Any,
        coordinators: Mapping[str, str],
        *,
        secret: Any,
        prefix: str = DEFAULT_PREFIX,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self._resource = AsyncPostgresResource("remote", connect)
        self._endpoints = {
            ns: AsyncRemoteClient(url, secret, prefix, timeout, None)
            for ns, url in coordinators.items()
        }

    async def recover(self) -> RecoveryReport:
        """Commit or roll back every prepared branch whose coordinator has decided."""
        report = RecoveryReport()
        for namespace, endpoint in self._endpoints.items():
            try:
                branches = await self._resource.prepared(namespace)
            except Exception as exc:
                report.errors.append(f"{namespace}: {exc}")
                continue
            for branch in branches:
                label = f"{branch.gtrid}:{branch.bqual}@remote"
                try:
                    response = await endpoint.call("POST", f"/decisions/{branch.gtrid}")
                    expect(response, 200)
                    outcome = json_body(response).get("outcome")
                    if outcome not in ("commit", "abort"):
                        report.pending.append(label)
                        continue
                    result = await self._resource.finish(branch, outcome == "commit")
                except Exception as exc:
                    report.errors.append(f"{label}: {exc}")
                    continue
                if result == "done":
                    (report.committed if outcome == "commit" else report.aborted).append(label)
                    event(
                        WARNING,
                        "txn-recovered",
                        f"recovery {outcome} {label}",
                        xid=branch.gtrid,
                        branch=branch.bqual,
                        resource="remote",
                        outcome=outcome,
                    )
        return report

    async def aclose(self) -> None:
        await self._resource.aclose()
        for endpoint in self._endpoints.values():
            await endpoint.aclose()
