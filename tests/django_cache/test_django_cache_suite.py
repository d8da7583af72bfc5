"""Django's own ``BaseCacheTests`` (tests/cache/tests.py of the installed Django version)
against ``interlock.django.InterlockCache``, on a real Redis and on ``mem://``.

Django's test code is imported, not copied (``_django_suite`` fetches it). Excluded, as
for Django's own Redis and memcached backends: the culling tests (``MAX_ENTRIES`` /
``CULL_FREQUENCY`` belong to the locmem, file and database backends; Redis evicts by its
``maxmemory-policy``). See docs/django.md.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from cache.tests import BaseCacheTests, caches_setting_for_tests
from django.test import TestCase, override_settings
from prometheus_client import CollectorRegistry

EXCLUDED = {
    "test_cull": "MAX_ENTRIES culling: locmem/file/db backends only",
    "test_zero_cull": "CULL_FREQUENCY culling: locmem/file/db backends only",
    "test_cull_delete_when_store_empty": "MAX_ENTRIES culling: locmem/file/db backends only",
}
HMAC_KEY = "interlock-django-cache-tests-key"


def interlock_caches(location: str) -> dict[str, Any]:
    options = {
        "SERIALIZER": "pickle",
        "HMAC_KEY": HMAC_KEY,
        "NAMESPACE": f"dj{uuid.uuid4().hex[:10]}",
        "REGISTRY": CollectorRegistry(),
    }
    return caches_setting_for_tests(  # type: ignore[no-any-return]
        BACKEND="interlock.django.InterlockCache",
        LOCATION=location,
        OPTIONS=options,
        exclude={"cull", "zero_cull"},
    )


class _InterlockCacheTests(BaseCacheTests):
    location_fixture = ""

    @pytest.fixture(autouse=True)
    def _interlock_caches(self, request: pytest.FixtureRequest) -> Iterator[None]:
        location = (
            "mem://"
            if not self.location_fixture
            else request.getfixturevalue(self.location_fixture)
        )
        with override_settings(CACHES=interlock_caches(location)):
            yield


for _name in EXCLUDED:
    setattr(_InterlockCacheTests, _name, None)


class TestInterlockCacheRedis(_InterlockCacheTests, TestCase):
    location_fixture = "redis_url"


class TestInterlockCacheMem(_InterlockCacheTests, TestCase):
    location_fixture = ""
