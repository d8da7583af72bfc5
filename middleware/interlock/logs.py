"""JSON log lines with ECS field names (schema: docs/logging.md).

``configure_logging(service="shop")`` is the one call most apps need: every record of
every logger becomes one line of JSON on stdout, written by a background thread so a
slow consumer never blocks the event loop. :class:`EcsJsonFormatter` is a
python-json-logger formatter usable with any handler.

Each line is valid JSON whatever the record holds: newlines and quotes are escaped,
invalid UTF-8 and lone surrogates become U+FFFD, and values JSON cannot encode are
written as strings. Credentials never reach a line: fields named like
``Authorization``, ``Cookie``, ``Set-Cookie`` are replaced by ``[REDACTED]``, and so are
the values of configured query parameters in ``url.query`` / ``url.full``.

Records emitted while a request is served carry its ``http.request.id``, ``trace.id``
and ``span.id``, so application logs and interlock's request line correlate.

``configure_logging(..., elasticsearch="http://localhost:9200")`` also ships every line
to the Elasticsearch data stream ``logs-interlock-default`` through
:class:`ElasticsearchSink` (bulk requests from a background thread; bounded queue;
retries with backoff; drops counted).
"""

from __future__ import annotations

import atexit
import json
import logging
import re
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable
from itertools import islice
from typing import IO, TYPE_CHECKING, Any, Protocol

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonEncoder, JsonFormatter

from interlock import _context
from interlock._logs_elasticsearch import DATA_STREAM, ElasticsearchSink

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

__all__ = [
    "DATA_STREAM",
    "ECS_VERSION",
    "REDACTED",
    "REDACT_FIELDS",
    "REDACT_QUERY",
    "EcsJsonFormatter",
    "ElasticsearchSink",
    "LineSink",
    "QueueingHandler",
    "Redactor",
    "configure_logging",
    "redact_query",
    "safe_text",
    "unconfigure_logging",
]

ECS_VERSION = "8.11.0"
REDACTED = "[REDACTED]"
REDACT_FIELDS = ("authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key")
REDACT_QUERY = (
    "access_token", "api_key", "apikey", "client_secret", "code", "id_token", "key",
    "password", "refresh_token", "secret", "session", "sig", "signature", "token",
)  # fmt: skip
_REDACT_QUERY = frozenset(REDACT_QUERY)
_SURROGATE = re.compile("[\ud800-\udfff]")
_QUERY_FIELDS = ("url.query", "url.full", "url.original")
_RESERVED = frozenset((*RESERVED_ATTRS, "taskName", "message", "asctime", "color_message"))
_MAX_DEPTH = 8
_STANDARD = len(logging.LogRecord("", 0, "", 0, "", (), None).__dict__)

# A record attribute holding fields that are already flat, valid and JSON-ready (set by
# the middleware along with the same fields as attributes, for other formatters).
ECS_FIELDS = "_interlock_ecs"

Processor = Callable[[dict[str, Any]], dict[str, Any]]


def safe_text(text: str) -> str:
    """``text`` as valid Unicode: lone surrogates (from undecodable bytes) become U+FFFD."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)
    return text


def redact_query(query: str, names: Iterable[str] = _REDACT_QUERY) -> str:
    """``query`` with the values of parameters in ``names`` (case-insensitive) redacted."""
    if "=" not in query:
        return query
    wanted = names if isinstance(names, frozenset) else frozenset(n.lower() for n in names)
    head, sep, query_part = query.rpartition("?")
    parts = query_part.split("&")
    changed = False
    for i, part in enumerate(parts):
        name, eq, _ = part.partition("=")
        if eq and name.lower() in wanted:
            parts[i] = f"{name}={REDACTED}"
            changed = True
    if not changed:
        return query
    return head + sep + "&".join(parts)


class Redactor:
    """A processor: redacts credential fields and secret query parameters.

    Args:
        fields: field names (the last dotted segment, case-insensitive, ``_`` = ``-``)
            whose values are replaced, e.g. ``http.request.headers.authorization``.
        query: query parameters whose values are replaced in ``url.query``/``url.full``.
    """

    def __init__(
        self, fields: Iterable[str] = REDACT_FIELDS, query: Iterable[str] = REDACT_QUERY
    ) -> None:
        self.fields = frozenset(f.lower().replace("_", "-") for f in fields)
        self.query = frozenset(q.lower() for q in query)
        self._harmless: set[str] = set()  # keys seen and judged harmless (bounded)

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        for key in data.keys() - self._harmless:
            if key.rpartition(".")[2].lower().replace("_", "-") in self.fields:
                data[key] = REDACTED
            elif len(self._harmless) < 4096:
                self._harmless.add(key)
        if self.query:
            for key in _QUERY_FIELDS:
                value = data.get(key)
                if type(value) is str:
                    data[key] = redact_query(value, self.query)
        return data


def _sanitize(value: Any, depth: int = 0) -> Any:
    """``value`` with every string valid Unicode and no NaN/infinity (invalid in JSON)."""
    if isinstance(value, str):
        return safe_text(value)
    if isinstance(value, float):
        return value if value - value == 0 else str(value)
    if isinstance(value, dict | list | tuple | set | frozenset) and depth > _MAX_DEPTH:
        return "<nested too deep>"
    if isinstance(value, dict):
        return {safe_text(str(k)): _sanitize(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_sanitize(v, depth + 1) for v in value]
    return value


def _add(data: dict[str, Any], key: str, value: Any, depth: int = 0) -> None:
    """Add one extra field; nested mappings become dotted keys (``http.request.x``)."""
    kind = type(value)
    if kind is str:
        data[key] = value if value.isascii() else safe_text(value)
    elif kind is int or kind is bool or value is None:
        data[key] = value
    elif isinstance(value, dict) and depth < _MAX_DEPTH:
        for inner, item in value.items():
            _add(data, f"{key}.{safe_text(str(inner))}", item, depth + 1)
    else:
        data[key] = _sanitize(value, depth)


_encoder = JsonEncoder()


def _json_default(value: Any) -> Any:
    """Values JSON cannot encode: python-json-logger's conversions, then ``str``."""
    try:
        converted = _encoder.default(value)
    except Exception:  # a broken __str__/__repr__ must not lose the line
        return f"<unprintable {type(value).__name__}>"
    return _sanitize(converted)


_LEVELS = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warning",
    logging.ERROR: "error",
    logging.CRITICAL: "critical",
}


class EcsJsonFormatter(JsonFormatter):
    """One JSON object per record with ECS field names.

    Every line has ``@timestamp``, ``log.level``, ``message``, ``ecs.version``,
    ``log.logger`` and, when given, ``service.name`` / ``service.environment``; extra
    fields passed with ``logger.info(..., extra={...})`` are written as they are (use
    dotted ECS names; nested mappings become dotted keys); exceptions become
    ``error.type``, ``error.message`` and ``error.stack_trace``.

    Args:
        service: ``service.name``.
        environment: ``service.environment``.
        static_fields: more fields for every line.
        processors: callables ``dict -> dict`` applied in order before serialising
            (a :class:`Redactor` with the defaults when ``None``).
    """

    def __init__(
        self,
        service: str | None = None,
        *,
        environment: str | None = None,
        static_fields: dict[str, Any] | None = None,
        processors: Iterable[Processor] | None = None,
    ) -> None:
        statics: dict[str, Any] = {"ecs.version": ECS_VERSION}
        if service:
            statics["service.name"] = service
        if environment:
            statics["service.environment"] = environment
        statics.update(static_fields or {})
        super().__init__(json_default=_json_default, json_ensure_ascii=True)
        self.statics = statics
        self.processors: list[Processor] = [Redactor()] if processors is None else list(processors)
        self._json = json.JSONEncoder(default=_json_default, ensure_ascii=True, allow_nan=False)
        self._second = -1
        self._stamp = ""

    def _timestamp(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._stamp}.{int((created - second) * 1000):03d}Z"

    @staticmethod
    def _add_context(data: dict[str, Any]) -> None:
        ctx = _context.current()
        if ctx is not None:
            if ctx.request_id:
                data["http.request.id"] = ctx.request_id
            if ctx.trace_id:
                data["trace.id"] = ctx.trace_id
            if ctx.span_id:
                data["span.id"] = ctx.span_id

    @staticmethod
    def _add_extras(data: dict[str, Any], fields: dict[str, Any]) -> None:
        if len(fields) <= _STANDARD:
            return
        extras = fields.keys() - _RESERVED
        added = 0
        for key, value in islice(fields.items(), _STANDARD, None):  # extras come last
            if key in extras:
                added += 1
                if key[:1] != "_":
                    _add(data, key, value)
        if added < len(extras):  # a record factory put some before the standard ones
            for key in extras:
                if key[:1] != "_" and key not in data:
                    _add(data, key, fields[key])

    def jsonify_log_record(self, log_data: dict[str, Any]) -> str:
        return self._json.encode(log_data)

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        data: dict[str, Any] = {
            "@timestamp": self._timestamp(record.created),
            "log.level": _LEVELS.get(record.levelno) or record.levelname.lower(),
            "message": message if message.isascii() else safe_text(message),
            "log.logger": record.name,
            **self.statics,
        }
        fields = record.__dict__
        ready = fields.get(ECS_FIELDS)
        if ready is not None and len(fields) == _STANDARD + len(ready) + 1:
            data.update(ready)  # the middleware's request line: nothing else to look at
        else:
            self._add_context(data)
            self._add_extras(data, fields)
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            data["error.type"] = type(exc).__qualname__
            data["error.message"] = safe_text(str(exc))
            data["error.stack_trace"] = safe_text(
                "".join(traceback.format_exception(*record.exc_info))
            )
        elif record.exc_text:
            data["error.stack_trace"] = safe_text(record.exc_text)
        if record.stack_info:
            data["log.origin.stack_trace"] = safe_text(record.stack_info)
        return self._finish(data)

    def format_fields(
        self, created: float, level: int, logger: str, message: str, fields: dict[str, Any]
    ) -> str:
        """The line of a record made only of ready ECS ``fields`` (the request line)."""
        data: dict[str, Any] = {
            "@timestamp": self._timestamp(created),
            "log.level": _LEVELS[level],
            "message": message if message.isascii() else safe_text(message),
            "log.logger": logger,
            **self.statics,
            **fields,
        }
        return self._finish(data)

    def _finish(self, data: dict[str, Any]) -> str:
        for processor in self.processors:
            data = processor(data)
        try:
            return self._json.encode(data)
        except (TypeError, ValueError, RecursionError):  # keep the line anyway
            return self._json.encode(
                {k: data[k] for k in ("@timestamp", "log.level", "message", "log.logger")}
                | {"error.message": "log record not serialisable", **self.statics}
            )


class _LineWriter:
    """A daemon thread writing formatted lines in batches, so callers never block on I/O.

    Callers append to a deque (no lock, no thread wake-up); the thread writes what has
    gathered every ``interval`` seconds, or sooner once ``batch`` lines wait. When
    ``size`` lines wait, further lines are dropped and counted.
    """

    def __init__(
        self,
        stream: IO[str],
        size: int,
        on_drop: Callable[[], None],
        interval: float = 0.05,
        batch: int = 256,
    ) -> None:
        self.stream = stream
        self.size = size
        self.on_drop = on_drop
        self.interval = interval
        self.batch = batch
        self.dropped = 0
        self._lines: deque[str] = deque()
        self._wake = threading.Event()
        self._stopping = False
        self.thread = threading.Thread(target=self._run, name="interlock-log-writer", daemon=True)
        self.thread.start()

    def put(self, line: str) -> None:
        lines = self._lines
        if len(lines) >= self.size:
            self.dropped += 1
            self.on_drop()
            return
        lines.append(line)
        if len(lines) == self.batch:
            self._wake.set()

    def _run(self) -> None:
        lines, wake = self._lines, self._wake
        while True:
            wake.wait(self.interval)
            wake.clear()
            stopping = self._stopping
            while lines:
                chunk: list[str] = []
                while lines and len(chunk) < 4096:
                    chunk.append(lines.popleft())
                try:
                    self.stream.write("\n".join(chunk) + "\n")
                    self.stream.flush()
                except Exception:  # a closed or broken stream: count, keep draining
                    self.dropped += len(chunk)
            if stopping:
                return

    def stop(self) -> None:
        """Write what is pending and end the thread."""
        self._stopping = True
        self._wake.set()
        self.thread.join(timeout=5.0)


class LineSink(Protocol):
    """Where :class:`QueueingHandler` puts formatted lines: ``put`` must never block."""

    dropped: int

    def put(self, line: str) -> None: ...

    def stop(self) -> None: ...


class QueueingHandler(logging.Handler):
    """Formats in the caller's thread (request context intact), writes on another.

    Args:
        writer: the sink taking each line: the stream writer of :func:`configure_logging`
            or an :class:`ElasticsearchSink`.
    """

    def __init__(self, writer: LineSink) -> None:
        super().__init__()
        self.writer = writer

    @property
    def dropped(self) -> int:
        return self.writer.dropped

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self.writer.put(line)

    def close(self) -> None:
        self.writer.stop()
        super().close()


_installed: list[logging.Handler] = []


def configure_logging(
    service: str | None = None,
    *,
    level: int | str = logging.INFO,
    stream: IO[str] | None = None,
    environment: str | None = None,
    redact_fields: Iterable[str] = REDACT_FIELDS,
    redact_query: Iterable[str] = REDACT_QUERY,
    interlock: Any = None,
    queue_size: int = 10_000,
    elasticsearch: ElasticsearchSink | Elasticsearch | str | None = None,
) -> logging.Handler:
    """Write every log record as one ECS JSON line to ``stream`` (stdout by default).

    Calling it again replaces the handlers it installed before; other handlers stay.

    Args:
        service: ``service.name`` of every line.
        level: root logger level.
        stream: where lines go (default ``sys.stdout``).
        environment: ``service.environment``.
        redact_fields: field names whose values are never written.
        redact_query: query parameters whose values are never written.
        interlock: an ``Interlock``/``AsyncInterlock`` whose
            ``interlock_log_records_dropped_total{sink="stream"}`` counts dropped lines.
        queue_size: lines buffered for the writer thread; when full, lines are dropped
            and counted rather than blocking. ``0`` writes synchronously.
        elasticsearch: also index every line into the data stream
            ``logs-interlock-default``: a node URL, an ``elasticsearch.Elasticsearch``
            client, or an :class:`ElasticsearchSink` for other options. Drops are
            counted in ``interlock_log_records_dropped_total{sink="elasticsearch"}``.
            The client's own lines (logger ``elastic_transport``: one per request, one
            per failed attempt) are turned down to ERROR unless that logger has a level
            already; the sink itself logs one warning when shipping starts failing.

    Returns:
        The handler writing to ``stream``, added to the root logger.
    """
    formatter = EcsJsonFormatter(
        service,
        environment=environment,
        processors=[Redactor(redact_fields, redact_query)],
    )
    output = stream if stream is not None else sys.stdout
    handler: logging.Handler
    if queue_size > 0:
        counter = None
        if interlock is not None:
            counter = interlock.metrics.log_dropped.labels(sink="stream")

        def on_drop() -> None:
            if counter is not None:
                counter.inc()

        handler = QueueingHandler(_LineWriter(output, queue_size, on_drop))
    else:
        handler = logging.StreamHandler(output)
    handler.setFormatter(formatter)
    handlers = [handler]
    if elasticsearch is not None:
        sink = elasticsearch
        if not isinstance(sink, ElasticsearchSink):
            sink = ElasticsearchSink(sink, interlock=interlock)
        shipper = QueueingHandler(sink)
        shipper.setFormatter(formatter)
        handlers.append(shipper)
        transport = logging.getLogger("elastic_transport")
        if transport.level == logging.NOTSET:
            transport.setLevel(logging.ERROR)
    root = logging.getLogger()
    unconfigure_logging()
    for added in handlers:
        root.addHandler(added)
        _installed.append(added)
    root.setLevel(level)
    return handler


def unconfigure_logging() -> None:
    """Remove the handler of :func:`configure_logging`, flushing pending lines."""
    root = logging.getLogger()
    while _installed:
        handler = _installed.pop()
        root.removeHandler(handler)
        handler.close()


atexit.register(unconfigure_logging)
