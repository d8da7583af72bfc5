"""``interlock chaos gameday``: the standard experiments on throwaway local services.

It starts, each on a free loopback port: Redis (no AOF), PostgreSQL
(``max_prepared_transactions=64``) and MariaDB (:mod:`._local`); a :class:`FaultProxy`
between the demo and Redis; ``interlock demo`` under its own load, reaching Redis through
the proxy; the two-database bank app (``python -m interlock.demo.bank serve``: transfers
in 2PC, the recovery worker on); a real Prometheus scraping the demo, the bank and this
run's own chaos counter every second, loaded with a time-scaled copy of the project's rules
(:data:`TIME_SCALE`: a minute becomes a second), and Alertmanager when installed. Then it
runs the standard experiments (``chaos/experiments/*.toml``, their ``$names`` filled in
from the services) and writes ``report.json`` and ``report.html``.

``quick`` runs the bounded subset (:data:`QUICK`, short faults); the full set adds the
rest (:data:`STANDARD`) with faults six times longer.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import string
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from interlock.chaos import _local
from interlock.chaos._experiment import Experiment, parse_experiment
from interlock.chaos._proxy import FaultProxy
from interlock.chaos._record import FaultRecorder
from interlock.chaos._report import write_reports
from interlock.chaos._runner import ExperimentResult, run_experiment
from interlock.chaos._timescale import scale_rules
from interlock.errors import ConfigError

TIME_SCALE = 1 / 60
# in this order: a partition may leave the demo's own orders in doubt for its recovery's
# safety (60 s), which must not be taken for the coordinator experiment's alert
STANDARD = ("coordinator-killed", "redis-partitioned", "redis-killed")
QUICK = ("coordinator-killed", "redis-partitioned")
BANK_SAFETY = 10.0  # s before recovery presumes a silent coordinator dead (> the alert's for:)
_PACKAGE = Path(__file__).resolve().parents[2]  # the directory holding ``interlock``


def experiment_names() -> tuple[str, ...]:
    """The standard experiments shipped with the package."""
    folder = resources.files("interlock.chaos") / "experiments"
    return tuple(sorted(p.name.removesuffix(".toml") for p in folder.iterdir()
                        if p.name.endswith(".toml")))  # fmt: skip


def standard_experiment(name: str, values: dict[str, Any]) -> Experiment:
    """A shipped experiment with its ``$names`` filled in from ``values``."""
    source = resources.files("interlock.chaos") / "experiments" / f"{name}.toml"
    try:
        text = string.Template(source.read_text(encoding="utf-8")).substitute(values)
    except KeyError as exc:
        raise ConfigError(f"{name}.toml needs a value for ${exc.args[0]}") from None
    import tomllib

    return parse_experiment(tomllib.loads(text), f"{name}.toml")


@dataclass
class Stack:
    """The running services; :meth:`values` is what the experiment templates need."""

    work: Path
    redis: _local.Server
    postgres: _local.Server
    mariadb: _local.Server
    proxy: FaultProxy
    demo: _local.Server
    bank: _local.Server
    bank_args: list[str]
    prometheus: _local.Server
    alertmanager: _local.Server | None

    def values(self, quick: bool) -> dict[str, Any]:
        fault = 5 if quick else 30
        bank = [sys.executable, "-m", "interlock.demo.bank"]
        values = {
            "demo": self.demo.url, "demo_instance": f"127.0.0.1:{self.demo.port}",
            "bank_instance": f"127.0.0.1:{self.bank.port}",
            "bank_coordinate": shlex.join([*bank, "coordinate", *self.bank_args]),
            "bank_check": shlex.join([*bank, "check", *self.bank_args]),
            "redis_port": self.redis.port, "redis_link_port": self.proxy.port,
            "redis_pid_command": f"cat {shlex.quote(str(self.redis.dir / 'redis.pid'))}",
            "redis_argv": json.dumps(self.redis.argv),
            "partition": fault, "down": fault, "fire_within": 20, "resolve_within": 20,
            "recover_within": 20 if quick else 40,
        }  # fmt: skip
        for key, value in values.items():
            if key != "redis_argv" and any(c in str(value) for c in '"\\\n'):
                raise ConfigError(f"{key} = {value!r} cannot go into a TOML string")
        return values


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTERLOCK_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_PACKAGE), env.get("PYTHONPATH")]))
    return env


def _banner(log: Path) -> Callable[[], bool]:
    return lambda: "shop on http://" in log.read_text(errors="replace") if log.exists() else False


def _prometheus_config(work: Path, rules: list[Path], targets: list[str],
                       alertmanager: str) -> Path:  # fmt: skip
    scaled = work / "rules"
    scaled.mkdir(exist_ok=True)
    files = []
    for path in rules:
        target = scaled / path.name
        target.write_text(scale_rules(path.read_text(encoding="utf-8"), TIME_SCALE), "utf-8")
        files.append(str(target))
    config: dict[str, Any] = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": files,
        "scrape_configs": [{"job_name": "interlock", "static_configs": [{"targets": targets}]}],
    }
    if alertmanager:
        config["alerting"] = {"alertmanagers": [
            {"static_configs": [{"targets": [alertmanager.removeprefix("http://")]}]}]}
    path = work / "prometheus.yml"
    path.write_text(json.dumps(config, indent=1), encoding="utf-8")  # JSON is YAML
    return path


@contextlib.contextmanager
def local_stack(work: Path, rules: list[Path], runner_port: int,
                say: Callable[[str], None]) -> Iterator[Stack]:  # fmt: skip
    """Start every service of the game day in ``work``; stop them all on the way out."""
    started: list[_local.Server] = []
    proxy: FaultProxy | None = None

    def start(server: _local.Server) -> _local.Server:
        started.append(server)
        return server.start()

    try:
        for name in ("redis", "postgres", "mariadb", "bank", "demo", "prometheus", "am"):
            (work / name).mkdir(parents=True, exist_ok=True)
        say("gameday: starting Redis, PostgreSQL, MariaDB")
        redis = start(_local.redis(work / "redis"))
        databases: dict[str, _local.Server | Exception] = {}

        def database(name: str, make: Callable[[Path], _local.Server]) -> None:
            try:
                databases[name] = make(work / name)
            except Exception as exc:  # re-raised below, on the main thread
                databases[name] = exc

        threads = [threading.Thread(target=database, args=(n, m)) for n, m in
                   (("postgres", _local.postgres), ("mariadb", _local.mariadb))]  # fmt: skip
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        servers = []
        for name in ("postgres", "mariadb"):
            made = databases[name]
            if isinstance(made, Exception):
                raise made
            servers.append(start(made))
        postgres, mariadb = servers
        proxy = FaultProxy("127.0.0.1", redis.port).start()
        env = _env()
        python = [sys.executable, "-m"]
        bank_args = ["--redis", redis.url, "--postgres", postgres.url, "--mysql", mariadb.url,
                     "--namespace", "gameday", "--durability", "relaxed"]  # fmt: skip
        say("gameday: starting the bank app and the demo")
        subprocess.run([*python, "interlock.demo.bank", "setup", *bank_args], env=env,
                       check=True, timeout=60, capture_output=True)  # fmt: skip
        bank_port = _local.free_port()
        bank = _local.Server(
            "bank", [*python, "interlock.demo.bank", "serve", *bank_args, "--port",
                     str(bank_port), "--safety", str(BANK_SAFETY), "--interval", "1"],
            work / "bank", bank_port,
            lambda: _local.http_ok(f"http://127.0.0.1:{bank_port}/metrics"), env=env,
        )  # fmt: skip
        start(bank)
        demo_port = _local.free_port()
        demo = _local.Server(
            "demo", [*python, "interlock.cli", "demo", "--port", str(demo_port), "--duration",
                     "86400", "--rate", "40", "--redis", f"redis://127.0.0.1:{proxy.port}/0",
                     "--log-file", str(work / "demo" / "demo.jsonl")],
            work / "demo", demo_port, lambda: _banner(work / "demo" / "demo.log")(),
            url=f"http://127.0.0.1:{demo_port}", env=env,
        )  # fmt: skip
        start(demo)
        say("gameday: starting Prometheus (rules on a 1/60 time scale) and Alertmanager")
        am = _local.alertmanager(work / "am")
        if am is not None:
            start(am)
        config = _prometheus_config(
            work / "prometheus", rules,
            [f"127.0.0.1:{demo_port}", f"127.0.0.1:{bank_port}", f"127.0.0.1:{runner_port}"],
            am.url if am is not None else "",
        )  # fmt: skip
        prometheus = start(_local.prometheus(work / "prometheus", config))
        yield Stack(work, redis, postgres, mariadb, proxy, demo, bank, bank_args, prometheus,
                    am)  # fmt: skip
    finally:
        if proxy is not None:
            proxy.close()
        for server in reversed(started):
            server.stop()
        _stop_restarted(work / "redis" / "redis.pid", started)


def _stop_restarted(pidfile: Path, started: list[_local.Server]) -> None:
    """A Redis restarted by an experiment is not our child: stop it by its pid file."""
    with contextlib.suppress(OSError, ValueError):
        pid = int(pidfile.read_text().split()[0])
        if pid not in {s.pid for s in started}:
            os.kill(pid, 15)


def run_gameday(out: Path, *, quick: bool, rules: list[Path],
                say: Callable[[str], None] = lambda _: None) -> dict[str, Any]:  # fmt: skip
    """Run the standard set (``quick``: the bounded subset) and write the reports to ``out``.

    Returns:
        the ``report.json`` document, with ``"gameday"``: what ran and how long it took.

    Raises:
        FaultError: a service did not start (its log's tail in the message).
    """
    from prometheus_client import CollectorRegistry, start_http_server

    from interlock.metrics import Metrics

    if not rules:
        raise ConfigError("no rule files: pass --rules DIR (the project's prometheus/rules)")
    began = time.monotonic()
    registry = CollectorRegistry()
    recorder = FaultRecorder(Metrics(registry))
    runner_port = _local.free_port()
    server, thread = start_http_server(runner_port, addr="127.0.0.1", registry=registry)
    results: list[ExperimentResult] = []
    out.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(prefix="interlock-gameday-") as tmp:
            work = Path(tmp)
            work.chmod(0o711)  # PostgreSQL runs as its own user when we are root
            with local_stack(work, rules, runner_port, say) as stack:
                values = stack.values(quick)
                for name in QUICK if quick else STANDARD:
                    exp = standard_experiment(name, values)
                    results.append(run_experiment(
                        exp, prometheus=stack.prometheus.url, recorder=recorder, say=say,
                        proxies={"redis-link": stack.proxy},
                    ))  # fmt: skip
            _keep_logs(work, out)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    document = write_reports(results, out)
    document["gameday"] = {"quick": quick, "experiments": [r.name for r in results],
                           "runtime_s": round(time.monotonic() - began, 1)}  # fmt: skip
    (out / "report.json").write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return document


def _keep_logs(work: Path, out: Path) -> None:
    """The services' logs next to the report, for the findings a person looks into."""
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    for path in work.glob("*/*.log"):
        with contextlib.suppress(OSError):
            (logs / path.name).write_text(_local.tail(path, 400), encoding="utf-8")

