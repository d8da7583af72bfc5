"""Signed HTTP calls between interlock services (the remote-participant protocol).

:class:`AsyncRemoteClient` signs each request with the shared secret (the pure protocol,
headers and signatures, is :mod:`interlock.txn._remote`); :func:`json_body` and
:func:`expect` read its answers.
"""

from __future__ import annotations

from typing import Any

import httpx

from interlock.errors import TransactionError
from interlock.txn._remote import Signer

DEFAULT_TIMEOUT = 5.0


class AsyncRemoteClient:
    """Signed calls to one service's protocol endpoints.

    Args:
        url: the service's base URL.
        secret: the shared secret (or a ready :class:`~interlock.txn._remote.Signer`).
        prefix: the service's endpoint prefix (prepended by :meth:`call`).
        timeout: seconds for each call.
        client: an ``httpx.AsyncClient`` to reuse (else one of its own, closed by
            :meth:`aclose`).
    """

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


def json_body(response: httpx.Response) -> dict[str, Any]:
    """The response's JSON object; ``{}`` when it is not one."""
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def expect(response: httpx.Response, status: int) -> None:
    """Raise ``TransactionError`` unless the response has ``status``."""
    if response.status_code != status:
        raise TransactionError(
            f"{response.request.method} {response.request.url.path} answered "
            f"{response.status_code}: {response.text[:200]}"
        )
