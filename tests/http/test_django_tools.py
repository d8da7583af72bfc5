"""``interlock.django.tools(request)``: sync and async Django views, under ASGI and WSGI.

Under ASGI a sync view (Django's default) got the async tools, so
``tools.transaction(...).postgres(conn)`` returned a coroutine (``'coroutine' object has
no attribute 'execute'``), and the tools sat at ``request.scope`` instead of
``request.META``. Each of the four combinations now takes a lock, loads through the
cache and commits a request transaction over Redis and PostgreSQL (issue 11, item 7).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from _http_django_setup import configure
from _http_txn_support import orders_table, prepared, rows

from interlock import AsyncInterlock, Interlock, InterlockMiddleware, InterlockWSGIMiddleware
from interlock.errors import ConfigError
from interlock.testing import LogCapture, asgi_request, wsgi_request

configure()
import _http_django_urls  # noqa: E402  (after the settings)

pytestmark = [pytest.mark.redis, pytest.mark.postgres]


@pytest.fixture
def state(postgres_server: Any) -> Iterator[dict[str, Any]]:
    with orders_table(postgres_server.dsn) as table, psycopg.connect(postgres_server.dsn) as pg:
        _http_django_urls.STATE.update(pg=pg, table=table)
        try:
            yield _http_django_urls.STATE
        finally:
            _http_django_urls.STATE.clear()


def _check(lines: list[dict[str, Any]], bodies: list[dict[str, Any]], dsn: str, state: Any) -> None:
    assert [b["value"] for b in bodies] == ["loaded-1", "loaded-2"]
    assert all(isinstance(b["fence"], int) for b in bodies)
    assert sorted(rows(dsn, state["table"])) == [("o1", "sync"), ("o2", "async")]
    by_id = {line["http.request.id"]: line for line in lines}
    for body in bodies:
        line = by_id[body["request_id"]]
        assert line["http.response.status_code"] == 200
        assert line["interlock.txn.outcome"] == "committed", line


@pytest.mark.anyio
async def test_django_asgi_sync_and_async_views(
    redis_url: str,
    namespace: str,
    postgres_server: Any,
    state: dict[str, Any],
    logs: LogCapture,
) -> None:
    from django.core.asgi import get_asgi_application

    async def main() -> list[dict[str, Any]]:
        apg = await psycopg.AsyncConnection.connect(postgres_server.dsn)
        state.update(apg=apg, asgi=True)
        try:
            async with AsyncInterlock(redis_url, namespace=namespace, durability="relaxed") as ail:
                app = InterlockMiddleware(get_asgi_application(), interlock=ail)
                bodies = []
                for path in ("/orders/sync/1", "/orders/async/2"):
                    response = await asgi_request(app, "GET", path)
                    assert response.status == 200, response.body
                    bodies.append(response.json())
                return bodies
        finally:
            await apg.close()

    bodies = await main()
    _check(logs.requests(), bodies, postgres_server.dsn, state)
    assert prepared(postgres_server.dsn, namespace) == []


def test_django_wsgi_sync_and_async_views(
    redis_url: str,
    namespace: str,
    postgres_server: Any,
    state: dict[str, Any],
    logs: LogCapture,
) -> None:
    from django.core.wsgi import get_wsgi_application

    state.update(asgi=False)
    with Interlock(redis_url, namespace=namespace, durability="relaxed") as il:
        app = InterlockWSGIMiddleware(get_wsgi_application(), interlock=il)
        bodies = []
        for path in ("/orders/sync/1", "/orders/async/2"):
            response = wsgi_request(app, "GET", path)
            assert response.status == 200, response.body
            bodies.append(response.json())
    _check(logs.requests(), bodies, postgres_server.dsn, state)
    assert prepared(postgres_server.dsn, namespace) == []


def test_tools_without_the_middleware_names_the_fix() -> None:
    from django.test import RequestFactory

    from interlock.django import tools

    with pytest.raises(ConfigError, match="InterlockMiddleware"):
        tools(RequestFactory().get("/"))
