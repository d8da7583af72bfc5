"""A single ``redis-server`` and a dependency-free client for health checks."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping, Sequence
from typing import Any

from ._process import STARTUP_TIMEOUT, ServiceError, ServiceUnavailable, _find_binary, _Process


def _resp_encode(args: Sequence[str | bytes | int]) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _resp_read(f: Any) -> Any:
    line = f.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError("connection closed")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise ServiceError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        return None if size < 0 else f.read(size + 2)[:-2].decode()
    if kind == b"*":
        size = int(rest)
        return None if size < 0 else [_resp_read(f) for _ in range(size)]
    raise ConnectionError(f"unexpected reply {line!r}")


def redis_command(
    port: int, *args: str | bytes | int, timeout: float = 5.0, password: str | None = None
) -> Any:
    """Send one command to the Redis on 127.0.0.1:``port`` and return the decoded reply.

    A dependency-free client for health checks; error replies raise :class:`ServiceError`.
    With ``password``, ``AUTH password`` goes first (a ``requirepass`` server or sentinel).
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        auth = _resp_encode(("AUTH", password)) if password is not None else b""
        sock.sendall(auth + _resp_encode(args))
        with sock.makefile("rb") as f:
            if auth:
                _resp_read(f)
            return _resp_read(f)


class RedisServer(_Process):
    """A ``redis-server`` on 127.0.0.1 keeping nothing on disk unless ``config`` says so.

    Args:
        port: fixed port, or None for a free one (kept across restarts).
        config: extra or overriding directives, e.g. ``{"appendonly": "yes",
            "appendfsync": "always"}``.
        binary: path of ``redis-server``; found on PATH by default.
        password: ``requirepass``; :meth:`command` and the readiness probe authenticate.
    """

    name = "redis-server"

    def __init__(
        self,
        port: int | None = None,
        *,
        config: Mapping[str, str] | None = None,
        binary: str | None = None,
        startup_timeout: float = STARTUP_TIMEOUT,
        password: str | None = None,
    ) -> None:
        self.binary = binary or _find_binary(["redis-server"], "redis-server")
        if not os.access(self.binary, os.X_OK):
            raise ServiceUnavailable(
                f"{self.binary} not found: install it with `apt-get install redis-server`"
            )
        super().__init__(port, startup_timeout, "redis")
        self.config: dict[str, str] = {
            "bind": "127.0.0.1",
            "save": "",
            "appendonly": "no",
            "protected-mode": "no",
            **({"requirepass": password} if password is not None else {}),
            **(config or {}),
        }
        self.password = password

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _command(self) -> list[str]:
        cmd = [self.binary, "--port", str(self.port), "--dir", str(self.dir)]
        for key, value in self.config.items():
            cmd += [f"--{key}", *value.split(" ")] if value else [f"--{key}", ""]
        return cmd

    def _ready(self) -> bool:
        try:
            return bool(self.command("PING", timeout=1.0) == "PONG")
        except (OSError, ConnectionError, ServiceError):  # refused, or -LOADING
            return False

    def command(self, *args: str | bytes | int, timeout: float = 5.0) -> Any:
        """Run one Redis command on this server (see :func:`redis_command`)."""
        return redis_command(self.port, *args, timeout=timeout, password=self.password)

    def flushall(self) -> None:
        self.command("FLUSHALL")
