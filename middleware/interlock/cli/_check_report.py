"""``interlock check`` without I/O: verdicts from the values gathered, and the report."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from typing import Any

from interlock.lock import RESTART_GRACE_S

# (status, detail, fix): what one check returns
Verdict = tuple[str, str, str | None]
MIN_VERSION = (6, 0)  # BLPOP with fractional timeouts, RESP3
SLOTS = 16384
CONFIG_FIX = (
    "allow CONFIG GET for this user (ACL: +config|get), or ask your provider for these "
    "settings and compare them with docs/check.md"
)
_WIDTH = len("fail")


@dataclass(frozen=True, slots=True)
class Result:
    """The outcome of one check.

    Attributes:
        check: the check's name, e.g. ``"eviction"``.
        status: ``"ok"``, ``"warn"`` or ``"fail"``.
        detail: what was found.
        fix: what to change, for ``warn`` and ``fail``; ``None`` for ``ok``.
    """

    check: str
    status: str
    detail: str
    fix: str | None = None


def ok(detail: str) -> Verdict:
    return ("ok", detail, None)


def warn(detail: str, fix: str) -> Verdict:
    return ("warn", detail, fix)


def fail(detail: str, fix: str) -> Verdict:
    return ("fail", detail, fix)


def render(results: list[Result], as_json: bool = False) -> str:
    """The report: a JSON list, or ``status  check: detail`` lines with indented fixes."""
    if as_json:
        return json.dumps([asdict(result) for result in results], indent=2)
    lines = []
    for result in results:
        lines.append(f"{result.status:<{_WIDTH}}  {result.check}: {result.detail}")
        if result.fix:
            lines.append(f"{'':<{_WIDTH}}    fix: {result.fix}")
    return "\n".join(lines)


def config_value(reply: Any) -> str:
    """The value of a one-parameter ``CONFIG GET``: a dict (RESP3, callbacks) or a flat list."""
    values = list(reply.values()) if isinstance(reply, dict) else list(reply or [])[1::2]
    value = values[0] if values else b""
    return value.decode() if isinstance(value, bytes) else str(value)


def size(count: int) -> str:
    """``104857600`` -> ``"100mb"``, in redis.conf's units (1mb = 1024 * 1024 bytes)."""
    for unit, scale in (("gb", 1 << 30), ("mb", 1 << 20), ("kb", 1 << 10)):
        if count >= scale:
            return f"{count / scale:.4g}{unit}"
    return f"{count} bytes"


def version(text: str) -> Verdict:
    numbers = tuple(int(part) for part in re.findall(r"\d+", text)[:2])
    needed = ".".join(map(str, MIN_VERSION))
    if numbers >= MIN_VERSION:
        return ok(f"Redis {text} (>= {needed})")
    return fail(
        f"Redis {text} is older than {needed} (BLPOP with fractional timeouts, RESP3)",
        f"upgrade to Redis {needed} or later (7.x recommended)",
    )


def eviction(maxmemory: int, policy: str) -> Verdict:
    if maxmemory == 0:
        return ok(f"no maxmemory limit (policy {policy}): keys are never evicted")
    if policy == "noeviction":
        return ok(f"maxmemory {size(maxmemory)}, noeviction: writes fail when full, no eviction")
    return warn(
        f"maxmemory {size(maxmemory)} with maxmemory-policy {policy}: lock and transaction "
        "keys may be evicted under memory pressure, and a lost lock key means two holders",
        "set maxmemory-policy noeviction, or give interlock a dedicated Redis",
    )


def durability(appendonly: str, appendfsync: str) -> Verdict:
    if appendonly == "yes" and appendfsync == "always":
        return ok("appendonly yes, appendfsync always: the Redis decision log of 2PC is durable")
    return warn(
        f"appendonly {appendonly}, appendfsync {appendfsync}: the Redis decision log of 2PC "
        "requires appendonly yes + appendfsync always (transactions refuse it unless "
        "durability='relaxed'); a restart forgets every lock: holders are told within "
        f"~0.1 s and the server grants none for {RESTART_GRACE_S} s after it starts",
        "set `appendonly yes` and `appendfsync always` (redis.conf or CONFIG SET), or use a "
        "PostgreSQL decision log (decision_log='postgresql://...')",
    )


def cluster(raw: Any, node: str) -> Verdict:
    """From the ``CLUSTER INFO`` text of ``node``."""
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    info = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    state = info.get("cluster_state", "unknown")
    assigned = int(info.get("cluster_slots_assigned", 0))
    served = int(info.get("cluster_slots_ok", 0))
    detail = (
        f"{info.get('cluster_size', '?')} masters, {assigned}/{SLOTS} slots assigned, "
        f"{served} ok, cluster_state {state}"
    )
    if state == "ok" and assigned == served == SLOTS:
        return ok(detail)
    fix = f"every slot must be served: run `redis-cli --cluster check {node}`, then `fix`"
    return fail(detail, fix)


def sentinel(master: dict[str, Any], service: str, asked: str) -> Verdict:
    """From the sentinel ``asked``'s ``SENTINEL MASTER service`` reply (redis-py's dict)."""
    address = f"{master['ip']}:{master['port']}"
    replicas = int(master["num-slaves"])
    detail = (
        f"master {service!r} at {address} ({master['flags']}), {replicas} replica(s), "
        f"{int(master['num-other-sentinels']) + 1} sentinel(s), asked {asked}"
    )
    if master.get("is_sdown") or master.get("is_odown"):
        return fail(detail, f"the sentinels see {address} down: start it or let them fail over")
    if not replicas:
        return warn(detail, "add a replica: with none, Sentinel has nothing to promote")
    return ok(detail)
