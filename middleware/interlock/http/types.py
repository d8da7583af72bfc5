"""The ASGI and WSGI types, defined once for the drivers and the HTTP tools.

ASGI (the spec's names): a :data:`Scope`, the :data:`Receive` and :data:`Send` callables
and their :data:`Message` dicts, an :data:`ASGIApp`. WSGI (PEP 3333): the
:data:`WSGIEnviron`, :class:`StartResponse` with its optional ``exc_info``, a
:data:`WSGIApp`. :data:`Headers` are decoded ``(name, value)`` pairs, as WSGI has them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from types import TracebackType
from typing import Any, Protocol, TypeAlias

Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]
ASGIApp: TypeAlias = Callable[[Scope, Receive, Send], Awaitable[None]]

Headers: TypeAlias = list[tuple[str, str]]
WSGIEnviron: TypeAlias = dict[str, Any]
ExcInfo: TypeAlias = (
    tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]
)
Write: TypeAlias = Callable[[bytes], object]


class StartResponse(Protocol):
    """PEP 3333's ``start_response(status, headers, exc_info=None)``; returns ``write``."""

    def __call__(
        self, status: str, headers: Headers, exc_info: ExcInfo | None = ..., /
    ) -> Write: ...  # pragma: no cover


WSGIApp: TypeAlias = Callable[[WSGIEnviron, StartResponse], Iterable[bytes]]

__all__ = [
    "ASGIApp",
    "ExcInfo",
    "Headers",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "StartResponse",
    "WSGIApp",
    "WSGIEnviron",
    "Write",
]
