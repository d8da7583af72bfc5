"""Runs the demo: the shop under uvicorn, the load generator, the live summary."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from interlock import AsyncInterlock, DurabilityError
from interlock.demo.shop import create_app, restock_all
from interlock.demo.summary import Snapshot, render
from interlock.demo.tracing import DemoTracing
from interlock.demo.tracing import configure as configure_tracing
from interlock.logs import configure_logging, unconfigure_logging

DEMO_NAMESPACE = "demo"


def top_command(url: str) -> str:
    """The exact ``interlock top`` command that shows the demo's locks."""
    if url.startswith("mem://"):
        return "shown in this process only (mem://); with --redis, interlock top shows them"
    return f"interlock top --url {url} --namespace {DEMO_NAMESPACE}"


@dataclass
class DemoOptions:
    """The ``interlock demo`` options.

    Attributes:
        host, port: where the shop listens (port 0: any free port).
        duration: seconds to run; ``None`` until Ctrl-C.
        load: run the built-in load generator.
        redis: backend URL; ``None`` uses the embedded ``mem://``.
        log_file: JSON request logs: ``"auto"`` (stdout unless it is a terminal),
            ``"-"`` (stdout), ``"none"``, or a file path.
        rate: requests/s the load generator aims at.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    duration: float | None = None
    load: bool = True
    redis: str | None = None
    log_file: str = "auto"
    rate: float = 150.0


def run(options: DemoOptions, out: IO[str] | None = None) -> int:
    """Run the demo until ``duration`` passes or Ctrl-C; returns the exit status."""
    out = out or sys.stderr
    try:
        return asyncio.run(_main(options, out))
    except KeyboardInterrupt:  # a second Ctrl-C while shutting down
        print("\ninterrupted", file=out)
        return 0


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(512)
    sock.set_inheritable(True)
    return sock


@contextlib.contextmanager
def _logging(target: str, ail: AsyncInterlock) -> Iterator[str]:
    if target == "auto":
        target = "-" if not sys.stdout.isatty() else "none"
    # the load generator's own HTTP client is not the shop: keep its request logs out
    logging.getLogger("httpx").setLevel(logging.WARNING)
    stream: IO[str] | None = None
    if target == "none":
        root = logging.getLogger()
        quiet = logging.NullHandler()
        root.addHandler(quiet)
        try:
            yield "off (pass --log-file FILE or - for stdout)"
        finally:
            root.removeHandler(quiet)
        return
    if target == "-":
        configure_logging("interlock-demo", stream=sys.stdout, interlock=ail)
        shown = "stdout"
    else:
        stream = open(target, "a", encoding="utf-8")  # noqa: SIM115
        configure_logging("interlock-demo", stream=stream, interlock=ail)
        shown = target
    try:
        yield shown
    finally:
        unconfigure_logging()
        if stream is not None:
            stream.close()


async def _main(options: DemoOptions, out: IO[str]) -> int:
    url = options.redis or "mem://"
    try:
        sock = _listen(options.host, options.port)
    except OSError as exc:
        where = f"{options.host}:{options.port}"
        print(f"interlock demo: cannot listen on {where}: {exc.strerror}; try --port", file=out)
        return 1
    durability = "strict"
    try:
        async with AsyncInterlock(url, namespace=DEMO_NAMESPACE) as probe:
            await restock_all(probe)
    except DurabilityError:
        durability = "relaxed"  # a demo may run on a Redis without AOF; say so
        print(f"  note: {url} has no durable AOF; 2PC decisions use durability='relaxed'",
              file=out)  # fmt: skip
    except Exception as exc:
        sock.close()
        print(f"interlock demo: backend {url} is not usable: {exc}", file=out)
        return 1
    tracing, tracing_shown = configure_tracing()
    try:
        return await _serve(options, out, sock, url, durability, tracing, tracing_shown)
    finally:
        if tracing is not None:
            await asyncio.to_thread(tracing.shutdown)  # exports what is buffered


async def _serve(
    options: DemoOptions,
    out: IO[str],
    sock: socket.socket,
    url: str,
    durability: str,
    tracing: DemoTracing | None,
    tracing_shown: str,
) -> int:
    import uvicorn

    from interlock.demo.load import LoadGenerator

    port = sock.getsockname()[1]
    provider = tracing.provider if tracing is not None else None
    async with AsyncInterlock(
        url, namespace=DEMO_NAMESPACE, durability=durability, tracer_provider=provider
    ) as ail:
        with _logging(options.log_file, ail) as log_target:
            await restock_all(ail)
            app = create_app(ail)
            config = uvicorn.Config(
                tracing.wrap(app) if tracing is not None else app,
                log_config=None,
                access_log=False,
                lifespan="off",
                timeout_graceful_shutdown=3,
            )
            server = _QuietServer(config)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(signum, stop.set)
            serving = asyncio.create_task(server.serve(sockets=[sock]))
            while not server.started and not serving.done():
                await asyncio.sleep(0.02)
            if serving.done():
                print("interlock demo: the server did not start", file=out)
                return 1
            shown_host = "127.0.0.1" if options.host in ("0.0.0.0", "::", "") else options.host
            base = f"http://{shown_host}:{port}"
            load = LoadGenerator(base, rate=options.rate) if options.load else None
            loading = asyncio.create_task(load.run()) if load else None
            print(
                f"interlock demo: shop on {base}  (metrics {base}/metrics, backend {url},"
                f" namespace {DEMO_NAMESPACE})\n"
                f"  load generator: {'on' if load else 'off'}, JSON request logs: {log_target}\n"
                f"  tracing: {tracing_shown}\n"
                f"  its locks: {top_command(url)}\n"
                "  Ctrl-C to stop",
                file=out,
                flush=True,
            )
            try:
                await _summarise(ail, stop, options.duration, out)
            finally:
                if load is not None and loading is not None:
                    load.stop()
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(loading, 5)
                server.should_exit = True
                await serving
                for signum in (signal.SIGINT, signal.SIGTERM):
                    with contextlib.suppress(NotImplementedError, RuntimeError):
                        loop.remove_signal_handler(signum)
            if load is not None:
                statuses = ", ".join(f"{k}: {v}" for k, v in sorted(load.statuses.items()))
                print(f"  load generator sent {load.sent} requests ({statuses})", file=out)
    print("interlock demo: stopped", file=out, flush=True)
    return 0


async def _summarise(
    ail: AsyncInterlock, stop: asyncio.Event, duration: float | None, out: IO[str]
) -> None:
    tty = out.isatty()
    started = time.monotonic()
    first = previous = Snapshot.read(ail.registry)
    last_time = started
    drawn = 0
    every = 1.0 if tty else 5.0
    while not stop.is_set():
        remaining = None if duration is None else duration - (time.monotonic() - started)
        if remaining is not None and remaining <= 0:
            break
        wait = every if remaining is None else min(every, remaining)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), wait)
        now = time.monotonic()
        current = Snapshot.read(ail.registry)
        lines = [f"[{now - started:6.1f}s]", *render(previous, current, now - last_time)]
        if tty:
            if drawn:
                out.write(f"\x1b[{drawn}F\x1b[J")
            out.write("\n".join(lines) + "\n")
            drawn = len(lines)
        else:
            out.write(" | ".join(line.strip() for line in lines) + "\n")
        out.flush()
        previous, last_time = current, now
    total = Snapshot.read(ail.registry)
    elapsed = time.monotonic() - started
    out.write(f"\nover {elapsed:.1f}s:\n" + "\n".join(render(first, total, elapsed)) + "\n")
    out.flush()


class _QuietServer:
    """uvicorn's server without its signal handling (the demo handles Ctrl-C itself)."""

    def __new__(cls, config: Any) -> Any:
        import uvicorn

        class Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                yield

        return Server(config)
