"""Route templates from real Flask and Django apps; WSGI semantics through them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from _http_django_setup import configure
from flask import Blueprint, Flask, Response, request, stream_with_context

from interlock import (
    AsyncInterlock,
    Interlock,
    InterlockMiddleware,
    InterlockWSGIMiddleware,
    LockRule,
)
from interlock.testing import LogCapture, asgi_request, metric_value, wsgi_request

configure()

WITHDRAW = LockRule("/accounts/{account_id}/withdraw", name="account", key="{account_id}")


def flask_app(il: Interlock) -> Flask:
    app = Flask(__name__)
    shop = Blueprint("shop", __name__, url_prefix="/shop")

    @shop.get("/items/<int:item_id>")
    def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    @app.get("/users/<name>")
    def user(name: str) -> str:
        return name

    @app.post("/accounts/<int:account_id>/withdraw")
    def withdraw(account_id: int) -> dict[str, Any]:
        tools = request.environ["interlock"]
        return {
            "lease": tools.lease is not None,
            "held": il.lock_info("account", account_id) is not None,
        }

    @app.get("/stream")
    def stream() -> Response:
        def chunks() -> Any:
            for i in range(3):
                yield f"{i}\n"

        return Response(stream_with_context(chunks()))

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("flask handler failed")

    app.register_blueprint(shop)
    app.wsgi_app = InterlockWSGIMiddleware(app.wsgi_app, interlock=il, locks=[WITHDRAW])  # type: ignore[method-assign]
    return app


def test_flask_url_rules_are_the_route_labels(il: Interlock, logs: LogCapture) -> None:
    app = flask_app(il)
    assert wsgi_request(app, "GET", "/shop/items/4").json() == {"id": 4}
    assert wsgi_request(app, "GET", "/users/bob").status == 200
    assert wsgi_request(app, "GET", "/users/bob/x").status == 404
    assert wsgi_request(app, "DELETE", "/users/bob").status == 405
    assert wsgi_request(app, "GET", "/stream").body == b"0\n1\n2\n"
    assert wsgi_request(app, "GET", "/boom").status == 500  # Flask turns it into a 500 page
    held = wsgi_request(app, "POST", "/accounts/3/withdraw").json()
    assert held == {"lease": True, "held": True}
    labels = [
        (r["url.path"], r["interlock.http.route"], r["http.response.status_code"])
        for r in logs.requests()
    ]
    assert labels == [
        ("/shop/items/4", "/shop/items/<int:item_id>", 200),
        ("/users/bob", "/users/<name>", 200),
        ("/users/bob/x", "__unmatched__", 404),
        ("/users/bob", "__unmatched__", 405),  # Werkzeug keeps no rule for a 405
        ("/stream", "/stream", 200),
        ("/boom", "/boom", 500),
        ("/accounts/3/withdraw", "/accounts/{account_id}/withdraw", 200),  # the rule's
    ]
    assert il.lock_info("account", 3) is None
    assert metric_value(il, "interlock_http_requests_total", route="/users/<name>") == 1
    metrics = wsgi_request(app, "GET", "/metrics")
    assert b'route="/shop/items/<int:item_id>"' in metrics.body


def test_django_wsgi_resolver_routes(il: Interlock, logs: LogCapture) -> None:
    from django.core.wsgi import get_wsgi_application

    app = InterlockWSGIMiddleware(get_wsgi_application(), interlock=il, locks=[WITHDRAW])
    assert wsgi_request(app, "GET", "/api/v1/items/5/").json() == {"pk": 5}
    assert wsgi_request(app, "GET", "/api/v1/articles/2024/").body == b"2024"
    assert wsgi_request(app, "GET", "/nothing/here").status == 404
    assert wsgi_request(app, "POST", "/accounts/2/withdraw").json()["lease"] is True
    labels = {r["url.path"]: r["interlock.http.route"] for r in logs.requests()}
    assert labels == {
        "/api/v1/items/5/": "/api/v1/items/<int:pk>/",
        "/api/v1/articles/2024/": "/api/v1/articles/(?P<year>[0-9]{4})/$",
        "/nothing/here": "__unmatched__",
        "/accounts/2/withdraw": "/accounts/{account_id}/withdraw",  # the lock rule's
    }


@pytest.mark.anyio
async def test_django_asgi_resolver_routes(
    make_ail: Callable[..., AsyncInterlock], logs: LogCapture
) -> None:
    from django.core.asgi import get_asgi_application

    async with make_ail() as ail:
        app = InterlockMiddleware(get_asgi_application(), interlock=ail, locks=[WITHDRAW])
        assert (await asgi_request(app, "GET", "/api/v1/items/9/")).json() == {"pk": 9}
        assert (await asgi_request(app, "POST", "/accounts/4/withdraw")).json()["lease"] is True
        assert (await asgi_request(app, "GET", "/nope")).status == 404
        labels = {r["url.path"]: r["interlock.http.route"] for r in logs.requests()}
        assert labels == {
            "/api/v1/items/9/": "/api/v1/items/<int:pk>/",
            "/accounts/4/withdraw": "/accounts/{account_id}/withdraw",
            "/nope": "__unmatched__",
        }
