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

Under uvicorn or gunicorn, the servers' own loggers are configured by the server, not the
app: :func:`uvicorn_log_config` and :func:`gunicorn_log_config` make their lines JSON too.

``configure_logging(..., elasticsearch="http://localhost:9200")`` also ships every line
to the Elasticsearch data stream ``logs-interlock-default`` through
:class:`ElasticsearchSink` (bulk requests from a background thread; bounded queue;
retries with backoff; drops counted).
"""

from __future__ import annotations

from interlock.logs._configure import (
    DATA_STREAM,
    ECS_FIELDS,
    ECS_VERSION,
    REDACT_FIELDS,
    REDACT_QUERY,
    REDACTED,
    EcsJsonFormatter,
    ElasticsearchSink,
    LineSink,
    QueueingHandler,
    Redactor,
    configure_logging,
    gunicorn_log_config,
    json_handler,
    redact_query,
    safe_text,
    stream_handler,
    unconfigure_logging,
    uvicorn_log_config,
)

__all__ = [
    "DATA_STREAM",
    "ECS_FIELDS",
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
