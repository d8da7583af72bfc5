"""Sans-IO core of the participant endpoints (remote participants over HTTP).

The ASGI and WSGI glue (``_http_asgi_participant``, ``_http_wsgi_participant``) read the
request, ask :class:`ParticipantCore` what it is, authenticate it here, run the database
work through the generated ``BranchService`` and write the response built here.

Endpoints under the configured prefix (see docs/transactions.md, *Remote participants*)::

    POST {prefix}/branches/{xid}/commit     COMMIT PREPARED (idempotent)
    POST {prefix}/branches/{xid}/abort      ROLLBACK PREPARED (idempotent)
    GET  {prefix}/branches/{xid}?ref=N      the branch's state
    GET  {prefix}/branches?namespace=NS     prepared branches of a coordinator namespace
    POST {prefix}/decisions/{gtrid}         the outcome, asked by a participant's recovery

Any other request carrying ``interlock-txn-branch`` is a *branch request*: the handler runs
inside a PostgreSQL branch that is prepared (not committed) when it answers 2xx.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from interlock import _context
from interlock.http._responses import Problem, problem
from interlock.txn._remote import (
    HEADER_BRANCH,
    HEADER_REF,
    HEADER_VOTE,
    SIGNED_HEADERS,
    RemoteParticipantConfig,
    target_of,
)
from interlock.txn._xid import parse_gtrid, split_branch

logger = logging.getLogger("interlock.txn")
WANTED = frozenset(SIGNED_HEADERS)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A matched participant endpoint.

    Attributes:
        action: ``commit``, ``abort``, ``state``, ``list`` or ``decision``.
        xid: the branch id (gtrid for ``decision``; empty for ``list``).
        route: the route template (metric label).
        params: query parameters (first value of each).
    """

    action: str
    xid: str
    route: str
    params: dict[str, str]


class ParticipantCore:
    """Routing, authentication and responses of the participant endpoints."""

    def __init__(self, config: RemoteParticipantConfig) -> None:
        if not isinstance(config, RemoteParticipantConfig):
            raise TypeError(
                f"participant={config!r} must be a RemoteParticipantConfig(secret=..., connect=...)"
            )
        self.config = config
        self.prefix = config.prefix
        self.signer = config.signer

    def match(self, method: str, path: str, query: str) -> Endpoint | Problem | None:
        """The endpoint ``path`` names, a 404/405 problem under the prefix, or ``None``."""
        prefix = self.prefix
        if path != prefix and not path.startswith(prefix + "/"):
            return None
        parts = path[len(prefix) :].strip("/").split("/")
        params = {k: v[0] for k, v in parse_qs(query).items()}
        base = prefix + "/"
        found: tuple[str, str, str, str] | None = None  # method, action, xid, route
        if parts == ["branches"]:
            found = ("GET", "list", "", base + "branches")
        elif len(parts) == 2 and parts[0] == "branches" and split_branch(parts[1]):
            found = ("GET", "state", parts[1], base + "branches/{xid}")
        elif (
            len(parts) == 3
            and parts[0] == "branches"
            and parts[2] in ("commit", "abort")
            and split_branch(parts[1])
        ):
            found = ("POST", parts[2], parts[1], base + "branches/{xid}/" + parts[2])
        elif len(parts) == 2 and parts[0] == "decisions" and parse_gtrid(parts[1]):
            found = ("POST", "decision", parts[1], base + "decisions/{xid}")
        if found is None:
            return problem(
                404,
                "txn-not-found",
                "Not found",
                f"no endpoint at {path}",
                request_id=_request_id(),
            )
        if method != found[0]:
            return problem(
                405,
                "txn-method",
                "Method not allowed",
                f"{found[0]} {found[3]}",
                request_id=_request_id(),
            )
        return Endpoint(found[1], found[2], found[3], params)

    def authenticate(
        self, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes
    ) -> Problem | None:
        """``None`` if the request is signed with our secret, else a 401 problem (logged)."""
        reason = self.signer.verify(method, target_of(path, query), headers, body)
        if reason is None:
            return None
        branch = headers.get(HEADER_BRANCH)
        _context.record("txn", remote="unauthorized", remote_reason=reason)
        logger.warning(
            "participant request rejected: %s",
            reason,
            extra={
                "event.action": "txn-remote-unauthorized",
                "event.reason": reason,
                **({"interlock.txn.xid": branch} if branch else {}),
            },
        )
        return problem(
            401,
            "txn-unauthorized",
            "Unauthorized",
            f"participant request rejected: {reason}",
            request_id=_request_id(),
        )

    def too_large(self) -> Problem:
        return problem(
            413,
            "txn-body-too-large",
            "Request body too large",
            f"branch requests are limited to {self.config.max_body} bytes",
            request_id=_request_id(),
        )

    def bad_branch(self, xid: str) -> Problem:
        return problem(
            400,
            "txn-bad-branch",
            "Bad branch id",
            f"{xid!r} is not an interlock branch id",
            request_id=_request_id(),
        )

    def refused(self, xid: str) -> Problem:
        """The handler answered 2xx but the database refused to prepare: a no vote."""
        result = problem(
            409,
            "txn-vote-no",
            "Branch refused to prepare",
            f"branch {xid} could not be prepared and was rolled back",
            request_id=_request_id(),
            xid=xid,
        )
        result.headers.append((HEADER_VOTE, "no"))
        return result


def vote_headers(yes: bool, ref: str) -> list[tuple[str, str]]:
    """Headers added to a branch request's response (the vote of phase one)."""
    return [(HEADER_VOTE, "yes"), (HEADER_REF, ref)] if yes else [(HEADER_VOTE, "no")]


def json_response(status: int, document: dict[str, Any]) -> Problem:
    """A JSON answer of an endpoint (same shape as a problem, for the glue)."""
    body = json.dumps(document, separators=(",", ":")).encode()
    headers = [
        ("content-type", "application/json"),
        ("content-length", str(len(body))),
        ("cache-control", "no-store"),
    ]
    return Problem(status, headers, body)


def _request_id() -> str:
    context = _context.current()
    return (context.request_id if context is not None else None) or ""
