"""Django features that sit on the cache, through ``InterlockCache``: the ``cached_db``
session engine and the template fragment cache (``{% cache %}``), on Redis and ``mem://``,
with the default serializer (msgpack): docs/django.md says both work with it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import caches
from django.core.cache.utils import make_template_fragment_key
from django.db import connection
from django.template import Context, Engine
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from prometheus_client import CollectorRegistry

ENGINE = Engine(libraries={"cache": "django.templatetags.cache"})  # {% load cache %}


@pytest.fixture(params=["mem", "redis"])
def location(request: pytest.FixtureRequest) -> str:
    return "mem://" if request.param == "mem" else str(request.getfixturevalue("redis_url"))


@pytest.fixture
def cache(location: str) -> Iterator[Any]:
    options = {"NAMESPACE": f"dj{uuid.uuid4().hex[:10]}", "REGISTRY": CollectorRegistry()}
    settings = {"default": {"BACKEND": "interlock.django.InterlockCache", "LOCATION": location,
                            "OPTIONS": options}}  # fmt: skip
    with override_settings(
        CACHES=settings,
        SESSION_ENGINE="django.contrib.sessions.backends.cached_db",
        SESSION_CACHE_ALIAS="default",
    ):
        yield caches["default"]


def test_cached_db_sessions_read_the_cache_and_fall_back_to_the_database(cache: Any) -> None:
    from django.contrib.sessions.backends.cached_db import KEY_PREFIX, SessionStore
    from django.contrib.sessions.models import Session

    session = SessionStore()
    session["cart"] = [1, 2]
    session["user"] = "ada"
    session.save()
    key = session.session_key
    assert key and Session.objects.filter(session_key=key).exists()  # written through
    assert cache.get(KEY_PREFIX + key) == {"cart": [1, 2], "user": "ada"}

    with CaptureQueriesContext(connection) as queries:
        again = SessionStore(session_key=key)
        assert again["cart"] == [1, 2]
    assert len(queries) == 0  # served by InterlockCache

    cache.clear()  # e.g. Redis restarted empty: the database still has it
    with CaptureQueriesContext(connection) as queries:
        assert SessionStore(session_key=key)["user"] == "ada"
    assert len(queries) == 1
    assert cache.get(KEY_PREFIX + key) == {"cart": [1, 2], "user": "ada"}  # cached again

    again = SessionStore(session_key=key)
    again["cart"] = [3]
    again.save()
    assert SessionStore(session_key=key)["cart"] == [3]
    again.delete()
    assert cache.get(KEY_PREFIX + key) is None
    assert not Session.objects.filter(session_key=key).exists()
    assert SessionStore(session_key=key).get("cart") is None


def test_template_fragment_cache_stores_fragments_in_interlock(cache: Any) -> None:
    template = ENGINE.from_string(
        "{% load cache %}[{% cache 300 sidebar user %}{{ user }}:{{ count }}{% endcache %}]"
    )

    def render(user: str, count: int) -> str:
        return template.render(Context({"user": user, "count": count}))

    assert render("ada", 1) == "[ada:1]"
    assert render("ada", 2) == "[ada:1]"  # the cached fragment, not the new context
    assert render("bob", 3) == "[bob:3]"  # vary_on: another fragment
    key = make_template_fragment_key("sidebar", ["ada"])
    assert cache.get(key) == "ada:1"  # in InterlockCache, under Django's fragment key
    cache.delete(key)  # invalidation as Django documents it
    assert render("ada", 4) == "[ada:4]"
    assert render("bob", 5) == "[bob:3]"


def test_template_fragment_cache_escapes_before_storing(cache: Any) -> None:
    # The stored fragment is rendered output: served again, it is not escaped twice.
    template = ENGINE.from_string("{% load cache %}{% cache 300 note %}{{ text }}{% endcache %}")
    first = template.render(Context({"text": "<b>&</b>"}))
    assert first == "&lt;b&gt;&amp;&lt;/b&gt;"
    assert template.render(Context({"text": "other"})) == first
