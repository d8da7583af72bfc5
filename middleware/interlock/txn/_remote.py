"""Remote participants over HTTP: the pure parts (headers, HMAC signatures, replay guard,
configuration). See docs/transactions.md, *Remote participants*.

Every request of the protocol is signed with a shared secret::

    interlock-timestamp: <Unix seconds>
    interlock-nonce:     <16-64 characters of A-Za-z0-9_->
    interlock-signature: v1=<hex HMAC-SHA256 over the canonical request>

The canonical request is ``interlock-v1``, the method, the path with its query, the
timestamp, the nonce, the branch id (``interlock-txn-branch``, empty when absent) and the
SHA-256 of the body, joined by newlines. A request is accepted when the signature matches
one of the configured secrets (several allow rotation), the timestamp is within
``max_skew`` seconds of the receiver's clock and the nonce was not seen in that window.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from interlock.errors import ConfigError

DEFAULT_PREFIX = "/.well-known/interlock/txn"
HEADER_BRANCH = "interlock-txn-branch"
HEADER_TIMESTAMP = "interlock-timestamp"
HEADER_NONCE = "interlock-nonce"
HEADER_SIGNATURE = "interlock-signature"
HEADER_VOTE = "interlock-txn-vote"
HEADER_REF = "interlock-txn-ref"
SIGNED_HEADERS = (HEADER_BRANCH, HEADER_TIMESTAMP, HEADER_NONCE, HEADER_SIGNATURE)
SCOPE_KEY = "interlock.branch"  # scope / environ key of the request's RemoteBranch
MIN_SECRET = 16
_NONCE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_VERSION = "v1"


def _secrets(secret: str | bytes | Sequence[str | bytes]) -> tuple[bytes, ...]:
    values = [secret] if isinstance(secret, str | bytes) else list(secret)
    keys = tuple(v.encode() if isinstance(v, str) else bytes(v) for v in values)
    if not keys or any(len(k) < MIN_SECRET for k in keys):
        raise ConfigError(
            f"secret must be at least {MIN_SECRET} bytes (or a list of such secrets, the "
            "first signs); generate one with `python -c 'import secrets; "
            "print(secrets.token_urlsafe(32))'`"
        )
    return keys


def canonical(
    method: str, target: str, timestamp: str, nonce: str, branch: str, body: bytes
) -> bytes:
    """The signed text of a request (``target`` is the path with ``?query`` if any)."""
    digest = hashlib.sha256(body).hexdigest()
    return "\n".join(
        ["interlock-" + _VERSION, method.upper(), target, timestamp, nonce, branch, digest]
    ).encode()


def target_of(path: str, query: str) -> str:
    return f"{path}?{query}" if query else path


class Signer:
    """Signs and verifies protocol requests with a shared secret.

    Args:
        secret: the shared secret (≥ 16 bytes), or several; the first signs, any verifies.
        max_skew: seconds a timestamp may differ from this clock (also the nonce memory).
        clock: Unix time (injectable for tests).
    """

    def __init__(
        self,
        secret: str | bytes | Sequence[str | bytes],
        *,
        max_skew: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_skew <= 0:
            raise ConfigError(f"max_skew={max_skew!r} is invalid; pass seconds > 0")
        self._keys = _secrets(secret)
        self.max_skew = float(max_skew)
        self._clock = clock
        self._seen: dict[str, float] = {}
        self._mutex = threading.Lock()

    def sign(self, method: str, target: str, branch: str, body: bytes) -> dict[str, str]:
        """The headers that authenticate a request."""
        timestamp = str(int(self._clock()))
        nonce = secrets.token_urlsafe(18)
        text = canonical(method, target, timestamp, nonce, branch, body)
        mac = hmac.new(self._keys[0], text, hashlib.sha256).hexdigest()
        headers = {
            HEADER_TIMESTAMP: timestamp,
            HEADER_NONCE: nonce,
            HEADER_SIGNATURE: f"{_VERSION}={mac}",
        }
        if branch:
            headers[HEADER_BRANCH] = branch
        return headers

    def verify(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes
    ) -> str | None:
        """``None`` if the request is authentic and fresh, else why not (for logs)."""
        timestamp = headers.get(HEADER_TIMESTAMP, "")
        nonce = headers.get(HEADER_NONCE, "")
        given = headers.get(HEADER_SIGNATURE, "")
        if not given:
            return "missing signature"
        if not timestamp.isdigit() or not _NONCE.match(nonce):
            return "malformed timestamp or nonce"
        now = self._clock()
        if abs(now - int(timestamp)) > self.max_skew:
            return "timestamp outside the allowed clock skew"
        text = canonical(method, target, timestamp, nonce, headers.get(HEADER_BRANCH, ""), body)
        for key in self._keys:
            mac = f"{_VERSION}={hmac.new(key, text, hashlib.sha256).hexdigest()}"
            if hmac.compare_digest(mac, given):
                break
        else:
            return "bad signature"
        with self._mutex:
            for old in [n for n, until in self._seen.items() if until < now]:
                del self._seen[old]
            if nonce in self._seen:
                return "replayed nonce"
            self._seen[nonce] = int(timestamp) + self.max_skew
        return None


@dataclass(frozen=True, slots=True)
class RemoteBranch:
    """What a handler finds at ``scope["interlock.branch"]`` / ``environ["interlock.branch"]``
    when the request joins another service's transaction.

    Attributes:
        xid: the branch id (``<gtrid>:<bqual>``), also the PostgreSQL gid.
        conn: the psycopg connection inside the branch: do the work with it, don't commit.
    """

    xid: str
    conn: Any


@dataclass(frozen=True, slots=True)
class RemoteParticipantConfig:
    """Makes the middleware serve the participant endpoints (and the decision endpoint).

    Args:
        secret: the shared secret (≥ 16 bytes) or several (rotation: the first signs).
        connect: the service's PostgreSQL database for branches: a ``postgresql://`` URL or
            a function returning a new psycopg connection (async for ASGI). ``None`` serves
            only the decision endpoint (a coordinator that is not a participant).
        prefix: path prefix of the endpoints.
        max_skew: seconds a request's timestamp may be off (also the replay window).
        max_body: largest request body accepted on a branch request (bytes).
        safety: seconds after which the decision endpoint presumes an undecided
            transaction aborted (logging an abort tombstone), as recovery does.
    """

    secret: str | bytes | Sequence[str | bytes]
    connect: Any = None
    prefix: str = DEFAULT_PREFIX
    max_skew: float = 30.0
    max_body: int = 1 << 20
    safety: float = 60.0
    signer: Signer = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.prefix.startswith("/") or self.prefix.endswith("/"):
            raise ConfigError(
                f"prefix={self.prefix!r} is invalid; use an absolute path without a "
                f"trailing slash, e.g. {DEFAULT_PREFIX!r}"
            )
        if self.max_body <= 0 or self.safety < 0:
            raise ConfigError("max_body must be > 0 bytes and safety ≥ 0 seconds")
        object.__setattr__(self, "signer", Signer(self.secret, max_skew=self.max_skew))
