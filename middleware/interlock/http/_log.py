"""The per-request log line: its ECS fields, and the short way to interlock's own handlers."""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from interlock.http._wire import clean, utf8
from interlock.logs._formatter import EcsJsonFormatter
from interlock.logs._record import ECS_FIELDS
from interlock.logs._redact import redact_query
from interlock.logs._writer import QueueingHandler

if TYPE_CHECKING:
    from interlock.http._exchange import Exchange

_STACK_LIMIT = 16_384  # characters of error.stack_trace (the innermost frames are last)


def write_line(
    logger: logging.Logger, ex: Exchange, route: str, status: int, elapsed: float, level: int
) -> None:
    """Write the request's log line: directly to interlock's own handlers, else as a record."""
    fields = log_fields(ex, route, status, elapsed)
    message = f"{fields['http.request.method']} {fields['url.path']} {status}"
    sinks = direct_sinks(logger, level)
    if sinks is not None:
        write_direct(sinks, level, logger.name, message, fields)
        return
    record = logging.getLogRecordFactory()(
        logger.name, level, "interlock/http/_core.py", 0, message, (), None, None, None
    )
    attributes = record.__dict__
    attributes.update(fields)  # like extra=: any formatter sees the ECS fields
    attributes[ECS_FIELDS] = fields  # ours takes them in one step (already clean)
    logger.handle(record)


def log_fields(ex: Exchange, route: str, status: int, elapsed: float) -> dict[str, Any]:
    """The ECS fields of the per-request log line (docs/logging.md)."""
    fields: dict[str, Any] = {
        "event.kind": "event",
        "event.category": "web",
        "event.type": "error" if ex.error is not None else "access",
        "event.outcome": "failure" if status >= 500 or ex.error is not None else "success",
        "http.request.method": clean(ex.method, 32),
        "url.path": clean(ex.path),
        "interlock.http.route": clean(route, 256),  # not an ECS field (ECS has no route)
        "http.response.status_code": status,
        "event.duration": int(elapsed * 1e9),
        "http.request.id": ex.request_id,
        "trace.id": ex.trace_id,
        "span.id": ex.span_id,
    }
    if ex.query:
        fields["url.query"] = redact_query(clean(utf8(ex.query)))
    if ex.client_ip:
        fields["client.ip"] = clean(ex.client_ip, 64)
    agent = ex.headers.get("user-agent")
    if agent:
        fields["user_agent.original"] = clean(utf8(agent), 512)
    if ex.parent_id is not None:
        fields["interlock.http.parent_span_id"] = ex.parent_id
    if ex.disconnected:  # logged as 499; the status the response had begun with, if any
        fields["interlock.http.client_disconnected"] = True
        if ex.status is not None:
            fields["interlock.http.started_status"] = ex.status
    if ex.error is not None:
        fields["error.type"] = type(ex.error).__qualname__
        fields["error.message"] = clean(str(ex.error), 1024)
        if isinstance(ex.error, Exception) and ex.error.__traceback__ is not None:
            trace = "".join(traceback.format_exception(ex.error))
            if len(trace) > _STACK_LIMIT:
                trace = "…" + trace[-_STACK_LIMIT:]
            fields["error.stack_trace"] = clean(trace, _STACK_LIMIT + 1)
    for section, values in ex.context.events.items():
        _flatten(fields, f"interlock.{section}", values)
    return fields


def _flatten(out: dict[str, Any], prefix: str, values: Mapping[str, Any]) -> None:
    for key, value in values.items():
        if isinstance(value, Mapping):
            _flatten(out, f"{prefix}.{key}", value)
        elif value is not None:
            out[f"{prefix}.{key}"] = value


def direct_sinks(logger: logging.Logger, level: int) -> list[Any] | None:
    """The handlers a record of ``logger`` at ``level`` reaches, if all are interlock's own.

    The request line takes a shortcut around ``LogRecord`` when every handler it would
    reach is a handler of :func:`configure_logging` (background writer) or a plain
    ``StreamHandler`` with an :class:`EcsJsonFormatter` and nothing filters on the way:
    the same line then goes to the same streams, at a fraction of the cost. Anything else
    (filters, other handlers, no handler at all) returns ``None``: the standard path.
    """
    sinks: list[Any] = []
    current: logging.Logger | None = logger
    while current is not None:
        if current.filters or current.disabled:
            return None
        for handler in current.handlers:
            if level < handler.level:
                continue
            if (
                type(handler) not in (QueueingHandler, logging.StreamHandler)
                or handler.filters
                or not isinstance(handler.formatter, EcsJsonFormatter)
            ):
                return None
            sinks.append(handler)
        if not current.propagate:
            break
        current = current.parent
    return sinks or None


def write_direct(
    sinks: list[Any], level: int, logger: str, message: str, fields: dict[str, Any]
) -> None:
    """Write a ready request line to the sinks of :func:`direct_sinks`."""
    created = time.time()
    for handler in sinks:
        line = handler.formatter.format_fields(created, level, logger, message, fields)
        if type(handler) is QueueingHandler:
            handler.writer.put(line)
            continue
        with handler.lock:  # as StreamHandler.emit does
            try:
                handler.stream.write(line + handler.terminator)
                handler.flush()
            except Exception:  # a broken stream: report as logging would, go on
                logging.Handler.handleError(handler, logging.makeLogRecord({"msg": line}))
