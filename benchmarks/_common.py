"""Shared benchmark plumbing: a throwaway Redis, round-trip counting, results file."""

from __future__ import annotations

import platform
import re
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from services import RedisServer  # noqa: E402  (the tests' throwaway-service helper)

RESULTS = ROOT / "benchmarks" / "RESULTS.md"


def start_redis() -> RedisServer:
    """A private redis-server on a free port, so runs don't share state."""
    return RedisServer().start()


class RoundTrips:
    """Counts client->server sends of redis-py connections (one per round trip).

    Pipelined commands go out in one send, so a pipeline counts once, like on the wire.
    """

    def __init__(self) -> None:
        import redis.connection

        self.count = 0
        original = redis.connection.AbstractConnection.send_packed_command

        def counting(conn: object, command: object, check_health: bool = True) -> None:
            self.count += 1
            original(conn, command, check_health)  # type: ignore[arg-type]

        redis.connection.AbstractConnection.send_packed_command = counting  # type: ignore[method-assign]


def jain(values: Sequence[float]) -> float:
    """Jain's fairness index: 1.0 when every process got the same share."""
    total = sum(values)
    squares = sum(v * v for v in values)
    return total * total / (len(values) * squares) if squares else 0.0


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def machine() -> str:
    return f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}"


def write_section(name: str, body: str) -> None:
    """Replace the ``<!-- name:begin -->`` ... ``<!-- name:end -->`` block of RESULTS.md."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    block = f"{begin}\n{body.rstrip()}\n{end}"
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _m: block, text) if pattern.search(text) else f"{text}\n{block}\n"
    RESULTS.write_text(text)
