"""The pure half of ``interlock top``: the state script, key decoding, sorting and rendering.

No I/O here. ``interlock.cli._top`` finds lock keys, runs :data:`LOCK_STATE` on each and
hands the replies to :func:`row_from_reply`; :func:`render` and :func:`as_json` show them.
"""

from __future__ import annotations

import textwrap
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import unquote

from interlock.backends import Script
from interlock.lock import LOCK_SUFFIXES, parse_lock
from interlock.logs import REDACT_QUERY, redact_query

_SECRET_QUERY = frozenset((*REDACT_QUERY, "sentinel_password"))  # + the Sentinel URL option

LOCK_STATE = Script(
    "top_lock_state",
    r"""-- Read one lock's holder and queue in one atomic step (read-only).
-- KEYS: 1 lock '<base>:o', 2 waiter queue '<base>:a', 3 waiter details '<base>:d'
-- ARGV: none
-- Returns: {server seconds, server µs part, PTTL of the lock (-2: free), lock string or
--           false, queue length, oldest arrival score (server µs) or false,
--           oldest waiter's 'deadline_ms|channel|ttl_ms|host|pid|rid|tid' or false}
local t = redis.call('TIME')
local value = redis.call('GET', KEYS[1])
local pttl = redis.call('PTTL', KEYS[1])
local n = redis.call('ZCARD', KEYS[2])
local score, waiter = false, false
if n > 0 then
  local head = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  score = head[2]
  waiter = redis.call('HGET', KEYS[3], head[1])
end
return {t[1], t[2], pttl, value, n, score, waiter}
""",
)

_LOCK, _QUEUE = LOCK_SUFFIXES[0], LOCK_SUFFIXES[2]  # the keys a held or awaited lock has
_SUFFIXES = tuple(f"}}{suffix}".encode() for suffix in (_LOCK, _QUEUE))


def state_keys(base: str) -> list[str]:
    """KEYS of :data:`LOCK_STATE` for the lock whose keys start with ``base``."""
    return [base + LOCK_SUFFIXES[0], base + LOCK_SUFFIXES[2], base + LOCK_SUFFIXES[3]]


@dataclass(frozen=True, slots=True)
class LockRow:
    """One lock as ``interlock top`` shows it; times in seconds, ``None`` when not known."""

    name: str
    key: str
    fence: int | None
    host: str | None
    pid: int | None
    held_for: float | None
    ttl_left: float | None
    waiters: int
    oldest_wait: float | None
    oldest_waiter: str | None
    request_id: str | None
    trace_id: str | None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every lock found in one pass, sorted, with what bounded the pass."""

    namespace: str
    url: str
    taken_at: float
    rows: list[LockRow]  # the first --limit, sorted
    total: int  # locks found (held or queued)
    held: int
    waiting: int  # waiters over all locks found
    orphans: int  # queues with waiters and no holder (momentary, normally)
    more: bool  # the key scan stopped early: there may be locks it did not reach
    notes: list[str] = field(default_factory=list)


def make_snapshot(
    namespace: str, url: str, rows: list[LockRow], limit: int, more: bool, notes: list[str]
) -> Snapshot:
    """Sort ``rows``, keep ``limit`` of them and count all of them."""
    held = sum(1 for r in rows if r.host is not None)
    return Snapshot(
        namespace=namespace,
        url=public_url(url),
        taken_at=time.time(),
        rows=sort_rows(rows)[:limit],
        total=len(rows),
        held=held,
        waiting=sum(r.waiters for r in rows),
        orphans=len(rows) - held,
        more=more,
        notes=notes,
    )


def lock_pattern(namespace: str) -> str:
    """SCAN pattern of held locks and waiter queues (namespaces contain no glob characters)."""
    return f"{namespace}:lock:{{*}}:[{_LOCK[1:]}{_QUEUE[1:]}]"


def split_lock_key(namespace: str, key: bytes) -> tuple[str, str] | None:
    """``(lock name, encoded key)`` of a lock's or its queue's key (``lock.lock_keys``)."""
    prefix = f"{namespace}:lock:{{".encode()
    if not key.startswith(prefix) or key[-3:] not in _SUFFIXES:
        return None
    name, sep, encoded = key[len(prefix) : -3].decode(errors="replace").partition(":")
    return (name, encoded) if sep and name else None


def display_key(encoded: str) -> str:
    """The user's key as text when it is printable; else as stored (percent-encoded)."""
    text = "" if encoded == "%00empty" else unquote(encoded)
    return text if text.isprintable() else encoded


def _text(raw: bytes | None) -> str:
    return raw.decode(errors="replace") if raw else ""


def row_from_reply(name: str, encoded: str, reply: Sequence[Any]) -> LockRow | None:
    """Decode a :data:`LOCK_STATE` reply; ``None`` when the lock is free and nobody queues."""
    now_us = int(reply[0]) * 1_000_000 + int(reply[1])
    pttl, lock, waiters = int(reply[2]), reply[3], int(reply[4])
    if not lock and waiters == 0:
        return None
    held = parse_lock(lock)
    oldest = (now_us - float(_text(reply[5]))) / 1e6 if reply[5] else None
    waiter = _text(reply[6]).split("|")
    return LockRow(
        name=name,
        key=display_key(encoded),
        fence=held.get("fence"),
        host=held.get("host"),
        pid=held.get("pid"),
        held_for=round(max(0.0, now_us / 1e6 - held["acquired_at"]), 3) if held else None,
        ttl_left=(pttl / 1000 if pttl >= 0 else None) if held else None,
        waiters=waiters,
        oldest_wait=round(max(0.0, oldest), 3) if oldest is not None else None,
        oldest_waiter=f"{waiter[3]}:{waiter[4]}" if len(waiter) >= 5 else None,
        request_id=held.get("request_id"),
        trace_id=held.get("trace_id"),
    )


def sort_rows(rows: list[LockRow]) -> list[LockRow]:
    """Most waiters first, then longest held (queues without a holder count as held 0 s)."""
    return sorted(rows, key=lambda r: (-r.waiters, -(r.held_for or 0.0), r.name, r.key))


def public_url(url: str) -> str:
    """``url`` without its passwords (user info, ``?password=``, ``?sentinel_password=``).

    The user info ends at the last ``@`` before the first ``/``, ``?`` or ``#`` after it,
    as the backends read it (``urlsplit``); the rest of the URL is kept as written.
    """
    scheme, sep, rest = url.partition("://")
    end = len(rest)
    at = rest.rfind("@", 0, next((i for i, c in enumerate(rest) if c in "/?#"), end))
    if at >= 0:
        user, colon, _ = rest[:at].partition(":")
        rest = f"{user}{':***' if colon else ''}{rest[at:]}"
    return redact_query(f"{scheme}{sep}{rest}", _SECRET_QUERY)


def duration(seconds: float | None) -> str:
    """``850ms``, ``12.3s``, ``4m05s``, ``2h03m``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def _fit(text: str, width: int) -> str:
    text = "".join(c if c.isprintable() else "?" for c in text)  # remote text, not escapes
    return text if len(text) <= width else text[: width - 1] + "…"


_TITLES = ("LOCK", "KEY", "FENCE", "HOLDER", "HELD", "TTL", "WAITERS", "OLDEST", "REQUEST")
_RIGHT = frozenset(("FENCE", "HELD", "TTL", "WAITERS", "OLDEST"))
# widest a column of user text gets; FENCE and REQUEST (ids) are never cut
_CAPS = {"LOCK": 24, "KEY": 40, "HOLDER": 40}
# how a table wider than the terminal is narrowed, least useful first, until it fits: cut
# the text columns a little, hide OLDEST and FENCE, cut more, hide TTL, HELD, WAITERS, ...
# The ids (REQUEST, and FENCE while shown) are never cut: pasted into Kibana, they must match.
_NARROWING: tuple[tuple[str, dict[str, int]], ...] = (
    ("cut", {"KEY": 12, "LOCK": 10, "HOLDER": 16}),
    ("hide", {"OLDEST": 0}),
    ("hide", {"FENCE": 0}),
    ("cut", {"HOLDER": 10, "KEY": 8, "LOCK": 8}),
    ("hide", {"TTL": 0}),
    ("hide", {"HELD": 0}),
    ("hide", {"WAITERS": 0}),
    ("cut", {"HOLDER": 5, "KEY": 5, "LOCK": 5}),
    ("hide", {"HOLDER": 0}),
    ("cut", {"KEY": 3, "LOCK": 4}),
)


def _cells(row: LockRow) -> list[str]:
    holder = f"{row.host}:{row.pid}" if row.host is not None else "(no holder)"
    return [
        row.name,
        row.key,
        "-" if row.fence is None else str(row.fence),
        holder,
        duration(row.held_for),
        duration(row.ttl_left) if row.host is not None else "-",
        str(row.waiters),
        duration(row.oldest_wait),
        row.request_id or "-",
    ]


def column_widths(rows: Sequence[Sequence[str]], width: int | None) -> dict[str, int]:
    """Each shown column's width, in order: as wide as its text (capped), narrowed to fit.

    With ``width`` (the terminal's columns) the table is narrowed by :data:`_NARROWING`
    until a row fits; a table of ids wider than the terminal still shows them whole.
    """
    widths = {}
    for index, title in enumerate(_TITLES):
        natural = max([len(title), *(len(row[index]) for row in rows)])
        widths[title] = min(natural, _CAPS.get(title, natural))
    if width is None:
        return widths
    natural_widths = dict(widths)
    for action, targets in _NARROWING:
        excess = sum(widths.values()) + len(widths) - 1 - width
        if excess <= 0:
            break
        for title, floor in targets.items():
            if title not in widths or excess <= 0:
                continue
            if action == "hide":
                excess -= widths.pop(title) + 1
            else:
                cut = min(excess, max(0, widths[title] - floor))
                widths[title] -= cut
                excess -= cut
    slack = width - (sum(widths.values()) + len(widths) - 1)
    for title in ("HOLDER", "KEY", "LOCK"):  # a hidden column may have freed more than needed
        if title in widths and slack > 0:
            grow = min(slack, natural_widths[title] - widths[title])
            widths[title] += grow
            slack -= grow
    return widths


def _line(cells: Sequence[str], widths: dict[str, int]) -> str:
    out = []
    for text, title in zip(cells, _TITLES, strict=True):
        if title in widths:
            text = _fit(text, widths[title])
            out.append(text.rjust(widths[title]) if title in _RIGHT else text.ljust(widths[title]))
    return " ".join(out).rstrip()


def wrap(pieces: Sequence[str], width: int | None, indent: str = "") -> list[str]:
    """``pieces`` joined by two spaces, in lines of at most ``width``.

    A piece that does not fit on a line of its own is wrapped at its spaces; a single word
    (a URL, an id) is never cut and may stay wider.
    """
    if width is None:
        return ["  ".join(pieces)] if pieces else []
    lines: list[str] = []
    current = ""
    for piece in pieces:
        if current and len(current) + 2 + len(piece) <= width:
            current = f"{current}  {piece}"
            continue
        if current:
            lines.append(current)
        prefix = indent if lines or current else ""
        parts = textwrap.wrap(
            piece,
            max(width - len(prefix), 10),
            break_long_words=False,
            break_on_hyphens=False,
        ) or [piece]
        lines += [prefix + part for part in parts[:-1]]
        current = prefix + parts[-1]
    return [*lines, current] if current else lines


def render(snap: Snapshot, width: int | None = None, hint: str | None = None) -> str:
    """The snapshot as header lines and a table, fitted to ``width`` columns when given.

    Args:
        width: the terminal's width; ``None`` (a pipe or a file) never narrows the table.
        hint: a key hint for the header (the live view's ``q quits``).
    """
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(snap.taken_at))
    counts = f"{snap.held} held, {snap.waiting} waiting"
    if snap.orphans:
        counts += f", {snap.orphans} queue(s) without holder"
    if snap.total > len(snap.rows):
        counts += f" (top {len(snap.rows)} of {snap.total})"
    if snap.more:
        counts += " (more)"
    cells = [_cells(row) for row in snap.rows]
    widths = column_widths(cells, width)
    hidden = [title for title in _TITLES if title not in widths]
    pieces = ["interlock top", f"namespace {snap.namespace}", snap.url, stamp, counts]
    if hidden:
        pieces.append(f"(hidden to fit: {', '.join(hidden)}; --json has all)")
    if hint:
        pieces.append(hint)
    lines = wrap(pieces, width, "  ")
    for note in snap.notes:
        lines += ["  " + line for line in wrap([note], None if width is None else width - 2)]
    lines.append(_line(_TITLES, widths))
    lines += [_line(row, widths) for row in cells]
    if not snap.rows:
        lines.append("(no locks held)")
    return "\n".join(lines)


def as_json(snap: Snapshot) -> dict[str, Any]:
    """The snapshot as JSON-ready data (times in seconds; ``time`` is Unix time)."""
    return {
        "namespace": snap.namespace,
        "url": snap.url,
        "time": snap.taken_at,
        "total": snap.total,
        "held": snap.held,
        "waiting": snap.waiting,
        "orphans": snap.orphans,
        "more": snap.more,
        "notes": snap.notes,
        "locks": [asdict(row) for row in snap.rows],
    }
