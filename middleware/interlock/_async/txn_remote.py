"""Remote participants over HTTP: another service running interlock joins a transaction.

Coordinator side: :class:`AsyncRemoteParticipant` (``tx.remote(url, secret=...)``) makes
the business call with the branch id and an HMAC signature; the remote middleware runs
the handler inside a PostgreSQL branch of its own database and prepares it before it
answers (the answer carries the vote). Phase two is ``POST …/branches/{xid}/commit`` or
``/abort``. :class:`AsyncRemoteResource` lets the coordinator's recovery list, finish and
check remote branches like local ones.

Participant side: :class:`AsyncBranchService` does the database work behind the endpoints
the middleware serves (sans-IO core in :mod:`interlock._http_participant`), and answers
``POST …/decisions/{gtrid}`` for a coordinator. :class:`AsyncRemoteRecovery` resolves a
participant's prepared branches against the coordinators' decision endpoints.
The pure protocol (headers, signatures) is :mod:`interlock.txn._remote`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping  # noqa: F401, RUF100 (sync twin)
from typing import TYPE_CHECKING, Any

import httpx

from interlock._async.txn_postgres import AsyncPostgresParticipant, AsyncPostgresResource
from interlock._synchronization import AsyncMutex
from interlock.errors import HeuristicOutcome, TransactionError
from interlock.txn._events import event
from interlock.txn._records import BranchRef, Decision, PreparedBranch, RecoveryReport
from interlock.txn._remote import (
    DEFAULT_PREFIX,
    HEADER_REF,
    HEADER_VOTE,
    Signer,
)
from interlock.txn._xid import namespace_tag, owned_by, parse_gtrid, split_branch

if TYPE_CHECKING:
    from interlock._async.txn_manager import AsyncTransactionManager
    from interlock._http_participant import Endpoint

logger = logging.getLogger("interlock.txn")
DEBUG, WARNING = logging.DEBUG, logging.WARNING
DEFAULT_TIMEOUT = 5.0


class _AsyncEndpoint:
    """Signed calls to one service's protocol endpoints."""

    def __init__(
        self,
        url: str,
        secret: Any,
        prefix: str,
        timeout: float,
        client: httpx.AsyncClient | None,
    ) -> None:
        self.url = url.rstrip("/")
        self.prefix = prefix
        self.signer = secret if isinstance(secret, Signer) else Signer(secret)
        self.timeout = timeout
        self._own = client is None
        self.client = client if client is not None else httpx.AsyncClient(timeout=timeout)

    async def send(
        self, method: str, path: str, *, branch: str = "", **kwargs: Any
    ) -> httpx.Response:
        request = self.client.build_request(
            method, self.url + path, timeout=kwargs.pop("timeout", self.timeout), **kwargs
        )
        url = request.url
        target = url.path + ("?" + url.query.decode("ascii") if url.query else "")
        request.headers.update(self.signer.sign(method, target, branch, request.content))
        return await self.client.send(request)

    async def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return await self.send(method, self.prefix + path, **kwargs)

    async def aclose(self) -> None:
        if self._own:
            await self.client.aclose()


class AsyncRemoteParticipant:
    """A branch in another service's database, reached over HTTP.

    Created by ``tx.remote(url, secret=...)``. Make the business call with
    :meth:`request`: the remote middleware runs it inside a branch and prepares the branch
    before answering. One call per branch (enlist another for another call).

    Args:
        url: the remote service's base URL (``http://bank:8000``).
        secret: the secret shared with the remote's ``RemoteParticipantConfig``.
        xid: the branch id (given by the transaction).
        resource: the name recovery knows the remote by (``add_resource``).
        prefix: the remote's participant endpoint prefix.
        timeout: seconds for each HTTP call.
        client: an ``httpx.AsyncClient`` to reuse (else one per branch, closed at the end).
    """

    kind = "remote"

    def __init__(
        self,
        url: str,
        *,
        secret: Any,
        xid: str,
        resource: str = "remote",
        prefix: str = DEFAULT_PREFIX,
        timeout: float = DEFAULT_TIMEOUT,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.xid = xid
        self.resource = resource
        self.ref = ""  # the remote's local transaction id, recorded with the decision
        self.vote: bool | None = None  # None: no call made or its answer was lost
        self._called = False
        self._endpoint = _AsyncEndpoint(url, secret, prefix, timeout, client)

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Make the business call inside the branch (``httpx`` keyword arguments).

        Returns:
            The remote's response; a 2xx carrying ``interlock-txn-vote: yes`` means the
            branch is prepared. Anything else makes the transaction abort at commit.
        """
        if self._called:
            raise TransactionError(
                f"branch {self.xid} already made its call; enlist another tx.remote() for "
                "another request"
            )
        self._called = True
        response = await self._endpoint.send(method, path, branch=self.xid, **kwargs)
        yes = response.is_success and response.headers.get(HEADER_VOTE) == "yes"
        self.vote = yes
        self.ref = response.headers.get(HEADER_REF, "") if yes else ""
        return response

    async def prepare(self, xid: str) -> bool:
        """The vote was given with the business call's answer (no extra round trip)."""
        if not self._called:
            return True  # no work on the remote: nothing to prepare
        if self.vote is None:
            raise TransactionError(f"the call of branch {xid} did not answer; outcome unknown")
        return self.vote

    async def commit(self, xid: str) -> None:
        if not self._called:
            return
        try:
            await self._finish(xid, "commit")
        finally:
            await self._endpoint.aclose()

    async def abort(self, xid: str) -> None:
        if not self._called:
            await self._endpoint.aclose()
            return
        try:
            await self._finish(xid, "abort")
        finally:
            await self._endpoint.aclose()

    async def _finish(self, xid: str, verb: str) -> None:
        response = await self._endpoint.call(
            "POST", f"/branches/{xid}/{verb}", json={"ref": self.ref}
        )
        if response.status_code == 409:
            state = _json(response).get("state", "unknown")
            raise HeuristicOutcome(
                f"remote branch {xid} on {self.resource} was {state} although the decision "
                f"is {verb}"
            )
        if response.status_code != 200:
            raise TransactionError(
                f"remote branch {xid} on {self.resource}: {verb} answered "
                f"{response.status_code}; recovery will retry"
            )


class AsyncRemoteResource:
    """Recovery's view of a remote service's branches (register with ``add_resource``).

    Args:
        name: the resource name the branches were enlisted with (``tx.remote(resource=)``).
        url, secret, prefix, timeout, client: as for :class:`AsyncRemoteParticipant`.
    """

    kind = "remote"

    def __init__(
        self,
        name: str,
        url: str,
        *,
        secret: Any,
        prefix: str = DEFAULT_PREFIX,
        timeout: float = DEFAULT_TIMEOUT,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.name = name
        self._endpoint = _AsyncEndpoint(url, secret, prefix, timeout, client)

    async def check(self) -> None:
        """Nothing: a remote that is down must not stop local transactions."""

    async def prepared(self, namespace: str) -> list[PreparedBranch]:
        response = await self._endpoint.call(
            "GET", "/branches", params={"namespace": namespace_tag(namespace)}
        )
        _expect(response, 200)
        found = []
        for item in _json(response).get("branches", []):
            parts = split_branch(str(item.get("xid", "")))
            if parts is not None and owned_by(parts[0], namespace):
                info = parse_gtrid(parts[0])
                created = info.created if info is not None else 0.0
                found.append(PreparedBranch(self.name, parts[0], parts[1], created))
        return found

    async def finish(self, branch: PreparedBranch, commit: bool) -> str:
        verb = "commit" if commit else "abort"
        xid = f"{branch.gtrid}:{branch.bqual}"
        response = await self._endpoint.call("POST", f"/branches/{xid}/{verb}", json={"ref": ""})
        if response.status_code == 503:
            return "busy"
        if response.status_code == 409:
            return "gone"  # resolved otherwise: the fate check reports the heuristic
        _expect(response, 200)
        return str(_json(response).get("result", "done"))

    async def fate(self, gtrid: str, ref: BranchRef) -> str:
        response = await self._endpoint.call(
            "GET", f"/branches/{gtrid}:{ref.bqual}", params={"ref": ref.ref}
        )
        _expect(response, 200)
        return str(_json(response).get("state", "unknown"))

    async def cleanup(self) -> None:
        """Nothing to clean."""

    async def aclose(self) -> None:
        await self._endpoint.aclose()


class AsyncBranchService:
    """The participant side's database work (used by the middleware's glue).

    Args:
        connect: the PostgreSQL database of branches (URL or connection factory), or
            ``None`` when the service only answers the decision endpoint.
        manager: the service's own transaction manager (its decision log answers
            ``decisions/{gtrid}`` for transactions this service coordinated).
        safety: seconds before an undecided transaction asked about is presumed aborted.
    """

    def __init__(self, connect: Any, manager: AsyncTransactionManager, safety: float) -> None:
        self._connect = connect
        self._manager = manager
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
        manager = self._manager
        info = parse_gtrid(gtrid)
        if info is None or not owned_by(gtrid, manager.namespace):
            return 404, {"xid": gtrid, "outcome": None, "detail": "not our transaction"}
        await manager.ready()  # the start-up check, once: creates a missing decision table
        decision = await manager.log.get(gtrid)
        now = time.time()
        if decision is None:
            if now - info.created < self._safety:
                return 200, {"xid": gtrid, "outcome": None, "state": "pending"}
            # Presumed abort, made binding: a late coordinator cannot commit after this.
            decision = await manager.log.decide(Decision(gtrid, "", "abort", now))
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
            ns: _AsyncEndpoint(url, secret, prefix, timeout, None)
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
                    _expect(response, 200)
                    outcome = _json(response).get("outcome")
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


def namespace_tag_of(gtrid: str) -> str:
    info = parse_gtrid(gtrid)
    return info.namespace_tag if info is not None else ""


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _expect(response: httpx.Response, status: int) -> None:
    if response.status_code != status:
        raise TransactionError(
            f"{response.request.method} {response.request.url.path} answered "
            f"{response.status_code}: {response.text[:200]}"
        )
