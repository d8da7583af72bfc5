"""``configure_logging`` and its handlers (the package docstring of :mod:`interlock.logs` is
the guide)."""

from __future__ import annotations

import atexit
import logging
import sys
from collections.abc import Iterable
from typing import IO, TYPE_CHECKING, Any

from interlock.logs._elasticsearch import DATA_STREAM, ElasticsearchSink
from interlock.logs._formatter import ECS_VERSION, EcsJsonFormatter
from interlock.logs._formatter import Processor as Processor
from interlock.logs._record import ECS_FIELDS as ECS_FIELDS
from interlock.logs._redact import REDACT_FIELDS, REDACT_QUERY, REDACTED, Redactor, redact_query
from interlock.logs._servers import gunicorn_log_config, json_handler, uvicorn_log_config
from interlock.logs._values import safe_text
from interlock.logs._writer import LineSink, LineWriter, QueueingHandler

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
    "gunicorn_log_config",
    "json_handler",
    "redact_query",
    "safe_text",
    "stream_handler",
    "unconfigure_logging",
    "uvicorn_log_config",
]

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
    root = logging.getLogger()
    adopted = next(
        (h for h in root.handlers if isinstance(h, QueueingHandler) and h.server_config), None
    )
    adopted = adopted if stream is None else None
    handler: logging.Handler
    if adopted is not None:  # a server log config's handler: one line per record, not two
        handler = adopted
        handler.setFormatter(formatter)
    else:
        handler = stream_handler(formatter, stream, queue_size, interlock)
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
    unconfigure_logging()
    for added in handlers:
        if added is not adopted:
            root.addHandler(added)
            _installed.append(added)
    root.setLevel(level)
    return handler


def stream_handler(
    formatter: logging.Formatter,
    stream: IO[str] | None = None,
    queue_size: int = 10_000,
    interlock: Any = None,
) -> logging.Handler:
    """The stdout handler of :func:`configure_logging`: a background writer, or synchronous."""
    output = stream if stream is not None else sys.stdout
    handler: logging.Handler
    if queue_size > 0:
        counter = None
        if interlock is not None:
            counter = interlock.metrics.log_dropped.labels(sink="stream")

        def on_drop() -> None:
            if counter is not None:
                counter.inc()

        handler = QueueingHandler(LineWriter(output, queue_size, on_drop))
    else:
        handler = logging.StreamHandler(output)
    handler.setFormatter(formatter)
    return handler


def unconfigure_logging() -> None:
    """Remove the handler of :func:`configure_logging`, flushing pending lines."""
    root = logging.getLogger()
    while _installed:
        handler = _installed.pop()
        root.removeHandler(handler)
        handler.close()


atexit.register(unconfigure_logging)
