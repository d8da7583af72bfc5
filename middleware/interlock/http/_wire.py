"""What arrives on the wire, made safe: methods, request ids, W3C trace context, text.

Pure functions shared by both middleware drivers and the log line.
"""

from __future__ import annotations

import random
import re

from interlock.http._rules import HTTP_METHODS
from interlock.logs._values import safe_text

OTHER_METHOD = "_OTHER"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:+/=@-]{1,128}")
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_ZERO_TRACE, _ZERO_SPAN = "0" * 32, "0" * 16
_random_bits = random.getrandbits


def normalise_method(method: str) -> str:
    """The ``method`` label: a standard HTTP method, else ``_OTHER``."""
    return method if method in HTTP_METHODS else OTHER_METHOD


def parse_request_id(value: str | None) -> str | None:
    """``value`` if it is an acceptable request id (1-128 of ``A-Za-z0-9._:+/=@-``)."""
    if value and _REQUEST_ID.fullmatch(value):
        return value
    return None


def parse_traceparent(value: str | None) -> tuple[str, str, bool] | None:
    """``(trace_id, parent_span_id, sampled)`` from a W3C ``traceparent``, or ``None``.

    Version ``ff`` and all-zero ids are invalid; version ``00`` must have no suffix;
    future versions may append fields after a dash.
    """
    if not value or len(value) > 512:
        return None
    found = _TRACEPARENT.fullmatch(value.strip())
    if found is None:
        return None
    version, trace_id, parent, flags, rest = found.groups()
    if version == "ff" or (version == "00" and rest) or trace_id == _ZERO_TRACE:
        return None
    if parent == _ZERO_SPAN:
        return None
    return trace_id, parent, bool(int(flags, 16) & 1)


def new_ids() -> tuple[str, str, str]:
    """A fresh ``(request_id, trace_id, span_id)`` (32, 32 and 16 hex digits).

    Ids need uniqueness, not secrecy, so the fast PRNG serves (Python re-seeds it after
    fork). The lowest bits of the trace and span ids are set: W3C forbids all-zero ids.
    """
    raw = f"{_random_bits(320) | 1 << 64 | 1:080x}"
    return raw[:32], raw[32:64], raw[64:]


def clean(text: str, limit: int = 2048) -> str:
    """``text`` made safe for a log field: valid Unicode, at most ``limit`` characters."""
    if len(text) > limit:
        text = text[:limit] + "…"
    return safe_text(text)


def utf8(value: str) -> str:
    """A WSGI/ASGI string (bytes as latin-1) re-read as UTF-8, invalid bytes replaced."""
    if value.isascii():
        return value
    try:
        return value.encode("latin-1").decode("utf-8", "replace")
    except UnicodeEncodeError:  # already real text (an ASGI path is decoded)
        return value
