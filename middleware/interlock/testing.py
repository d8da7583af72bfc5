"""Helpers to assert on interlock's metrics and log lines in your own tests.

Example::

    from interlock.testing import capture_logs, metric_value

    with capture_logs() as logs:
        client.get("/products/1")
    assert logs.requests()[0]["interlock.http.route"] == "/products/{product_id}"
    assert metric_value(il, "interlock_http_requests_total", route="/products/{product_id}") == 1
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from interlock.logs import EcsJsonFormatter

__all__ = [
    "LogCapture",
    "Response",
    "asgi_request",
    "capture_logs",
    "metric_value",
    "series",
    "wsgi_request",
]


class LogCapture(logging.Handler):
    """A handler keeping each record as its ECS JSON line.

    Attributes:
        lines: the formatted lines, in order.
    """

    def __init__(self, formatter: logging.Formatter | None = None) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(formatter or EcsJsonFormatter("test"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    @property
    def records(self) -> list[dict[str, Any]]:
        """Every line parsed as JSON (raises ``ValueError`` for a line that is not)."""
        out = []
        for line in self.lines:
            if "\n" in line:
                raise ValueError(f"log line spans several lines: {line!r}")
            out.append(json.loads(line))
        return out

    def requests(self) -> list[dict[str, Any]]:
        """The per-request lines of the middleware."""
        return [r for r in self.records if r.get("log.logger") == "interlock.http"]


@contextmanager
def capture_logs(logger: str = "", level: int = logging.DEBUG) -> Iterator[LogCapture]:
    """Capture the records of ``logger`` (default: all) as ECS JSON lines."""
    target = logging.getLogger(logger)
    capture = LogCapture()
    previous = target.level
    target.addHandler(capture)
    target.setLevel(level)
    try:
        yield capture
    finally:
        target.removeHandler(capture)
        target.setLevel(previous)


def _registry(source: Any) -> Any:
    registry = getattr(source, "registry", source)
    if registry is None:
        raise ValueError("this Interlock was built with registry=None; nothing to read")
    return registry


def metric_value(source: Any, name: str, **labels: str) -> float:
    """The value of one sample (``0.0`` when absent), summed over unnamed labels.

    Args:
        source: an ``Interlock``/``AsyncInterlock`` or a ``CollectorRegistry``.
        name: the sample name, e.g. ``interlock_http_requests_total``.
        **labels: label values the sample must have; other labels are summed over.
    """
    total = 0.0
    for metric in _registry(source).collect():
        for sample in metric.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def series(source: Any, name: str) -> list[dict[str, str]]:
    """The label sets of every sample called ``name``."""
    return [
        dict(sample.labels)
        for metric in _registry(source).collect()
        for sample in metric.samples
        if sample.name == name
    ]


class Response:
    """What :func:`asgi_request` got back."""

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.status = status
        self.raw_headers = headers
        self.headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in headers}
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"<Response {self.status} {len(self.body)} bytes>"


async def asgi_request(
    app: Any,
    method: str = "GET",
    path: str = "/",
    *,
    query: bytes = b"",
    headers: Sequence[tuple[bytes, bytes]] = (),
    body: bytes = b"",
    root_path: str = "",
    client: tuple[str, int] | None = ("127.0.0.1", 50000),
    scheme: str = "http",
) -> Response:
    """Call an ASGI app once, in-process, with raw ASGI messages."""
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method,
        "scheme": scheme,
        "path": root_path + path,
        "raw_path": (root_path + path).encode("utf-8", "surrogateescape"),
        "root_path": root_path,
        "query_string": query,
        "headers": list(headers),
        "client": client,
        "server": ("testserver", 80),
    }
    sent = False
    status, out_headers, chunks = 0, [], []
    complete = asyncio.Event()

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await complete.wait()  # like a server: the client leaves after the response
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status, out_headers
        if message["type"] == "http.response.start":
            status = message["status"]
            out_headers = list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                complete.set()

    await app(scope, receive, send)
    return Response(status, out_headers, b"".join(chunks))


def wsgi_request(
    app: Any,
    method: str = "GET",
    path: str = "/",
    *,
    query: str = "",
    headers: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
    script_name: str = "",
    scheme: str = "http",
) -> Response:
    """Call a WSGI app once, in-process, like a server: iterate the body, then close it.

    ``path`` is text; it is passed as WSGI's latin-1 decoding of its UTF-8 bytes.
    """
    import io

    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": script_name,
        "PATH_INFO": path.encode("utf-8", "surrogateescape").decode("latin-1"),
        "QUERY_STRING": query,
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scheme,
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": io.StringIO(),
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    for name, value in headers:
        key = name.upper().replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = "HTTP_" + key
        environ[key] = value
    started: list[Any] = []

    def start_response(status: str, response_headers: list[tuple[str, str]], *_: Any) -> Any:
        started[:] = [status, response_headers]
        return lambda data: None

    result = app(environ, start_response)
    try:
        chunks = [bytes(chunk) for chunk in result]
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    raw = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in started[1]]
    return Response(int(started[0][:3]), raw, b"".join(chunks))
