#!/usr/bin/env python3
"""Middleware benchmark: interlock vs starlette-exporter and prometheus-fastapi-instrumentator.

Run:  .venv/bin/python benchmarks/middleware.py [--requests N] [--rounds N] [--seconds S] [--write]

1. Added cost in-process: one Starlette app (a route with a path parameter returning a short
   text), driven over raw ASGI calls, bare and behind each middleware. Rounds interleave the
   variants; the median per-request CPU time of each (all threads of the process) minus
   the bare app's is its added cost.
   interlock runs with metrics only (its request log line disabled), then with the JSON log
   line as ``configure_logging()`` sets it up (background writer; its thread's CPU time
   counts), then with ``configure_logging(queue_size=0)`` (synchronous writes).
2. Requests/s under uvicorn (one worker, no access log) for the bare and the wrapped app
   (metrics + JSON log line to /dev/null), loaded by a keep-alive HTTP/1.1 client written
   with asyncio (no load tool binary is needed), in its own process, for --seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import machine, write_section

HERE = Path(__file__).resolve().parent
LOGGED = "interlock (metrics + log line)"
VARIANTS = [
    "bare",
    "starlette-exporter",
    "prometheus-fastapi-instrumentator",
    "interlock (metrics)",
    LOGGED,
    "interlock (metrics + log line, synchronous writes)",
    "interlock (metrics + lock)",
    "interlock (metrics, OTel SDK)",
    "interlock (metrics + lock, OTel SDK)",
]


def starlette_app() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def item(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    return Starlette(routes=[Route("/items/{item_id}", item)])


def build(variant: str) -> Any:
    """The app of one variant; interlock's log variants get their own logger."""
    from prometheus_client import CollectorRegistry

    app = starlette_app()
    if variant == "starlette-exporter":
        from starlette_exporter import PrometheusMiddleware

        app.add_middleware(PrometheusMiddleware, app_name="bench", prefix="bench_exporter")
    elif variant == "prometheus-fastapi-instrumentator":
        from prometheus_fastapi_instrumentator import Instrumentator

        Instrumentator(registry=CollectorRegistry()).instrument(app)
    elif variant.startswith("interlock"):
        from interlock import AsyncInterlock, InterlockMiddleware, LockRule

        logger = "bench.silent"
        if "log line" in variant:
            logger = "bench.sync" if "synchronous" in variant else "bench.queued"
        traced = {"tracer_provider": otel_provider()} if "OTel SDK" in variant else {}
        interlock = AsyncInterlock("mem://", **traced)
        locks = [LockRule("/items/{item_id}", name="items", key="{item_id}")]
        locks = locks if "+ lock" in variant else []
        app.add_middleware(InterlockMiddleware, interlock=interlock, logger=logger, locks=locks)
    return app


def otel_provider() -> Any:
    """An OpenTelemetry SDK provider whose spans are exported, synchronously, to nowhere:
    the cost of making and ending them (``"interlock (..., OTel SDK)"`` variants; the other
    interlock variants run with opentelemetry-api installed and no SDK configured)."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    class Discard(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(Discard()))
    return provider


def configure_log_sinks() -> list[Any]:
    """Log sinks as ``configure_logging`` makes them, writing to /dev/null: bench.queued with
    its default background writer, bench.sync with ``queue_size=0`` (a StreamHandler)."""
    from interlock.logs import EcsJsonFormatter, stream_handler

    devnull = open(os.devnull, "w")  # noqa: SIM115
    sync = stream_handler(EcsJsonFormatter("bench"), devnull, queue_size=0)
    queued = stream_handler(EcsJsonFormatter("bench"), devnull, queue_size=100_000)
    for name, handler, level in (
        ("bench.silent", None, logging.WARNING),
        ("bench.sync", sync, logging.INFO),
        ("bench.queued", queued, logging.INFO),
    ):
        logger = logging.getLogger(name)
        logger.propagate = False
        logger.setLevel(level)
        if handler is not None:
            logger.addHandler(handler)
    return [sync, queued]


async def drive(app: Any, requests: int) -> float:
    """Seconds per request for ``requests`` sequential raw ASGI calls."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/items/42",
        "raw_path": b"/items/42",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"bench"), (b"user-agent", b"bench/1.0"), (b"accept", b"*/*")],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }
    message = {"type": "http.request", "body": b"", "more_body": False}

    async def receive() -> dict[str, Any]:
        return message

    async def send(_: Any) -> None:
        return None

    started = time.process_time()  # CPU time of this process: other load on the box
    for _ in range(requests):  # stretches wall time, not this
        await app(dict(scope), receive, send)
    return (time.process_time() - started) / requests


def in_process(requests: int, rounds: int) -> dict[str, float]:
    """Median seconds per request of each variant over interleaved rounds."""
    configure_log_sinks()

    async def main() -> dict[str, float]:
        apps = {variant: build(variant) for variant in VARIANTS}
        for app in apps.values():  # build Starlette's middleware stacks, warm caches
            await drive(app, 500)
        samples: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
        for _ in range(rounds):
            for variant, app in apps.items():
                samples[variant].append(await drive(app, requests))
        return {variant: statistics.median(values) for variant, values in samples.items()}

    return asyncio.run(main())


# -- under uvicorn ---------------------------------------------------------------------------

SERVER_APP = """
import logging, os
import sys
sys.path.insert(0, {benchmarks!r})
from middleware import build, configure_log_sinks
configure_log_sinks()
app = build({variant!r})
"""


async def _client(host: str, port: int, connections: int, seconds: float) -> int:
    request = b"GET /items/42 HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench/1.0\r\n\r\n"
    done = 0
    deadline = time.monotonic() + seconds

    async def connection() -> None:
        nonlocal done
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while time.monotonic() < deadline:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                done += 1
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(connections)))
    return done


def load(host: str, port: int, connections: int, seconds: float) -> float:
    """Run the client in this (separate) process; returns requests/s."""
    done = asyncio.run(_client(host, port, connections, seconds))
    return done / seconds


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def under_uvicorn(variant: str, seconds: float, connections: int) -> float:
    module = HERE / "_middleware_server.py"
    module.write_text(SERVER_APP.format(benchmarks=str(HERE), variant=variant))
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "_middleware_server:app", "--port", str(port),
         "--no-access-log", "--log-level", "warning", "--app-dir", str(HERE)],
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        load("127.0.0.1", port, 4, 1.0)  # warm up
        code = (
            f"import sys; sys.path.insert(0, {str(HERE)!r}); from middleware import load; "
            f"print(load('127.0.0.1', {port}, {connections}, {seconds}))"
        )
        command = [sys.executable, "-c", code]
        out = subprocess.run(command, capture_output=True, text=True, check=True)
        return float(out.stdout.strip())
    finally:
        server.terminate()
        server.wait(10)
        module.unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=5000, help="requests per variant per round")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--seconds", type=float, default=5.0, help="load duration under uvicorn")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--write", action="store_true", help="record in benchmarks/RESULTS.md")
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    medians = in_process(args.requests, args.rounds)
    bare = medians["bare"]
    added = {variant: (medians[variant] - bare) * 1e6 for variant in VARIANTS}
    exporter = added["starlette-exporter"]
    rates = {
        variant: under_uvicorn(variant, args.seconds, args.connections)
        for variant in ("bare", LOGGED, "starlette-exporter")
    }
    load_after = os.getloadavg()[0]
    lines = [
        "## Middleware",
        "",
        f"`.venv/bin/python benchmarks/middleware.py --requests {args.requests} --rounds "
        f"{args.rounds} --seconds {args.seconds:g} --write` — {machine()}, {os.cpu_count()} "
        f"cores, all variants in the same run; load average {load_before:.1f} before, "
        f"{load_after:.1f} after (other work on the machine).",
        "",
        f"Added CPU time per request over a bare Starlette app ({bare * 1e6:.1f} µs/request), "
        f"in-process raw ASGI calls, median of {args.rounds} interleaved rounds of "
        f"{args.requests} requests (process CPU time, less disturbed than wall time by other "
        "load on the machine; compare the ratios, not the absolute times):",
        "",
        "| middleware | µs/request | added µs | vs starlette-exporter |",
        "|---|---:|---:|---:|",
    ]
    for variant in VARIANTS:
        ratio = "" if variant == "bare" else f"{added[variant] / exporter:.2f}x"
        extra = "" if variant == "bare" else f"{added[variant]:+.1f}"
        lines.append(f"| {variant} | {medians[variant] * 1e6:.1f} | {extra} | {ratio} |")
    metrics_ratio = added["interlock (metrics)"] / exporter
    logged_ratio = added[LOGGED] / exporter
    lines += [
        "",
        f"Targets: metrics only ≤ 0.5x starlette-exporter's added cost: **{metrics_ratio:.2f}x**"
        f" ({'met' if metrics_ratio <= 0.5 else 'missed'}); metrics plus the JSON log line"
        f" (default `configure_logging()`) ≤ 1.0x: **{logged_ratio:.2f}x**"
        f" ({'met' if logged_ratio <= 1.0 else 'missed'}).",
        "",
        f"Requests/s under uvicorn (1 worker, `--no-access-log`), {args.connections} keep-alive "
        f"connections from an asyncio HTTP/1.1 client in another process, {args.seconds:g} s "
        "(client and server share the 2 cores):",
        "",
        "| app | requests/s | vs bare |",
        "|---|---:|---:|",
    ]
    for variant, rate in rates.items():
        lines.append(f"| {variant} | {rate:,.0f} | {rate / rates['bare']:.2f}x |")
    report = "\n".join(lines)
    print(report)
    if args.write:
        write_section("middleware", report)


if __name__ == "__main__":
    main()
