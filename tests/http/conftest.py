"""Fixtures of the middleware tests: fresh interlock instances and log capture.

Async tests are plain functions that call :func:`asyncio.run`, like the rest of the suite;
async facades are built inside the running loop with the ``make_ail`` factory.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from interlock import AsyncInterlock, Interlock
from interlock.testing import LogCapture, capture_logs


@pytest.fixture
def namespace() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def make_ail(namespace: str) -> Callable[..., AsyncInterlock]:
    """Build an async facade (inside the test's event loop) on a namespace of the test."""

    def make(url: str = "mem://", **options: Any) -> AsyncInterlock:
        options.setdefault("lock_timeout", 2.0)
        return AsyncInterlock(url, namespace=namespace, **options)

    return make


@pytest.fixture
def il(namespace: str) -> Iterator[Interlock]:
    """A blocking facade on the embedded backend, with its own registry and namespace."""
    with Interlock("mem://", namespace=namespace, lock_timeout=2.0) as instance:
        yield instance


@pytest.fixture
def logs() -> Iterator[LogCapture]:
    """Every record of every logger, as ECS JSON lines."""
    with capture_logs("", logging.INFO) as capture:
        yield capture
