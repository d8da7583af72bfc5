"""Fixtures of the observability tests."""

from __future__ import annotations

import pytest

from ._live import LiveRun, live_run


@pytest.fixture(scope="session")
def live(tmp_path_factory: pytest.TempPathFactory) -> LiveRun:
    """One live run of the demo scraped by Prometheus, shared by test_live_*.py."""
    return live_run(tmp_path_factory.mktemp("live"))
