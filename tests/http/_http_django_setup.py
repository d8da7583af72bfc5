"""Django settings of the middleware tests, configured once per test process."""

from __future__ import annotations

import django
from django.conf import settings


def configure() -> None:
    """Configure Django for the test URLconf (``_http_django_urls``) if nobody did yet."""
    if settings.configured:
        return
    settings.configure(
        ROOT_URLCONF="_http_django_urls",
        ALLOWED_HOSTS=["*"],
        SECRET_KEY="interlock-tests",
        DEBUG=False,
        MIDDLEWARE=[],
        INSTALLED_APPS=[],
        USE_TZ=True,
    )
    django.setup()
