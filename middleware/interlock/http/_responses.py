"""Responses the middleware writes itself: RFC 9457 problems and the metrics page."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from typing import Any

PROBLEM_BASE = "urn:interlock:problem:"


@dataclass(slots=True)
class Problem:
    """A complete RFC 9457 ``application/problem+json`` response."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


def problem(
    status: int,
    kind: str,
    title: str,
    detail: str,
    *,
    request_id: str,
    retry_after: float | None = None,
    **extra: Any,
) -> Problem:
    """Build a problem response of type ``urn:interlock:problem:<kind>``."""
    document = {
        "type": PROBLEM_BASE + kind,
        "title": title,
        "status": status,
        "detail": detail,
        "request_id": request_id,
        **extra,
    }
    body = json.dumps(document, ensure_ascii=True).encode()
    headers = [
        ("content-type", "application/problem+json"),
        ("content-length", str(len(body))),
        ("cache-control", "no-store"),
    ]
    if retry_after is not None:
        headers.append(("retry-after", str(max(0, math.ceil(retry_after)))))
    return Problem(status, headers, body)


def internal_error(request_id: str) -> Problem:
    """The 500 the middleware answers when the application raised before responding."""
    return problem(
        500,
        "internal-error",
        "Internal Server Error",
        "the application failed before answering; the request id finds its log line",
        request_id=request_id,
    )


def multiprocess_mode() -> bool:
    """True when prometheus-client runs in multiprocess mode (gunicorn, uvicorn workers)."""
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def exposition(registry: Any, accept: str | None, multiprocess: bool) -> tuple[bytes, str]:
    """The metrics page and its content type, negotiated from ``Accept``.

    OpenMetrics (with exemplars) when the scraper asks for it, else the Prometheus text
    format. In multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``) the page aggregates every
    worker's files instead of reading ``registry``.
    """
    from prometheus_client import CollectorRegistry
    from prometheus_client.exposition import choose_encoder

    if multiprocess:
        from prometheus_client.multiprocess import MultiProcessCollector

        from interlock.metrics import drop_dead_processes

        drop_dead_processes()  # no server hook needed (uvicorn --workers has none)
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    elif registry is None:
        registry = CollectorRegistry()  # the instance registers nowhere: nothing to show
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type
