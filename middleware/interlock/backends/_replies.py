"""Reading one reply with a deadline: where redis-py's sync and asyncio connections differ.

``_async/backend/direct.py`` calls :func:`async_read_reply`; its generated sync twin calls
:func:`read_reply`. Both raise redis-py's ``TimeoutError`` when the reply does not come in
time (and the connection must then be dropped). The asyncio ``read_response(timeout=...)``
would instead return ``None`` — indistinguishable from a nil reply, with the late reply
still pending — so the asyncio reader lowers the connection's own socket timeout for the
read, which raises.
"""

from __future__ import annotations

from typing import Any

__all__ = ["async_read_reply", "async_settle_timeout", "read_reply", "settle_timeout"]


async def async_read_reply(conn: Any, timeout: float | None) -> Any:
    if timeout is None:
        return await conn.read_response()
    saved = conn.socket_timeout
    conn.socket_timeout = timeout
    try:
        return await conn.read_response()
    finally:
        conn.socket_timeout = saved


def read_reply(conn: Any, timeout: float | None) -> Any:
    if timeout is None:  # (sync redis-py reads timeout=None as "no timeout")
        return conn.read_response()
    return conn.read_response(timeout=timeout)


async def async_settle_timeout(conn: Any, seconds: float | None) -> None:
    """Give a connection set up under a caller's deadline its normal socket timeout back."""
    conn.socket_timeout = seconds  # asyncio reads and writes look it up on each call


def settle_timeout(conn: Any, seconds: float | None) -> None:
    """The sync twin: the socket and hiredis' parser keep their own copy of the timeout."""
    conn.socket_timeout = seconds
    sock = getattr(conn, "_sock", None)
    if sock is not None:
        sock.settimeout(seconds)
    parser = getattr(conn, "_parser", None)
    if parser is not None and hasattr(parser, "_socket_timeout"):
        parser._socket_timeout = seconds
