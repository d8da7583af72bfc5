"""``interlock txn``: list, recover and migrate two-phase-commit state from the shell.

Registered into the ``interlock`` command by :func:`register`. Connection settings come from
options or the environment::

    interlock txn [--url URL] [--namespace NS] [--decision-log DSN]
                  [--resource NAME=URL ...] [--durability relaxed] COMMAND

    list      logged decisions and prepared branches of the namespace (what is in doubt)
    recover   resolve them once (as the recovery worker does); exit status 1 when a
              heuristic outcome or an error was found
    migrate   create the PostgreSQL decision table and the MySQL commit-marker tables

Resources are the databases branches were enlisted in, by the resource name used in
``tx.postgres(conn, resource=NAME)`` / ``tx.mysql(conn, resource=NAME)``; the URL scheme
says which kind (``postgresql://`` or ``mysql://``). ``INTERLOCK_TXN_RESOURCES`` holds
the same ``NAME=URL`` items separated by spaces; ``INTERLOCK_DECISION_LOG`` the log DSN.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from typing import Any
from urllib.parse import unquote, urlsplit

from interlock._async.txn.log import safe_url
from interlock._sync.txn.log import MigratableLog
from interlock.errors import ConfigError, DurabilityError, InterlockError

_POSTGRES = ("postgresql", "postgres")
_MYSQL = ("mysql", "mariadb")


def register(subparsers: Any) -> None:
    """Add the ``txn`` command to the ``interlock`` command's subparsers."""
    txn = subparsers.add_parser(
        "txn",
        help="list, recover or migrate two-phase-commit transactions",
        description="Inspect and resolve in-doubt two-phase-commit transactions of one "
        "namespace, or create the tables they need.",
    )
    txn.add_argument("--url", default=None, help="backend URL (INTERLOCK_URL; mem:// default)")
    txn.add_argument("--namespace", default=None, help="namespace (INTERLOCK_NAMESPACE)")
    txn.add_argument(
        "--decision-log",
        default=os.environ.get("INTERLOCK_DECISION_LOG"),
        metavar="DSN",
        help="postgresql:// decision log (INTERLOCK_DECISION_LOG; default: the backend)",
    )
    txn.add_argument(
        "--resource",
        action="append",
        default=[],
        metavar="NAME=URL",
        help="a database holding branches, e.g. orders=postgresql://... or "
        "stock=mysql://user:pw@host:3306/db (repeatable; INTERLOCK_TXN_RESOURCES)",
    )
    txn.add_argument(
        "--durability",
        choices=("strict", "relaxed"),
        default="strict",
        help="refuse (strict) or accept with a warning (relaxed) a decision log that "
        "may lose decisions",
    )
    actions = txn.add_subparsers(dest="txn_command", metavar="COMMAND")
    listing = actions.add_parser("list", help="show logged decisions and prepared branches")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(handler=_list)
    recover = actions.add_parser("recover", help="resolve in-doubt transactions once")
    recover.add_argument(
        "--safety",
        type=_seconds,
        default=60.0,
        metavar="SECONDS",
        help="abort undecided transactions older than this (60; keep it above your "
        "longest transaction timeout)",
    )
    recover.add_argument("--json", action="store_true", help="print JSON")
    recover.set_defaults(handler=_recover)
    migrate = actions.add_parser("migrate", help="create the decision and marker tables")
    migrate.set_defaults(handler=_migrate)
    txn.set_defaults(handler=_help(txn))


def _seconds(text: str) -> float:
    """``--safety``: seconds ≥ 0 (argparse names the flag in its error)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be seconds ≥ 0")
    return value


def _help(parser: argparse.ArgumentParser) -> Any:
    def show(args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    return show


def _resources(args: argparse.Namespace) -> list[tuple[str, str, str]]:
    """``(name, kind, url)`` of every resource from the options and the environment."""
    items = list(args.resource) + os.environ.get("INTERLOCK_TXN_RESOURCES", "").split()
    found = []
    for item in items:
        name, sep, url = item.partition("=")
        scheme = urlsplit(url).scheme
        if not sep or not name:
            raise SystemExit(f"interlock txn: resource {item!r} is not NAME=URL")
        if scheme in _POSTGRES:
            found.append((name, "postgres", url))
        elif scheme in _MYSQL:
            found.append((name, "mysql", url))
        else:
            raise SystemExit(
                f"interlock txn: resource {name!r} has scheme {scheme!r}; use postgresql:// "
                "or mysql://"
            )
    return found


def mysql_params(url: str) -> dict[str, Any]:
    """``pymysql.connect`` keyword arguments from ``mysql://user:password@host:port/db``."""
    parts = urlsplit(url)
    params: dict[str, Any] = {"host": parts.hostname or "127.0.0.1", "port": parts.port or 3306}
    if parts.username:
        params["user"] = unquote(parts.username)
    if parts.password:
        params["password"] = unquote(parts.password)
    if parts.path.strip("/"):
        params["database"] = parts.path.strip("/")
    return params


def _connect_mysql(url: str) -> Any:
    import pymysql

    return pymysql.connect(**mysql_params(url))


def _interlock(args: argparse.Namespace) -> Any:
    from interlock._sync.client import Interlock

    log = args.decision_log
    if log is not None and urlsplit(log).scheme not in _POSTGRES:
        raise ConfigError(
            f"--decision-log {safe_url(log)} is not supported; pass a postgresql:// URL "
            "(INTERLOCK_DECISION_LOG), or leave it out to keep decisions on the backend"
        )

    il = Interlock(
        args.url,
        namespace=args.namespace,
        registry=None,
        decision_log=args.decision_log,
        durability=args.durability,
        recovery=False,  # one pass on demand, not a background worker
    )
    for name, kind, url in _resources(args):
        if kind == "postgres":
            il.transactions.add_postgres(name, url)
        else:
            il.transactions.add_mysql(name, functools.partial(_connect_mysql, url))
    return il


def _run(args: argparse.Namespace, work: Any) -> int:
    try:
        il = _interlock(args)
    except InterlockError as exc:
        print(f"interlock txn: {_explain(exc)}", file=sys.stderr)
        return 2
    try:
        return int(work(il))
    except InterlockError as exc:
        print(f"interlock txn: {_explain(exc)}", file=sys.stderr)
        return 2
    finally:
        il.close()


def _explain(exc: InterlockError) -> str:
    """The error's message, with fixes spelled as this command's flags."""
    if isinstance(exc, DurabilityError):
        return f"{exc.cause}, or pass --durability relaxed to accept the risk"
    return str(exc)


def _list(args: argparse.Namespace) -> int:
    def work(il: Any) -> int:
        listing = il.transactions.in_doubt()
        if args.json:
            print(json.dumps(listing, indent=2))
            return 0
        print(
            f"namespace {il.namespace}: {len(listing['decisions'])} logged decision(s), "
            f"{len(listing['prepared'])} prepared branch(es)"
        )
        for d in listing["decisions"]:
            print(
                f"  decision {d['outcome']:<6} {d['xid']}  {d['name'] or '-'}  "
                f"age {d['age']:.1f}s  branches {' '.join(d['branches']) or '-'}"
            )
        for b in listing["prepared"]:
            print(
                f"  prepared {b['resource']:<10} {b['xid']}:{b['branch']}  "
                f"age {b['age']:.1f}s  decision {b['decision'] or 'none'}"
            )
        for error in listing["errors"]:
            print(f"  error    {error}")
        return 1 if listing["errors"] else 0

    return _run(args, work)


def _recover(args: argparse.Namespace) -> int:
    def work(il: Any) -> int:
        started = time.monotonic()
        report = il.recover(safety=args.safety)
        data = report.as_dict()
        if args.json:
            print(json.dumps(data, indent=2))
        else:
            print(
                f"recovered in {time.monotonic() - started:.2f}s: "
                f"{len(report.committed)} committed, {len(report.aborted)} aborted, "
                f"{len(report.pending)} pending, {len(report.heuristics)} heuristic, "
                f"{len(report.forgotten)} decision(s) forgotten"
            )
            for h in data["heuristics"]:
                print(
                    f"  HEURISTIC {h['xid']}:{h['bqual']}@{h['resource']}: decision "
                    f"{h['decision']}, branch {h['actual']}"
                )
            for error in report.errors:
                print(f"  error {error}")
            for name in report.unregistered:
                print(
                    f"  pass --resource {name}=URL (or INTERLOCK_TXN_RESOURCES) so recovery "
                    f"can finish the branches on {name}"
                )
        return 1 if report.heuristics or report.errors else 0

    return _run(args, work)


def _migrate(args: argparse.Namespace) -> int:
    def work(il: Any) -> int:
        log = il.transactions.log
        if isinstance(log, MigratableLog):
            log.migrate()
            print(f"decision table {log.table} ready")
        else:
            print("decision log on the backend: nothing to create")
        for resource in il.transactions.resources.values():
            if resource.kind == "mysql":
                resource.check()
                print(f"commit-marker table ready on {resource.name}")
        return 0

    return _run(args, work)
