"""``interlock chaos``: run chaos experiments against your services; scale rule files.

Registered into the ``interlock`` command by :func:`register`::

    interlock chaos run EXPERIMENT.toml [...] [--prometheus URL] [--alertmanager URL]
                        [--out DIR] [--log-file PATH|-|none] [--metrics-port PORT]
    interlock chaos scale-rules FACTOR RULES.yml [...] --out DIR
    interlock chaos gameday --out DIR [--quick] [--rules DIR]

``run`` and ``gameday`` exit 0 only when every experiment passed, 1 when one failed or
was aborted (or, for ``gameday``, a service did not start), 2 on an invalid experiment.
Formats and safety: docs/chaos.md.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``chaos`` command to the ``interlock`` command's subparsers."""
    chaos = subparsers.add_parser(
        "chaos",
        help="run chaos experiments: inject real faults, check alerts and recovery",
        description="Inject real faults (processes, network, servers) as a declarative "
        "experiment says, check that the expected alerts fire and resolve, that invariants "
        "hold and that the steady state comes back. See docs/chaos.md.",
    )
    commands = chaos.add_subparsers(dest="chaos_command", metavar="COMMAND", required=True)
    run = commands.add_parser("run", help="run experiments and write report.json/.html")
    run.add_argument("experiments", nargs="+", metavar="EXPERIMENT", help="TOML files")
    run.add_argument("--prometheus", default="", metavar="URL",
                     help="Prometheus for PromQL probes and alerts (overrides the file)")
    run.add_argument("--alertmanager", default="", metavar="URL",
                     help="read alerts from Alertmanager's /api/v2/alerts instead")
    run.add_argument("--out", default="chaos-report", metavar="DIR",
                     help="where report.json and report.html go (chaos-report)")
    run.add_argument("--log-file", default="-", metavar="PATH",
                     help="event lines (ECS JSON): a file, '-' for stdout, 'none'")
    run.add_argument("--metrics-port", type=int, default=None, metavar="PORT",
                     help="serve interlock_chaos_injected_total on this port for Prometheus")
    run.set_defaults(handler=_run)
    scale = commands.add_parser(
        "scale-rules", help="write time-scaled copies of Prometheus rule files",
        description="Multiply every duration of the rules (windows, offsets, for:) by "
        "FACTOR, e.g. 0.0166667 (a minute becomes a second), for test Prometheus servers.",
    )  # fmt: skip
    scale.add_argument("factor", type=float)
    scale.add_argument("rules", nargs="+", metavar="RULES")
    scale.add_argument("--out", required=True, metavar="DIR")
    scale.set_defaults(handler=_scale)
    gameday = commands.add_parser(
        "gameday", help="run the standard experiments on throwaway local services",
        description="Start Redis, PostgreSQL, MariaDB, the demo under load, the 2PC bank "
        "app, Prometheus (the project's rules on a 1/60 time scale) and Alertmanager on "
        "free loopback ports, run the standard experiments and write DIR/report.json and "
        "DIR/report.html. See docs/chaos.md.",
    )  # fmt: skip
    gameday.add_argument("--out", required=True, metavar="DIR")
    gameday.add_argument("--quick", action="store_true",
                         help="the bounded subset with short faults (about a minute)")
    gameday.add_argument("--rules", default="prometheus/rules", metavar="DIR",
                         help="the Prometheus rule files to scale and load (prometheus/rules)")
    gameday.add_argument("--log-file", default="", metavar="PATH",
                         help="event lines (ECS JSON): default DIR/events.jsonl, '-', 'none'")
    gameday.set_defaults(handler=_gameday)


@contextlib.contextmanager
def _logging(target: str) -> Iterator[None]:
    if target == "none":
        yield
        return
    from interlock.logs import configure_logging, unconfigure_logging

    with contextlib.ExitStack() as stack:
        stream = sys.stdout if target == "-" else stack.enter_context(
            open(target, "a", encoding="utf-8")
        )  # fmt: skip
        configure_logging("interlock-chaos", stream=stream)
        try:
            yield
        finally:
            unconfigure_logging()


def _run(args: argparse.Namespace) -> int:
    from prometheus_client import CollectorRegistry, start_http_server

    from interlock.chaos import FaultRecorder, load_experiment, run_experiment, write_reports
    from interlock.errors import ConfigError
    from interlock.metrics import Metrics

    try:
        experiments = [load_experiment(path) for path in args.experiments]
    except ConfigError as exc:
        print(f"interlock chaos: {exc}", file=sys.stderr)
        return 2
    registry = CollectorRegistry()
    recorder = FaultRecorder(Metrics(registry))
    if args.metrics_port is not None:
        start_http_server(args.metrics_port, addr="127.0.0.1", registry=registry)
    results = []
    with _logging(args.log_file):
        for exp in experiments:
            try:
                results.append(run_experiment(
                    exp, prometheus=args.prometheus, alertmanager=args.alertmanager,
                    recorder=recorder, say=lambda text: print(text, file=sys.stderr),
                ))  # fmt: skip
            except ConfigError as exc:
                print(f"interlock chaos: {exc}", file=sys.stderr)
                return 2
    document = write_reports(results, Path(args.out))
    for summary in document["experiments"]:
        verdict = "passed" if summary["passed"] else "FAILED"
        print(f"{verdict}: {summary['name']} (detect {summary['time_to_detect_s']} s, "
              f"recover {summary['time_to_recover_s']} s)", file=sys.stderr)  # fmt: skip
    print(f"report: {Path(args.out) / 'report.json'}, {Path(args.out) / 'report.html'}",
          file=sys.stderr)
    return 0 if document["passed"] else 1


def _scale(args: argparse.Namespace) -> int:
    from interlock.chaos import scale_rules

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in args.rules:
        path = Path(name)
        (out / path.name).write_text(
            scale_rules(path.read_text(encoding="utf-8"), args.factor), encoding="utf-8"
        )
    return 0


def _gameday(args: argparse.Namespace) -> int:
    from interlock.chaos import FaultError, run_gameday
    from interlock.errors import ConfigError

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rules = sorted(Path(args.rules).glob("*.yml"))
    if not rules:
        print(f"interlock chaos gameday: no *.yml rule files in {args.rules}; run it from the "
              "repository root or pass --rules DIR", file=sys.stderr)  # fmt: skip
        return 2
    say = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    try:
        with _logging(args.log_file or str(out / "events.jsonl")):
            document = run_gameday(out, quick=args.quick, rules=rules, say=say)
    except (FaultError, ConfigError) as exc:
        print(f"interlock chaos gameday: {exc}", file=sys.stderr)
        return 1
    for summary in document["experiments"]:
        verdict = "passed" if summary["passed"] else "FAILED"
        print(f"{verdict}: {summary['name']} (detect {summary['time_to_detect_s']} s, "
              f"recover {summary['time_to_recover_s']} s)", file=sys.stderr)  # fmt: skip
    print(f"gameday: {document['gameday']['runtime_s']} s; report: {out / 'report.json'}, "
          f"{out / 'report.html'}", file=sys.stderr)  # fmt: skip
    return 0 if document["passed"] else 1
