"""Values fit for a JSON log line: valid Unicode, no NaN, nested mappings as dotted keys.

Every string that reaches a line goes through :func:`safe_text` (undecodable bytes from
the wire arrive as lone surrogates, which JSON cannot carry); everything else goes
through :func:`sanitize` or, for what ``json`` cannot encode at all, :func:`json_default`.
"""

from __future__ import annotations

import re
from typing import Any

from pythonjsonlogger.json import JsonEncoder

MAX_DEPTH = 8
_SURROGATE = re.compile("[\ud800-\udfff]")


def safe_text(text: str) -> str:
    """``text`` as valid Unicode: lone surrogates (from undecodable bytes) become U+FFFD."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)
    return text


def sanitize(value: Any, depth: int = 0) -> Any:
    """``value`` with every string valid Unicode and no NaN/infinity (invalid in JSON)."""
    if isinstance(value, str):
        return safe_text(value)
    if isinstance(value, float):
        return value if value - value == 0 else str(value)
    if isinstance(value, dict | list | tuple | set | frozenset) and depth > MAX_DEPTH:
        return "<nested too deep>"
    if isinstance(value, dict):
        return {safe_text(str(k)): sanitize(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [sanitize(v, depth + 1) for v in value]
    return value


def add_field(data: dict[str, Any], key: str, value: Any, depth: int = 0) -> None:
    """Add one extra field; nested mappings become dotted keys (``http.request.x``)."""
    kind = type(value)
    if kind is str:
        data[key] = value if value.isascii() else safe_text(value)
    elif kind is int or kind is bool or value is None:
        data[key] = value
    elif isinstance(value, dict) and depth < MAX_DEPTH:
        for inner, item in value.items():
            add_field(data, f"{key}.{safe_text(str(inner))}", item, depth + 1)
    else:
        data[key] = sanitize(value, depth)


_encoder = JsonEncoder()


def json_default(value: Any) -> Any:
    """Values JSON cannot encode: python-json-logger's conversions, then ``str``."""
    try:
        converted = _encoder.default(value)
    except Exception:  # a broken __str__/__repr__ must not lose the line
        return f"<unprintable {type(value).__name__}>"
    return sanitize(converted)
