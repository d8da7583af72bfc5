"""A time scale for Prometheus rule files: the production expressions on a shorter clock.

Alerts whose ``for:`` and windows last minutes or hours are too slow for a test or a short
game day. :func:`scale_rules` rewrites a copy of a rule file so that every duration — range
selectors ``[5m]``, subquery steps ``[1h:5m]``, ``offset 5m`` and each rule's ``for:`` —
is multiplied by ``factor`` (``1/60``: a minute becomes a second), and changes nothing
else: metric names, recorded series names (``...:rate5m``), label matchers, thresholds and
the structure of every expression stay the production ones. Durations are written in
whole milliseconds, at least ``minimum`` (default 1 s; a window shorter than two scrapes
holds no rate).
"""

from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0,
          "y": 31536000.0}  # fmt: skip
_DURATION = re.compile(r"(\d+)(ms|[smhdwy])")
_RANGE = re.compile(r"\[((?:\d+(?:ms|[smhdwy]))+)(?::((?:\d+(?:ms|[smhdwy]))*))?\]")
_OFFSET = re.compile(r"\boffset\s+((?:\d+(?:ms|[smhdwy]))+)")
_FOR = re.compile(r"^([ \t]*for:[ \t]*)((?:\d+(?:ms|[smhdwy]))+)[ \t]*$", re.MULTILINE)


def duration_seconds(text: str) -> float:
    """``1h30m`` -> 5400.0."""
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"{text!r} is not a Prometheus duration")
    return sum(int(n) * _UNITS[u] for n, u in parts)


def scale_duration(text: str, factor: float, minimum: float = 1.0) -> str:
    seconds = max(duration_seconds(text) * factor, minimum)
    return f"{round(seconds * 1000)}ms"


def scale_rules(text: str, factor: float, minimum: float = 1.0) -> str:
    """``text`` (a rule file) with every duration of its expressions and ``for:`` scaled."""
    if not factor > 0:
        raise ValueError(f"factor must be positive, not {factor!r}")

    def ranged(match: re.Match[str]) -> str:
        window = scale_duration(match.group(1), factor, minimum)
        if match.group(2) is None:
            return f"[{window}]"
        step = match.group(2) and scale_duration(match.group(2), factor, minimum)
        return f"[{window}:{step}]"

    text = _RANGE.sub(ranged, text)
    text = _OFFSET.sub(lambda m: f"offset {scale_duration(m.group(1), factor, minimum)}", text)
    return _FOR.sub(lambda m: m.group(1) + scale_duration(m.group(2), factor, minimum), text)
