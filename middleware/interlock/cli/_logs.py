"""``interlock log-config``: print a uvicorn or gunicorn log config (JSON) for the command line.

Registered into the ``interlock`` command by :func:`register`::

    interlock log-config uvicorn|gunicorn [--service NAME] [--level INFO] [--no-access]

``uvicorn app:app --log-config log.json`` and ``gunicorn --log-config-json log.json`` read
the file; the configs are :func:`interlock.logs.uvicorn_log_config` and
:func:`interlock.logs.gunicorn_log_config` (docs/logging.md).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def register(subparsers: Any) -> None:
    """Add the ``log-config`` command to the ``interlock`` command's subparsers."""
    command = subparsers.add_parser(
        "log-config",
        help="print a uvicorn or gunicorn log config that writes ECS JSON lines",
        description="Print a logging dictConfig (JSON) that makes every line of the server "
        "and the app one ECS JSON line on stdout: for `uvicorn --log-config FILE.json` or "
        "`gunicorn --log-config-json FILE.json`.",
    )
    command.add_argument("server", choices=("uvicorn", "gunicorn"))
    command.add_argument("--service", default=None, help="service.name of every line")
    command.add_argument("--environment", default=None, help="service.environment")
    command.add_argument(
        "--level", default="INFO", type=str.upper, choices=_LEVELS, help="log level (INFO)"
    )
    command.add_argument(
        "--no-access",
        action="store_true",
        help="drop the server's access lines (the middleware writes one line per request)",
    )
    command.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from interlock.logs import gunicorn_log_config, uvicorn_log_config

    make = uvicorn_log_config if args.server == "uvicorn" else gunicorn_log_config
    config = make(
        args.service, level=args.level, access=not args.no_access, environment=args.environment
    )
    print(json.dumps(config, indent=2))
    return 0
