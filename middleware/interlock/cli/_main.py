"""The ``interlock`` command's parser and entry point (subcommands: see :mod:`interlock.cli`)."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from interlock import __version__

# each adds its subcommand with ``register(subparsers)``
_COMMAND_MODULES = (
    "interlock.cli._chaos",
    "interlock.cli._check",
    "interlock.cli._logs",
    "interlock.cli._top",
    "interlock.cli._txn",
)


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number of seconds")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a port number (0-65535)")
    return value


def _demo(args: argparse.Namespace) -> int:
    try:
        from interlock.demo import DemoOptions, run
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        print(f"interlock demo needs the demo extra: pip install 'interlock[demo]' ({exc})")
        return 2
    options = DemoOptions(
        host=args.host,
        port=args.port,
        duration=args.duration,
        load=not args.no_load,
        redis=args.redis,
        log_file=args.log_file,
        rate=args.rate,
    )
    return run(options)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="interlock",
        description="Observable distributed locks, 2PC transactions and caching for web apps.",
    )
    parser.add_argument("--version", action="version", version=f"interlock {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="run the example shop with a load generator and a live summary",
        description="Run an example shop (Starlette) that uses locks, the response cache and "
        "two-phase commit, drive it with a built-in load generator and show a live summary. "
        "Metrics are served at /metrics.",
    )
    demo.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    demo.add_argument("--port", type=_port, default=8000, help="port to listen on (8000)")
    demo.add_argument(
        "--duration", type=_positive, default=None, help="stop after SECONDS (default: Ctrl-C)"
    )
    demo.add_argument("--no-load", action="store_true", help="serve only; no load generator")
    demo.add_argument(
        "--redis", metavar="URL", default=None, help="backend URL (default: embedded mem://)"
    )
    demo.add_argument(
        "--log-file",
        default="auto",
        metavar="PATH",
        help="JSON request logs: a file, '-' for stdout, 'none' (default: stdout unless "
        "it is a terminal)",
    )
    demo.add_argument("--rate", type=_positive, default=150.0, help="load in requests/s (150)")
    demo.set_defaults(handler=_demo)
    for module in _COMMAND_MODULES:
        try:
            command = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
        else:
            command.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``interlock`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    return int(handler(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
