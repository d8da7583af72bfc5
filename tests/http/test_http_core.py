"""The sans-IO core: templates, rules, ids, trace context, labels, problems, exposition."""

from __future__ import annotations

import json

import pytest
from prometheus_client import CollectorRegistry

from interlock import CacheRule, Interlock, LockRule
from interlock.http._core import HttpCore
from interlock.http._responses import exposition, problem
from interlock.http._routes import UNMATCHED, RouteTemplate, route_path
from interlock.http._wire import (
    clean,
    new_ids,
    normalise_method,
    parse_request_id,
    parse_traceparent,
    utf8,
)
from interlock.metrics import OVERFLOW
from interlock.testing import metric_value


@pytest.mark.parametrize(
    ("template", "path", "params"),
    [
        ("/accounts/{account_id}/withdraw", "/accounts/42/withdraw", {"account_id": "42"}),
        ("/accounts/{account_id}/withdraw", "/accounts/42/deposit", None),
        ("/accounts/{account_id}", "/accounts/a/b", None),
        ("/items/{n:int}", "/items/12", {"n": "12"}),
        ("/items/{n:int}", "/items/x", None),
        ("/files/{rest:path}", "/files/a/b/c.txt", {"rest": "a/b/c.txt"}),
        ("/items/<int:item_id>", "/items/7", {"item_id": "7"}),
        ("/u/<name>/x", "/u/bob/x", {"name": "bob"}),
        ("/price/{p:float}", "/price/1.5", {"p": "1.5"}),
        (
            "/o/{id:uuid}",
            "/o/12345678-1234-1234-1234-123456789abc",
            {"id": "12345678-1234-1234-1234-123456789abc"},
        ),
        ("/a.b/{x}", "/aXb/1", None),  # literal dots are escaped
        ("/", "/", {}),
    ],
)
def test_route_templates_match_paths(
    template: str, path: str, params: dict[str, str] | None
) -> None:
    assert RouteTemplate.compile(template).match(path) == params


@pytest.mark.parametrize("bad", ["no-slash", "/x/{id:wat}", "/{a}/{a}", 42])
def test_route_templates_reject_bad_input(bad: object) -> None:
    with pytest.raises(ValueError, match="route template"):
        RouteTemplate.compile(bad)  # type: ignore[arg-type]


def test_route_path_strips_the_root_path() -> None:
    assert route_path("/api/items/1", "/api") == "/items/1"
    assert route_path("/api", "/api") == "/"
    assert route_path("/other", "/api") == "/other"


def test_lock_rule_validates_at_construction() -> None:
    rule = LockRule("/accounts/{account_id}/withdraw", name="account", key="{account_id}")
    assert rule.resource({"account_id": "42"}) == "42"
    assert rule.applies("GET") and rule.applies("POST")
    with pytest.raises(ValueError, match="has the parameters"):
        LockRule("/accounts/{account_id}", name="account", key="{user}")
    with pytest.raises(ValueError, match="name"):
        LockRule("/a/{x}", name="bad name!", key="{x}")
    with pytest.raises(ValueError, match="methods"):
        LockRule("/a/{x}", name="a", methods=["FETCH"])
    with pytest.raises(ValueError, match="status"):
        LockRule("/a/{x}", name="a", status=200)
    with pytest.raises(TypeError, match="seconds"):
        LockRule("/a/{x}", name="a", timeout="1")  # type: ignore[arg-type]
    keyed = LockRule("/t/{a}/{b}", name="t", key=lambda p: (p["a"], int(p["b"])), methods="post")
    assert keyed.resource({"a": "x", "b": "2"}) == ("x", 2)
    assert keyed.applies("POST") and not keyed.applies("GET")
    assert LockRule("/a", name="a", timeout=None).options == {"timeout": None}
    assert LockRule("/a", name="a").options == {}


def test_cache_rule_validates_at_construction() -> None:
    rule = CacheRule("/products/{pid}", ttl=30, vary=["Accept-Language"], tags=["product:{pid}"])
    assert rule.vary == ("accept-language",)
    assert rule.tags_for({"pid": "9"}) == ["product:9"]
    with pytest.raises(ValueError, match="per_user"):
        CacheRule("/p", ttl=1, vary=["Authorization"])
    with pytest.raises(ValueError, match="has the parameters"):
        CacheRule("/p/{a}", ttl=1, tags=["x:{b}"])
    with pytest.raises(ValueError, match="ttl"):
        CacheRule("/p", ttl=0)
    with pytest.raises(ValueError, match="max_body"):
        CacheRule("/p", ttl=1, max_body=-1)


def test_unknown_methods_are_normalised() -> None:
    assert normalise_method("GET") == "GET"
    assert normalise_method("PROPFIND") == "_OTHER"
    assert normalise_method("get") == "_OTHER"  # methods are case-sensitive (RFC 9110 §9.1)


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("abc-123", True),
        ("a" * 128, True),
        ("a" * 129, False),
        ("", False),
        (None, False),
        ("has space", False),
        ("new\nline", False),
        ('quote"', False),
        ("ünicode", False),
    ],
)
def test_request_ids_are_checked(value: str | None, ok: bool) -> None:
    assert parse_request_id(value) == (value if ok else None)


def test_traceparent_parsing_follows_w3c() -> None:
    tid, sid = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    assert parse_traceparent(f"00-{tid}-{sid}-01") == (tid, sid, True)
    assert parse_traceparent(f"00-{tid}-{sid}-00") == (tid, sid, False)
    assert parse_traceparent(f"01-{tid}-{sid}-01-future") == (tid, sid, True)
    for bad in (
        f"00-{tid}-{sid}-01-extra",  # version 00 has no suffix
        f"ff-{tid}-{sid}-01",
        f"00-{'0' * 32}-{sid}-01",
        f"00-{tid}-{'0' * 16}-01",
        f"00-{tid.upper()}-{sid}-01",
        f"00-{tid}-{sid}",
        "garbage",
        "",
        None,
        "0" * 10_000,
    ):
        assert parse_traceparent(bad) is None, bad


def test_new_ids_are_random_hex_of_the_right_length() -> None:
    ids = {new_ids() for _ in range(100)}
    assert len(ids) == 100
    rid, tid, sid = next(iter(ids))
    assert len(rid) == 32 and len(tid) == 32 and len(sid) == 16
    int(rid + tid + sid, 16)


def test_text_cleaning_for_logs() -> None:
    assert clean("x" * 5000, 10) == "x" * 10 + "…"
    assert clean("\udcff bad") == "\ufffd bad"
    assert utf8("caf\xc3\xa9") == "café"  # WSGI: UTF-8 bytes as latin-1
    assert utf8("\xff") == "\ufffd"
    assert utf8("日本") == "日本"  # already text (ASGI)


def test_problem_documents_follow_rfc_9457() -> None:
    answer = problem(423, "lock-timeout", "Resource is locked", "busy", request_id="r1",
                     retry_after=1.2, lock="account")  # fmt: skip
    headers = dict(answer.headers)
    assert headers["content-type"] == "application/problem+json"
    assert headers["retry-after"] == "2"
    assert int(headers["content-length"]) == len(answer.body)
    body = json.loads(answer.body)
    assert body == {
        "type": "urn:interlock:problem:lock-timeout",
        "title": "Resource is locked",
        "status": 423,
        "detail": "busy",
        "request_id": "r1",
        "lock": "account",
    }


def test_exposition_negotiates_openmetrics() -> None:
    registry = CollectorRegistry()
    _, ctype = exposition(registry, "text/plain", False)
    assert ctype.startswith("text/plain")
    om, ctype = exposition(registry, "application/openmetrics-text; version=1.0.0", False)
    assert ctype.startswith("application/openmetrics-text")
    assert om.endswith(b"# EOF\n")
    assert exposition(None, None, False)[0] == b""


def test_route_label_cap_folds_into_overflow(namespace: str) -> None:
    with Interlock("mem://", namespace=namespace, label_cap=3) as il:
        core = HttpCore(il, metrics_path=None)
        for i in range(10):
            ex = core.begin("GET", f"/r{i}", "", "", {}, None)
            ex.route, ex.status = f"/r{i}", 200
            core.finish(ex)
        routes = {
            s.labels["route"]
            for m in il.registry.collect()  # type: ignore[union-attr]
            for s in m.samples
            if s.name == "interlock_http_requests_total"
        }
        assert routes == {"/r0", "/r1", "/r2", OVERFLOW}
        assert metric_value(il, "interlock_http_requests_total", route=OVERFLOW) == 7
        assert (
            metric_value(
                il, "interlock_label_overflow_total", metric="interlock_http_requests_total"
            )
            == 7
        )
        # the same folded route again still counts as a fold
        ex = core.begin("GET", "/r9", "", "", {}, None)
        ex.route, ex.status = "/r9", 200
        core.finish(ex)
        assert (
            metric_value(
                il, "interlock_label_overflow_total", metric="interlock_http_requests_total"
            )
            == 8
        )


def test_finish_is_idempotent_and_balances_in_progress(il: Interlock) -> None:
    core = HttpCore(il, routes=["/x/{id}"])
    ex = core.begin("BREW", "/x/1", "", "", {}, None)
    assert metric_value(il, "interlock_http_requests_in_progress", method="_OTHER") == 1
    core.finish(ex)
    core.finish(ex)
    assert metric_value(il, "interlock_http_requests_in_progress", method="_OTHER") == 0
    assert (
        metric_value(
            il, "interlock_http_requests_total", method="_OTHER", route="/x/{id}", status="500"
        )
        == 1
    )
    ex = core.begin("GET", "/nowhere", "", "", {}, None)
    ex.status = 404
    assert core.route_of(ex) == UNMATCHED


def test_core_rejects_what_is_not_an_interlock() -> None:
    with pytest.raises(TypeError, match="Interlock"):
        HttpCore(object())
    with pytest.raises(TypeError, match="LockRule"):
        HttpCore(Interlock("mem://"), locks=[CacheRule("/x", ttl=1)])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="metrics_path"):
        HttpCore(Interlock("mem://"), metrics_path="metrics")


def test_only_failures_are_logged_when_the_logger_is_at_warning(il: Interlock) -> None:
    import logging

    from interlock.testing import capture_logs

    core = HttpCore(il)
    with capture_logs("interlock.http", logging.WARNING) as logs:
        ok = core.begin("GET", "/ok", "", "", {}, None)
        ok.status = 200
        core.finish(ok)
        failed = core.begin("GET", "/boom", "", "", {}, None)
        failed.error = RuntimeError("boom")
        core.finish(failed)
    assert [line["url.path"] for line in logs.requests()] == ["/boom"]
    assert logs.requests()[0]["log.level"] == "error"
