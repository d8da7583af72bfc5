"""The remote-participant endpoints of both drivers: an inner app between the middleware
and the application, so that their requests get the middleware's metrics, log line and
request id like any other.

The protocol (routes, signatures, problems) is the sans-IO ``interlock.http._participant``;
the database work is ``AsyncBranchService``'s. The driver's per-request object is the
:class:`AsyncParticipantTarget`: it reads the request, writes a response, and runs a branch
request's handler with the body replayed, keeping its response to add the vote to it.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from interlock._async.client import AsyncInterlock
from interlock._async.http.tools import AsyncRequestTools
from interlock._async.txn.participants.remote import AsyncBranchService
from interlock.http._participant import Endpoint, ParticipantCore, json_response, vote_headers
from interlock.http._responses import Problem
from interlock.http.types import Headers
from interlock.txn._remote import HEADER_BRANCH, RemoteBranch, RemoteParticipantConfig
from interlock.txn._xid import split_branch


class AsyncParticipantTarget(Protocol):
    """One request as the participant endpoints see it (a driver's per-request object)."""

    @property
    def method(self) -> str: ...  # pragma: no cover

    @property
    def path(self) -> str: ...  # pragma: no cover

    @property
    def query(self) -> str: ...  # pragma: no cover

    @property
    def headers(self) -> dict[str, str]:
        """The signed headers (``interlock.http._participant.WANTED``), lower-case names."""

    @property
    def tools(self) -> AsyncRequestTools | None:
        """The middleware's tools of the request (``None``: used without it)."""

    async def pass_through(self) -> None:
        """Not a participant request: run the application as usual."""

    async def read_body(self, limit: int) -> bytes | None:
        """The request body, or ``None`` if it is longer than ``limit`` bytes."""

    async def respond(self, response: Problem) -> None:
        """Write ``response`` to the client."""

    async def run_branch(self, branch: RemoteBranch, body: bytes) -> int:
        """Run the application with ``branch`` in the request and ``body`` replayed; keep
        its response; its status (500 if it sent none)."""

    async def send_branch(self, extra: Headers) -> None:
        """Write the kept response, with the ``extra`` headers added."""


class AsyncParticipantEndpoints:
    """Serves the participant endpoints and runs branch requests inside their branch."""

    def __init__(self, interlock: AsyncInterlock, config: RemoteParticipantConfig) -> None:
        self.core = ParticipantCore(config)
        self.service = AsyncBranchService(config.connect, interlock.transactions, config.safety)

    async def handle(self, target: AsyncParticipantTarget) -> None:
        core = self.core
        endpoint = core.match(target.method, target.path, target.query)
        if endpoint is None and HEADER_BRANCH not in target.headers:
            await target.pass_through()
            return
        if isinstance(endpoint, Endpoint) and target.tools is not None:
            target.tools.route = endpoint.route
        body = await target.read_body(core.config.max_body)
        if body is None:
            await target.respond(core.too_large())
            return
        refusal = core.authenticate(target.method, target.path, target.query, target.headers, body)
        if refusal is not None:
            await target.respond(refusal)
        elif isinstance(endpoint, Problem):
            await target.respond(endpoint)
        elif endpoint is not None:
            status, answer = await self.service.handle(endpoint, _document(body))
            await target.respond(json_response(status, answer))
        else:
            await self._branch(target, target.headers[HEADER_BRANCH], body)

    async def _branch(self, target: AsyncParticipantTarget, xid: str, body: bytes) -> None:
        if split_branch(xid) is None or not self.service.participates:
            await target.respond(self.core.bad_branch(xid))
            return
        participant = await self.service.begin(xid)
        try:
            status = await target.run_branch(RemoteBranch(xid, participant.conn), body)
        except BaseException:
            await self.service.end(participant, xid, False)
            raise
        ok = 200 <= status < 300
        yes = await self.service.end(participant, xid, ok)
        if ok and not yes:
            await target.respond(self.core.refused(xid))
        else:
            await target.send_branch(vote_headers(yes, participant.ref))


def _document(body: bytes) -> dict[str, Any]:
    """The JSON object an endpoint was sent (``{}`` if none or not an object)."""
    try:
        document = json.loads(body) if body else {}
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}
