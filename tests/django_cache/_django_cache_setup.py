"""Django settings for the cache backend tests (a superset of tests/http's, so both
folders can run in one process): Django's ``cache`` test app, ``django.contrib.sessions``
(the ``cached_db`` session engine's table), an in-memory SQLite test database for both,
and a placeholder ``CACHES`` that each test class overrides."""

from __future__ import annotations

import sys

import django
from _django_suite import suite_dir
from django.conf import settings

_state: dict[str, bool] = {}


def configure() -> None:
    """Configure Django (once) and put Django's ``cache`` test package on the path."""
    path = str(suite_dir())
    if path not in sys.path:
        sys.path.insert(0, path)
    if not settings.configured:
        settings.configure(
            ROOT_URLCONF="_http_django_urls",
            ALLOWED_HOSTS=["*"],
            SECRET_KEY="interlock-tests",
            DEBUG=False,
            MIDDLEWARE=[],
            INSTALLED_APPS=["cache", "django.contrib.sessions"],
            USE_TZ=True,
            DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
            CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
            DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        )
        django.setup()


def databases() -> None:
    """Create the test database (Django's test runner does this) once per process."""
    if _state.get("databases"):
        return
    from django.test.utils import setup_databases, setup_test_environment

    setup_test_environment()
    setup_databases(verbosity=0, interactive=False)
    _state["databases"] = True
