"""Remote participants over HTTP: another service running interlock joins a transaction.

Coordinator side: :class:`AsyncRemoteParticipant` (``tx.remote(url, secret=...)``) makes
the business call with the branch id and an HMAC signature; the remote middleware runs
the handler inside a PostgreSQL branch of its own database and prepares it before it
answers (the answer carries the vote). Phase two is ``POST …/branches/{xid}/commit`` or
``/abort``. :class:`AsyncRemoteResource` lets the coordinator's recovery list, finish and
check remote branches like local ones.

The participant side (:class:`AsyncBranchService`, :class:`AsyncRemoteRecovery`) is in
:mod:`interlock._async.txn.remote_service` and re-exported here; the signed calls are
:mod:`interlock._async.txn.participants.remote_client`. The pure protocol (headers, signatures) is
:mod:`interlock.txn._remote`.
"""

from __future__ import annotations

from typing import Any

import httpx

from interlock._async.txn.participants.remote_client import (
    DEFAULT_TIMEOUT,
    AsyncRemoteClient,
    expect,
    json_body,
)
from interlock._async.txn.remote_service import AsyncBranchService, AsyncRemoteRecovery
from interlock.errors import HeuristicOutcome, TransactionError
from interlock.txn._records import BranchRef, PreparedBranch
from interlock.txn._remote import DEFAULT_PREFIX, HEADER_REF, HEADER_VOTE
from interlock.txn._xid import namespace_tag, owned_by, parse_gtrid, split_branch

__all__ = [
    "DEFAULT_TIMEOUT",
    "AsyncBranchService",
    "AsyncRemoteParticipant",
    "AsyncRemoteRecovery",
    "AsyncRemoteResource",
]


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
        self._endpoint = AsyncRemoteClient(url, secret, prefix, timeout, client)

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
            state = json_body(response).get("state", "unknown")
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
        self._endpoint = AsyncRemoteClient(url, secret, prefix, timeout, client)

    async def check(self) -> None:
        """Nothing: a remote that is down must not stop local transactions."""

    async def prepared(self, namespace: str) -> list[PreparedBranch]:
        response = await self._endpoint.call(
            "GET", "/branches", params={"namespace": namespace_tag(namespace)}
        )
        expect(response, 200)
        found = []
        for item in json_body(response).get("branches", []):
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
        expect(response, 200)
        return str(json_body(response).get("result", "done"))

    async def fate(self, gtrid: str, ref: BranchRef) -> str:
        response = await self._endpoint.call(
            "GET", f"/branches/{gtrid}:{ref.bqual}", params={"ref": ref.ref}
        )
        expect(response, 200)
        return str(json_body(response).get("state", "unknown"))

    async def cleanup(self) -> None:
        """Nothing to clean."""

    async def aclose(self) -> None:
        await self._endpoint.aclose()
