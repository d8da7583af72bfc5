"""Django is configured before the test modules import Django's cache tests."""

from __future__ import annotations

import pytest
from _django_cache_setup import configure, databases

configure()


@pytest.fixture(scope="session", autouse=True)
def _django_test_database() -> None:
    databases()
