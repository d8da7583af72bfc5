"""Lock rules: held around the handler, 423 + Retry-After on timeout, 503 when Redis is down."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable
from typing import Any

import pytest

from interlock import (
    AsyncInterlock,
    Interlock,
    InterlockMiddleware,
    InterlockWSGIMiddleware,
    LockRule,
)
from interlock.testing import LogCapture, asgi_request, metric_value, wsgi_request

RULE = LockRule("/accounts/{account_id}/withdraw", name="account", key="{account_id}", timeout=0.2)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.anyio
async def test_asgi_lock_is_held_during_the_handler_and_contention_gets_423(
    make_ail: Callable[..., AsyncInterlock], logs: LogCapture
) -> None:
    inside, leave = asyncio.Event(), asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        lease = scope["interlock"].lease
        assert lease is not None and not lease.done
        info = await scope["interlock"].interlock.lock_info("account", "42")
        assert info is not None and info.request_id == scope["interlock"].request_id
        inside.set()
        await leave.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(lease.fence).encode()})

    async with make_ail() as ail:
        wrapped = InterlockMiddleware(app, interlock=ail, locks=[RULE])
        first = asyncio.create_task(asgi_request(wrapped, "POST", "/accounts/42/withdraw"))
        await inside.wait()
        refused = await asgi_request(wrapped, "POST", "/accounts/42/withdraw")
        assert refused.status == 423
        assert refused.headers["retry-after"] == "1"
        assert refused.headers["content-type"] == "application/problem+json"
        problem = refused.json()
        assert problem["type"] == "urn:interlock:problem:lock-timeout"
        assert problem["status"] == 423 and problem["lock"] == "account"
        assert problem["request_id"] == refused.headers["x-request-id"]
        leave.set()
        ok = await first
        assert ok.status == 200
        assert await ail.lock_info("account", "42") is None  # released after the body
        # another account is not blocked; the same account is free again
        assert (await asgi_request(wrapped, "POST", "/accounts/42/withdraw")).status == 200
        assert int((await asgi_request(wrapped, "POST", "/accounts/42/withdraw")).body) > int(
            ok.body
        )

        lines = {r["http.request.id"]: r for r in logs.requests()}
        refusal = lines[refused.headers["x-request-id"]]
        assert refusal["http.response.status_code"] == 423
        assert refusal["interlock.http.route"] == "/accounts/{account_id}/withdraw"
        assert refusal["interlock.lock.result"] == "timeout"
        assert refusal["interlock.lock.holder.request_id"] == ok.headers["x-request-id"]
        winner = lines[ok.headers["x-request-id"]]
        assert winner["interlock.lock.name"] == "account"
        assert winner["interlock.lock.fence"] == int(ok.body)
        labels = {"route": "/accounts/{account_id}/withdraw", "status": "423"}
        assert metric_value(ail, "interlock_http_requests_total", **labels) == 1
        assert metric_value(ail, "interlock_lock_acquire_seconds_count", result="timeout") == 1


@pytest.mark.anyio
async def test_asgi_lock_is_released_when_the_handler_raises_or_the_client_leaves(
    make_ail: Callable[..., AsyncInterlock], logs: LogCapture
) -> None:
    async def boom(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("handler failed")

    async def leaves(scope: Any, receive: Any, send: Any) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    async def main() -> None:
        async with make_ail() as ail:
            failing = InterlockMiddleware(boom, interlock=ail, locks=[RULE])
            with pytest.raises(RuntimeError):
                await asgi_request(failing, "POST", "/accounts/7/withdraw")
            assert await ail.lock_info("account", "7") is None

            app = InterlockMiddleware(leaves, interlock=ail, locks=[RULE])
            messages = iter([{"type": "http.request", "body": b"", "more_body": True},
                             {"type": "http.disconnect"}])  # fmt: skip

            async def receive() -> Any:
                return next(messages)

            async def send(message: Any) -> None:
                raise AssertionError("nothing is sent")

            scope = {"type": "http", "method": "POST", "path": "/accounts/7/withdraw",
                     "headers": [], "query_string": b""}  # fmt: skip
            await app(scope, receive, send)
            assert await ail.lock_info("account", "7") is None
            assert metric_value(ail, "interlock_lock_held") == 0
            statuses = [r["http.response.status_code"] for r in logs.requests()]
            assert statuses == [500, 499]  # one line each

    await main()


@pytest.mark.anyio
async def test_rules_only_apply_to_their_methods_and_paths(
    make_ail: Callable[..., AsyncInterlock],
) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        held = scope["interlock"].lease is not None
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"held" if held else b"free"})

    rule = LockRule("/items/{item_id}", name="item", key="{item_id}", methods=["POST"])

    async with make_ail() as ail:
        wrapped = InterlockMiddleware(app, interlock=ail, locks=[rule])
        assert (await asgi_request(wrapped, "POST", "/items/1")).body == b"held"
        assert (await asgi_request(wrapped, "GET", "/items/1")).body == b"free"
        assert (await asgi_request(wrapped, "POST", "/items/1/x")).body == b"free"


@pytest.mark.anyio
async def test_backend_down_answers_503_or_fails_open(
    make_ail: Callable[..., AsyncInterlock], logs: LogCapture
) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ran"})

    url = f"redis://127.0.0.1:{_closed_port()}/0"
    open_rule = LockRule("/open/{x}", name="open", key="{x}", fail_open=True)

    async with make_ail(url, connect_timeout=0.2, socket_timeout=0.2) as ail:
        wrapped = InterlockMiddleware(app, interlock=ail, locks=[RULE, open_rule])
        down = await asgi_request(wrapped, "POST", "/accounts/1/withdraw")
        assert down.status == 503
        assert down.headers["retry-after"] == "1"
        assert down.json()["type"] == "urn:interlock:problem:backend-unavailable"
        ran = await asgi_request(wrapped, "POST", "/open/1")
        assert ran.status == 200 and ran.body == b"ran"
        results = [r.get("interlock.lock.result") for r in logs.requests()]
        assert results == ["unavailable", "unavailable"]


def test_wsgi_lock_is_released_when_the_iterable_is_closed(il: Interlock, logs: LogCapture) -> None:
    observed: list[Any] = []

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        observed.append(environ["interlock"].lease)
        start_response("200 OK", [("Content-Type", "text/plain")])

        def body() -> Any:
            yield b"one "
            observed.append(il.lock_info("account", "9"))
            yield b"two"

        return body()

    wrapped = InterlockWSGIMiddleware(app, interlock=il, locks=[RULE])
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/accounts/9/withdraw", "wsgi.input": None}
    statuses: list[str] = []
    result = wrapped(environ, lambda status, headers, *exc: statuses.append(status))
    iterator = iter(result)
    assert next(iterator) == b"one "
    assert next(iterator) == b"two"
    assert il.lock_info("account", "9") is not None  # body sent, iterable not closed yet
    assert logs.requests() == []
    result.close()  # type: ignore[attr-defined]
    result.close()  # type: ignore[attr-defined]  # idempotent
    assert il.lock_info("account", "9") is None
    assert observed[0] is not None and observed[1] is not None
    [line] = logs.requests()
    assert line["interlock.lock.name"] == "account"
    assert line["interlock.http.route"] == "/accounts/{account_id}/withdraw"


def test_wsgi_contention_gets_423_and_backend_down_503(il: Interlock, logs: LogCapture) -> None:
    release = threading.Event()
    inside = threading.Event()

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        inside.set()
        release.wait(5)
        start_response("200 OK", [])
        return [b"done"]

    wrapped = InterlockWSGIMiddleware(app, interlock=il, locks=[RULE])
    holder: list[Any] = []
    thread = threading.Thread(
        target=lambda: holder.append(wsgi_request(wrapped, "POST", "/accounts/5/withdraw"))
    )
    thread.start()
    assert inside.wait(5)
    refused = wsgi_request(wrapped, "POST", "/accounts/5/withdraw")
    release.set()
    thread.join(5)
    assert refused.status == 423 and refused.headers["retry-after"] == "1"
    assert refused.json()["lock"] == "account"
    assert holder[0].status == 200
    assert il.lock_info("account", "5") is None

    with Interlock(
        f"redis://127.0.0.1:{_closed_port()}/0", connect_timeout=0.2, socket_timeout=0.2
    ) as down:
        gone = InterlockWSGIMiddleware(app, interlock=down, locks=[RULE])
        answer = wsgi_request(gone, "POST", "/accounts/5/withdraw")
        assert answer.status == 503
        assert answer.json()["type"] == "urn:interlock:problem:backend-unavailable"


def test_wsgi_exception_in_the_app_releases_and_logs_once(il: Interlock, logs: LogCapture) -> None:
    def boom(environ: dict[str, Any], start_response: Any) -> Any:
        raise KeyError("missing")

    wrapped = InterlockWSGIMiddleware(boom, interlock=il, locks=[RULE])
    assert wsgi_request(wrapped, "POST", "/accounts/3/withdraw").status == 500  # our problem
    assert il.lock_info("account", "3") is None
    [line] = logs.requests()
    assert line["http.response.status_code"] == 500 and line["error.type"] == "KeyError"
    assert metric_value(il, "interlock_http_requests_in_progress") == 0


def test_wsgi_iteration_error_is_recorded(il: Interlock, logs: LogCapture) -> None:
    closed: list[bool] = []

    class Body:
        def __iter__(self) -> Any:
            yield b"x"
            raise OSError("disk gone")

        def close(self) -> None:
            closed.append(True)

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        start_response("200 OK", [])
        return Body()

    wrapped = InterlockWSGIMiddleware(app, interlock=il)
    with pytest.raises(OSError, match="disk gone"):
        wsgi_request(wrapped, "GET", "/stream")
    assert closed == [True]  # the inner iterable is closed too
    [line] = logs.requests()
    assert line["error.type"] == "OSError" and line["http.response.status_code"] == 200
