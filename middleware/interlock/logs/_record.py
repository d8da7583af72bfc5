"""What a ``LogRecord`` adds to its line besides the base fields.

Records emitted while a request is served get that request's ids from
:mod:`interlock._context`; ``extra`` fields are the attributes a record has beyond the
standard ones. The middleware's request line skips both: it carries its fields ready in
:data:`ECS_FIELDS`.
"""

from __future__ import annotations

import logging
from itertools import islice
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS

from interlock import _context, _tracing
from interlock.logs._values import add_field

# A record attribute holding fields that are already flat, valid and JSON-ready (set by
# the middleware along with the same fields as attributes, for other formatters).
ECS_FIELDS = "_interlock_ecs"

# The attributes of a record that are not extra fields, and how many a plain one has.
RESERVED = frozenset((*RESERVED_ATTRS, "taskName", "message", "asctime", "color_message"))
STANDARD = len(logging.LogRecord("", 0, "", 0, "", (), None).__dict__)


def add_context(data: dict[str, Any]) -> None:
    """Add the ``http.request.id``, ``trace.id`` and ``span.id`` of the current request;
    with OpenTelemetry, the ids of the active span instead, when one is (docs/tracing.md)."""
    ctx = _context.current()
    if ctx is not None:
        if ctx.request_id:
            data["http.request.id"] = ctx.request_id
        if ctx.trace_id:
            data["trace.id"] = ctx.trace_id
        if ctx.span_id:
            data["span.id"] = ctx.span_id
    if _tracing.AVAILABLE:
        active = _tracing.active_ids()
        if active is not None:
            data["trace.id"], data["span.id"] = active


def add_extras(data: dict[str, Any], fields: dict[str, Any]) -> None:
    """Add the extra fields of a record's ``__dict__`` (``fields``), skipping ``_private``."""
    if len(fields) <= STANDARD:
        return
    extras = fields.keys() - RESERVED
    added = 0
    for key, value in islice(fields.items(), STANDARD, None):  # extras come last
        if key in extras:
            added += 1
            if key[:1] != "_":
                add_extra(data, key, value)
    if added < len(extras):  # a record factory put some before the standard ones
        for key in extras:
            if key[:1] != "_" and key not in data:
                add_extra(data, key, fields[key])


def add_extra(data: dict[str, Any], key: str, value: Any) -> None:
    """One extra field: dotted names (and mappings) as given, foreign undotted ones to labels.

    A dotted name (``event.action``, ``order.id``) or a mapping (``{"order": {"id": 1}}``)
    is the caller's choice of field and is kept. An undotted name is some library's own
    attribute (Django's ``status_code`` and ``request``), not a field: a string, number or
    boolean goes to ``labels.<name>`` (ECS's custom keywords, so always a string); anything
    else is dropped, as its repr is no field either. ECS's undotted ``tags`` is kept.
    """
    if "." in key or isinstance(value, dict) or key in _UNDOTTED_ECS:
        add_field(data, key, value)
    elif isinstance(value, bool):
        data[f"labels.{key}"] = "true" if value else "false"
    elif isinstance(value, str | int | float):
        add_field(data, f"labels.{key}", str(value))


_UNDOTTED_ECS = frozenset(("tags", "labels"))
