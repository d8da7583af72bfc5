"""The ECS JSON formatter: one JSON object per record, with ECS field names."""

from __future__ import annotations

import json
import logging
import time
import traceback
from collections.abc import Callable, Iterable
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from interlock.logs._record import ECS_FIELDS, STANDARD, add_context, add_extras
from interlock.logs._redact import Redactor
from interlock.logs._values import json_default, safe_text

ECS_VERSION = "8.11.0"

Processor = Callable[[dict[str, Any]], dict[str, Any]]

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
    fields passed with ``logger.info(..., extra={...})`` are written as they are when their
    name is dotted (use ECS names, ``labels.*`` or a namespace of your own; nested mappings
    become dotted keys); an undotted extra (``status_code``, as Django passes) goes to
    ``labels.<name>`` as a string when it is a string, number or boolean, and is dropped
    otherwise (``request`` objects); exceptions become ``error.type``, ``error.message``
    and ``error.stack_trace``.

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
        super().__init__(json_default=json_default, json_ensure_ascii=True)
        self.statics = statics
        self.processors: list[Processor] = [Redactor()] if processors is None else list(processors)
        self._json = json.JSONEncoder(default=json_default, ensure_ascii=True, allow_nan=False)
        self._second = -1
        self._stamp = ""

    def _timestamp(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._stamp}.{int((created - second) * 1000):03d}Z"

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
        if ready is not None and len(fields) == STANDARD + len(ready) + 1:
            data.update(ready)  # the middleware's request line: nothing else to look at
        else:
            add_context(data)
            add_extras(data, fields)
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
            data["interlock.log.stack_info"] = safe_text(record.stack_info)  # not ECS
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
