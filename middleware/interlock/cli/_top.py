"""``interlock top``: the locks held in a namespace right now, across processes and machines.

Registered into the ``interlock`` command by :func:`register`::

    interlock top [--url URL] [--namespace NS] [--interval 1.0] [--once] [--json] [--limit 50]

``--url`` and ``--namespace`` fall back to ``INTERLOCK_URL`` and ``INTERLOCK_NAMESPACE``
(see :mod:`interlock._config`). Each pass SCANs every master for lock and queue keys
(bounded: it stops after ``10 * --limit`` matching keys or 100 000 examined keys per node
and says ``(more)``), then reads each lock with one read-only script (``_top_view.LOCK_STATE``),
all of them in one pipelined batch. It never takes, extends or releases a lock.

Exit status: 0 after ``--once``/``--json`` or Ctrl-C, 1 when the backend cannot be read
(in the live view only if the first pass fails; later failures are shown and retried),
2 for bad options. See docs/top.md for the columns.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import select
import shutil
import sys
import time
from collections.abc import Callable
from typing import Any

from interlock.backends import Arg, Script
from interlock.cli._check import answered_fix
from interlock.cli._top_view import (
    LOCK_STATE,
    LockRow,
    Snapshot,
    as_json,
    lock_pattern,
    make_snapshot,
    public_url,
    render,
    row_from_reply,
    split_lock_key,
    state_keys,
    wrap,
)
from interlock.errors import BackendError, BackendUnavailable, ConfigError

_SCAN_COUNT = 500
_SCAN_CALLS = 200  # SCAN calls per node and pass: at most ~100 000 keys examined
_KEYS_PER_LIMIT = 10  # matching keys read per node and pass: 10 * --limit
_CLEAR = "\x1b[H\x1b[2J"  # cursor home, clear screen
_MEM_NOTE = (
    "mem:// is per-process: only locks taken in this process are visible; "
    "point --url at Redis to see every process"
)

Scan = Callable[[int], tuple[int, list[bytes]]]  # cursor -> (next cursor, keys)


def _interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a positive number of seconds; e.g. --interval 1.0"
        )
    return value


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer; e.g. --limit 50")
    return value


def register(subparsers: Any) -> None:
    """Add the ``top`` command to the ``interlock`` command's subparsers."""
    top = subparsers.add_parser(
        "top",
        help="live view of held locks and their waiters",
        description="Show the locks currently held in a namespace, by any process on any "
        "machine, with their holders, fences and waiters (read from Redis).",
    )
    top.add_argument("--url", default=None, help="backend URL (INTERLOCK_URL)")
    top.add_argument("--namespace", default=None, help="namespace (INTERLOCK_NAMESPACE)")
    top.add_argument(
        "--interval",
        type=_interval,
        default=1.0,
        metavar="SECONDS",
        help="refresh every SECONDS (1.0)",
    )
    top.add_argument("--once", action="store_true", help="print one snapshot and exit")
    top.add_argument(
        "--json", action="store_true", help="print one snapshot as JSON (implies --once)"
    )
    top.add_argument(
        "--limit",
        type=_limit,
        default=50,
        metavar="N",
        help="show the first N locks (50); each pass reads up to 10*N lock keys per node",
    )
    top.set_defaults(handler=_top)


def _scan_node(scan: Scan, budget: int) -> tuple[list[bytes], bool]:
    """All keys ``scan`` yields on one node, and whether it stopped before the end."""
    keys: list[bytes] = []
    cursor = 0
    for _ in range(_SCAN_CALLS):
        cursor, found = scan(cursor)
        keys += found
        if cursor == 0:
            return keys, False
        if len(keys) >= budget:
            return keys, True
    return keys, True


def _cluster_scans(il: Any, pattern: str) -> list[Scan]:
    """One SCAN per Cluster primary, through the backend's node-by-node scan."""
    from interlock._sync.backend.base import NodeScans

    backend: NodeScans = il.backend

    def scan_on(node: object) -> Scan:
        def scan(cursor: int) -> tuple[int, list[bytes]]:
            return backend.scan(node, cursor, match=pattern, count=_SCAN_COUNT)

        return scan

    return [scan_on(node) for node in backend.primaries()]


def _find_keys(il: Any, budget: int) -> tuple[list[bytes], bool]:
    pattern = lock_pattern(il.namespace)
    scheme = il.settings.scheme
    if scheme == "mem":  # the embedded store has KEYS, not SCAN; it is small and local
        keys = sorted(il.backend.execute("KEYS", pattern))
        return keys[:budget], len(keys) > budget
    if "cluster" in scheme:
        scans = _cluster_scans(il, pattern)
    else:

        def scan(cursor: int) -> tuple[int, list[bytes]]:
            args: tuple[Arg, ...] = ("SCAN", cursor, "MATCH", pattern, "COUNT", _SCAN_COUNT)
            next_cursor, keys = il.backend.execute(*args)
            return int(next_cursor), list(keys)

        scans = [scan]
    found: list[bytes] = []
    more = False
    for node_scan in scans:
        keys, stopped = _scan_node(node_scan, budget)
        found += keys
        more = more or stopped
    return found, more


def take_snapshot(il: Any, limit: int) -> Snapshot:
    """One pass over the namespace of ``il`` (an :class:`interlock.Interlock`).

    Raises:
        BackendError: when the backend cannot be read.
    """
    keys, more = _find_keys(il, limit * _KEYS_PER_LIMIT)
    locks: dict[str, tuple[str, str]] = {}
    for key in keys:
        parts = split_lock_key(il.namespace, key)
        if parts is not None:
            locks.setdefault(key[:-2].decode(errors="replace"), parts)
    calls: list[tuple[Script, list[str], list[Arg]]] = [
        (LOCK_STATE, state_keys(base), []) for base in locks
    ]
    replies = il.backend.run_many(calls) if calls else []
    rows: list[LockRow] = []
    for (name, encoded), reply in zip(locks.values(), replies, strict=True):
        if isinstance(reply, BaseException):
            if isinstance(reply, BackendError):
                raise reply
            raise BackendError(f"top could not read lock {name!r}: {reply}") from reply
        row = row_from_reply(name, encoded, reply)
        if row is not None:
            rows.append(row)
    notes = [_MEM_NOTE] if il.settings.scheme == "mem" else []
    return make_snapshot(il.namespace, il.settings.url, rows, limit, more, notes)


def _show(text: str, tty: bool, first: bool) -> None:
    if tty:
        sys.stdout.write(_CLEAR + text + "\n")  # cbreak mode keeps "\n" a new line
    else:
        sys.stdout.write(("" if first else "\n") + text + "\n")
    sys.stdout.flush()


def _width(tty: bool) -> int | None:
    """Columns to fit the table into: the terminal's (or ``COLUMNS``); ``None`` for a pipe."""
    if tty:
        return shutil.get_terminal_size().columns
    columns = os.environ.get("COLUMNS", "")
    return int(columns) if columns.isdigit() and int(columns) > 0 else None


class _Keys:
    """Single key presses from a terminal on stdin (cbreak mode: no echo, Ctrl-C still works).

    The terminal's settings are restored by :meth:`close`.
    """

    def __init__(self, fd: int) -> None:
        import termios
        import tty

        self.fd = fd
        self.saved = termios.tcgetattr(fd)
        tty.setcbreak(fd)

    @classmethod
    def open(cls) -> _Keys | None:
        """The keys of stdin when it is a terminal (POSIX); else ``None``."""
        try:
            fd = sys.stdin.fileno()
            if not os.isatty(fd):
                return None
            return cls(fd)
        except (ImportError, OSError, ValueError):  # no termios (Windows), or a closed stdin
            return None

    def quit_within(self, seconds: float) -> bool:
        """Wait up to ``seconds``; True as soon as ``q`` is pressed."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                pressed = os.read(self.fd, 64)
                if not pressed or b"q" in pressed.lower():
                    return True  # q, or the terminal went away
        return False

    def close(self) -> None:
        import termios

        termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)


def _top(args: argparse.Namespace) -> int:
    from interlock._sync.client import Interlock

    try:  # chaos="" keeps INTERLOCK_CHAOS from injecting faults into the viewer itself
        il = Interlock(args.url, namespace=args.namespace, registry=None, chaos="")
    except ConfigError as exc:  # messages may quote the URL: never with its password
        message = str(exc)
        for url in {args.url, os.environ.get("INTERLOCK_URL")} - {None, ""}:
            message = message.replace(str(url), public_url(str(url)))
        print(f"interlock top: {message}", file=sys.stderr)
        return 2
    keys: _Keys | None = None
    try:
        snap = take_snapshot(il, args.limit)
        if args.json:
            print(json.dumps(as_json(snap), indent=2))
            return 0
        tty = sys.stdout.isatty()
        keys = None if args.once or not tty else _Keys.open()
        hint = "(q quits)" if keys is not None else None
        _show(render(snap, _width(tty), hint), tty, first=True)
        while not args.once:
            if keys is not None:
                if keys.quit_within(args.interval):
                    return 0
            else:
                time.sleep(args.interval)
            width = _width(tty)
            try:
                text = render(take_snapshot(il, args.limit), width, hint)
            except BackendError as exc:  # a failover or a blip: say so and try again
                stamp = time.strftime("%H:%M:%S")
                pieces = ["interlock top", public_url(il.settings.url), stamp, str(exc)]
                text = "\n".join(wrap(pieces, width, "  "))
            _show(text, tty, first=False)
        return 0
    except BackendError as exc:
        print(f"interlock top: {exc}", file=sys.stderr)
        if not isinstance(exc, BackendUnavailable):  # the server answered: e.g. no such db
            print(f"  fix: {answered_fix(il)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        if keys is not None:
            keys.close()
        il.close()
