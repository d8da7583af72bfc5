"""Declarative experiments: a TOML file in the shape of Chaos Toolkit, validated strictly.

The format is docs/chaos.md's; in short::

    title = "Redis killed: cache fails open, locks fail closed"
    [settings]            # prometheus, alertmanager, poll, steady_within, recover_within
    [[proxies]]           # name, listen, upstream: FaultProxy links the method can disturb
    [[steady_state]]      # probes that must hold before the method and again after it
    [[method]]            # faults: kind, target, after, duration, and the kind's keys
    [[rollbacks]]         # commands run at the end, whatever happened
    [[expect.alerts]]     # alert, labels, fire_within, resolve_within
    [[expect.invariants]] # probes with when = "during" | "after" (and within)

A probe is one of ``promql = "..."`` (with ``expect = "> 0"``), ``metrics = URL`` with
``metric = 'name{label="value"}'`` (and ``expect``), ``http = URL`` (``status``,
``method``) or ``command = "..."`` (exit status 0). Every mistake raises
:class:`~interlock.errors.ConfigError` naming the file, the key and the fix.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interlock.chaos._faults import FAULT_KINDS, NETWORK_KINDS, PROCESS_KINDS
from interlock.errors import ConfigError

PROBE_KINDS = ("promql", "metrics", "http", "command")
OPERATORS = ("==", "!=", "<=", ">=", "<", ">")
_COMPARISON = re.compile(r"^\s*(==|!=|<=|>=|<|>)\s*(-?[0-9.]+(?:e-?\d+)?)\s*$")
_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_ADDRESS = re.compile(r"^([^:\s]+):(\d{1,5})$")


@dataclass(frozen=True)
class Probe:
    name: str
    kind: str  # one of PROBE_KINDS
    target: str  # the query, URL or command
    metric: str = ""  # metrics probes: name{labels}
    op: str = "=="
    threshold: float = 0.0
    empty: float | None = None  # the value of a query or metric with no series
    status: tuple[int, ...] = (200,)
    method: str = "GET"
    timeout: float = 5.0
    when: str = "after"  # invariants: "during" the faults or "after" recovery
    within: float = 0.0  # invariants "after": keep trying this long


@dataclass(frozen=True)
class ProxySpec:
    name: str
    listen: int
    upstream: tuple[str, int]


@dataclass(frozen=True)
class FaultSpec:
    name: str
    kind: str
    target: str
    after: float = 0.0
    duration: float = 0.0
    pid: int | None = None
    pidfile: str | None = None
    pid_command: str | None = None
    proxy: str = ""
    latency: float = 0.0
    jitter: float = 0.0
    restart: str | None = None
    argv: tuple[str, ...] | None = None
    ready: tuple[str, int] | None = None
    ready_timeout: float = 30.0

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.target}"


@dataclass(frozen=True)
class AlertExpectation:
    alert: str
    labels: dict[str, str] = field(default_factory=dict)
    fire_within: float = 60.0  # seconds after the first fault was injected
    resolve_within: float = 120.0  # seconds after the last fault ended


@dataclass(frozen=True)
class Rollback:
    name: str
    command: str
    timeout: float = 30.0


@dataclass(frozen=True)
class Settings:
    prometheus: str = ""
    alertmanager: str = ""
    poll: float = 0.5
    steady_within: float = 30.0
    recover_within: float = 120.0


@dataclass(frozen=True)
class Experiment:
    title: str
    source: str
    description: str = ""
    settings: Settings = Settings()
    proxies: tuple[ProxySpec, ...] = ()
    steady_state: tuple[Probe, ...] = ()
    method: tuple[FaultSpec, ...] = ()
    rollbacks: tuple[Rollback, ...] = ()
    alerts: tuple[AlertExpectation, ...] = ()
    invariants: tuple[Probe, ...] = ()

    @property
    def fault(self) -> str:
        """The faults, as the report names them: ``kind:target`` joined by ``, ``."""
        return ", ".join(spec.label for spec in self.method)


class _Table:
    """One TOML table being read: typed getters, then :meth:`done` refuses unknown keys."""

    def __init__(self, data: Any, where: str, source: str) -> None:
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: {where} must be a table, not {type(data).__name__}")
        self.data, self.where, self.source = data, where, source
        self.used: set[str] = set()

    def fail(self, key: str, why: str) -> ConfigError:
        return ConfigError(f"{self.source}: {self.where}.{key} {why}")

    def get(self, key: str, kinds: type | tuple[type, ...], default: Any = None) -> Any:
        self.used.add(key)
        if key not in self.data:
            return default
        value = self.data[key]
        allowed = kinds if isinstance(kinds, tuple) else (kinds,)
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in allowed):
            names = kinds.__name__ if isinstance(kinds, type) else " or ".join(
                k.__name__ for k in kinds
            )
            raise self.fail(key, f"must be {names}, not {value!r}")
        return value

    def text(self, key: str, default: str | None = None) -> str:
        value = self.get(key, str, default)
        if value is None:
            raise self.fail(key, "is required")
        return str(value)

    def seconds(self, key: str, default: float, *, positive: bool = False) -> float:
        value = float(self.get(key, (int, float), default))
        if not math.isfinite(value) or value < 0 or (positive and value == 0):
            raise self.fail(key, f"must be a {'positive' if positive else 'non-negative'} "
                            f"number of seconds, not {value!r}")  # fmt: skip
        return value

    def table(self, key: str) -> _Table:
        return _Table(self.get(key, dict, {}), f"{self.where}.{key}", self.source)

    def tables(self, key: str) -> list[_Table]:
        items = self.get(key, list, [])
        return [_Table(item, f"{key}[{i}]", self.source) for i, item in enumerate(items)]

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise ConfigError(
                f"{self.source}: {self.where} has unknown key {unknown[0]!r}; "
                f"allowed: {', '.join(sorted(self.used))}"
            )


def _address(table: _Table, key: str, value: str) -> tuple[str, int]:
    match = _ADDRESS.match(value)
    if not match or not 0 < int(match.group(2)) < 65536:
        raise table.fail(key, f"must be host:port, e.g. '127.0.0.1:6379', not {value!r}")
    return match.group(1), int(match.group(2))


def _probe(table: _Table, invariant: bool) -> Probe:
    kinds = [kind for kind in PROBE_KINDS if kind in table.data]
    if len(kinds) != 1:
        raise ConfigError(
            f"{table.source}: {table.where} needs exactly one of {', '.join(PROBE_KINDS)}"
            f" (found {', '.join(kinds) or 'none'})"
        )
    kind = kinds[0]
    name = table.text("name", f"{kind} probe")
    options: dict[str, Any] = {"timeout": table.seconds("timeout", 5.0, positive=True)}
    if kind in ("promql", "metrics"):
        comparison = table.text("expect")
        match = _COMPARISON.match(comparison)
        if not match:
            raise table.fail("expect", f"must be an operator ({' '.join(OPERATORS)}) and a "
                             f"number, e.g. '> 0', not {comparison!r}")  # fmt: skip
        options.update(op=match.group(1), threshold=float(match.group(2)))
        empty = table.get("empty", (int, float))
        options["empty"] = None if empty is None else float(empty)
        if kind == "metrics":
            options["metric"] = table.text("metric")
    if kind == "http":
        status = table.get("status", list, [200])
        if not status or not all(isinstance(s, int) and 100 <= s <= 599 for s in status):
            raise table.fail("status", f"must be a list of HTTP statuses, not {status!r}")
        options.update(status=tuple(status), method=table.text("method", "GET").upper())
    if invariant:
        when = table.text("when", "after")
        if when not in ("during", "after"):
            raise table.fail("when", f"must be 'during' or 'after', not {when!r}")
        options.update(when=when, within=table.seconds("within", 0.0))
    probe = Probe(name, kind, table.text(kind), **options)
    table.done()
    return probe


def _fault(table: _Table, index: int, proxies: dict[str, ProxySpec]) -> FaultSpec:
    kind = table.text("kind")
    if kind not in FAULT_KINDS:
        raise table.fail("kind", f"is {kind!r}; use one of {', '.join(FAULT_KINDS)}")
    target = table.text("target")
    if not _NAME.match(target):
        raise table.fail("target", f"{target!r} must be a short name (a metric label: "
                         "letters, digits, _.:-, at most 64)")  # fmt: skip
    options: dict[str, Any] = {
        "after": table.seconds("after", 0.0),
        "duration": table.seconds("duration", 0.0, positive=kind not in ("kill",)),
    }
    if kind in PROCESS_KINDS or kind == "server-restart":
        pid = table.get("pid", int)
        sources = {"pid": pid, "pidfile": table.get("pidfile", str),
                   "pid_command": table.get("pid_command", str)}  # fmt: skip
        if sum(value is not None for value in sources.values()) != 1:
            raise ConfigError(f"{table.source}: {table.where} ({kind}) needs exactly one of "
                              "pid, pidfile, pid_command")  # fmt: skip
        options.update(sources)
    if kind in NETWORK_KINDS:
        proxy = table.text("proxy")
        if proxy not in proxies:
            raise table.fail("proxy", f"{proxy!r} is not declared in [[proxies]] "
                             f"(declared: {', '.join(proxies) or 'none'})")  # fmt: skip
        options["proxy"] = proxy
        if kind == "net-latency":
            options["latency"] = table.seconds("latency", 0.0, positive=True)
            options["jitter"] = table.seconds("jitter", 0.0)
    if kind == "server-restart":
        options["restart"] = table.get("restart", str)
        argv = table.get("argv", list)
        if argv is not None and (not argv or not all(isinstance(a, str) for a in argv)):
            raise table.fail("argv", f"must be a non-empty list of strings, not {argv!r}")
        if argv is not None and options["restart"] is not None:
            raise table.fail("argv", "and restart both given: use one (argv runs without a "
                             "shell, restart is a shell command)")  # fmt: skip
        options["argv"] = None if argv is None else tuple(argv)
        options["ready"] = _address(table, "ready", table.text("ready"))
        options["ready_timeout"] = table.seconds("ready_timeout", 30.0, positive=True)
    spec = FaultSpec(table.text("name", f"{kind}-{index}"), kind, target, **options)
    table.done()
    return spec


def parse_experiment(data: dict[str, Any], source: str = "<experiment>") -> Experiment:
    """Validate a parsed TOML document (see the module docstring) into an :class:`Experiment`.

    Raises:
        ConfigError: naming the source, the bad key and what to write instead.
    """
    root = _Table(data, "experiment", source)
    title = root.text("title")
    description = root.text("description", "")
    s = root.table("settings")
    settings = Settings(
        prometheus=s.text("prometheus", "").rstrip("/"),
        alertmanager=s.text("alertmanager", "").rstrip("/"),
        poll=s.seconds("poll", 0.5, positive=True),
        steady_within=s.seconds("steady_within", 30.0),
        recover_within=s.seconds("recover_within", 120.0),
    )
    s.done()
    proxies: dict[str, ProxySpec] = {}
    for p in root.tables("proxies"):
        name = p.text("name")
        listen = p.get("listen", int, 0)
        if not 0 <= listen < 65536:
            raise p.fail("listen", f"must be a port (0-65535), not {listen!r}")
        proxies[name] = ProxySpec(name, listen, _address(p, "upstream", p.text("upstream")))
        p.done()
    steady = tuple(_probe(t, invariant=False) for t in root.tables("steady_state"))
    method = tuple(_fault(t, i, proxies) for i, t in enumerate(root.tables("method")))
    if not method:
        raise ConfigError(f"{source}: experiment needs at least one [[method]] fault")
    rollbacks = []
    for r in root.tables("rollbacks"):
        rollbacks.append(Rollback(r.text("name", "rollback"), r.text("command"),
                                  r.seconds("timeout", 30.0, positive=True)))  # fmt: skip
        r.done()
    expect = root.table("expect")
    alerts = []
    for a in expect.tables("alerts"):
        labels = a.get("labels", dict, {})
        if not all(isinstance(v, str) for v in labels.values()):
            raise a.fail("labels", "values must be strings")
        alerts.append(AlertExpectation(
            a.text("alert"), dict(labels), a.seconds("fire_within", 60.0, positive=True),
            a.seconds("resolve_within", 120.0, positive=True),
        ))  # fmt: skip
        a.done()
    invariants = tuple(_probe(t, invariant=True) for t in expect.tables("invariants"))
    expect.done()
    root.done()
    return Experiment(title, source, description, settings, tuple(proxies.values()), steady,
                      method, tuple(rollbacks), tuple(alerts), invariants)  # fmt: skip


def load_experiment(path: str | Path) -> Experiment:
    """Read and validate an experiment file (TOML)."""
    source = str(path)
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read the experiment: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from exc
    return parse_experiment(data, source)
