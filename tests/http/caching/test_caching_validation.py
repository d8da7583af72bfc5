"""Validation, 304 merges, HEAD updates, Range, the target-URI key and invalidation
(RFC 9111 §2, §4.3, §4.4; RFC 9110 §13, §14, §15.4.5)."""

from __future__ import annotations

import pytest
from _caching_support import T0, date, stored

from interlock.http.caching import (
    CachePolicy,
    effective_authority,
    evaluate_conditional,
    fill_headers,
    freshen,
    head_update,
    invalidation_keys,
    lookup,
    not_modified_headers,
    revalidation_headers,
    select_range,
    target_key,
    variant_id,
)

POLICY = CachePolicy()
TAGGED = [
    ("cache-control", "max-age=3600"),
    ("etag", '"abc"'),
    ("date", date()),
    ("last-modified", date(-3600)),
    ("content-length", "10"),
    ("content-type", "text/x"),
]


# -- client conditionals answered from the stored response --------------------------------------


@pytest.mark.parametrize(
    "value",
    ['"abc"', 'W/"abc"', '"x", "abc"', '"abc", "y"', '"x", "abc", "y"', "*", "abc"],
)
def test_if_none_match_uses_the_weak_comparison__rfc9110_13_1_2(value: str) -> None:
    response = stored(TAGGED)
    assert evaluate_conditional(response, "GET", [("if-none-match", value)]) == 304
    assert evaluate_conditional(response, "HEAD", [("if-none-match", value)]) == 304


def test_a_weak_stored_etag_matches_too__rfc9110_13_1_2() -> None:
    response = stored([("cache-control", "max-age=60"), ("etag", 'W/"abc"')])
    assert evaluate_conditional(response, "GET", [("if-none-match", '"abc"')]) == 304


@pytest.mark.parametrize("value", ['"other"', 'w/"abc"', 'W\\"abc"', ""])
def test_if_none_match_mismatches_serve_the_response__rfc9110_13_1_2(value: str) -> None:
    assert evaluate_conditional(stored(TAGGED), "GET", [("if-none-match", value)]) is None


def test_if_none_match_takes_precedence_over_if_modified_since__rfc9110_13_2_2() -> None:
    request = [("if-none-match", '"other"'), ("if-modified-since", date())]
    assert evaluate_conditional(stored(TAGGED), "GET", request) is None


@pytest.mark.parametrize(("since", "expected"), [(0, 304), (-3600, 304), (-7200, None)])
def test_if_modified_since_against_last_modified__rfc9110_13_1_3(
    since: float, expected: int | None
) -> None:
    request = [("if-modified-since", date(since))]
    assert evaluate_conditional(stored(TAGGED), "GET", request) == expected


def test_if_modified_since_falls_back_to_the_date__rfc9111_4_3_2() -> None:
    response = stored([("cache-control", "max-age=600"), ("date", date(-100))])
    assert evaluate_conditional(response, "GET", [("if-modified-since", date(-50))]) == 304
    assert evaluate_conditional(response, "GET", [("if-modified-since", date(-200))]) is None


def test_if_modified_since_in_rfc850_form_is_read__rfc9110_5_6_7() -> None:
    rfc850 = "Sunday, 06-Nov-94 08:49:37 GMT"
    response = stored(
        [("cache-control", "max-age=60"), ("last-modified", "Sun, 06 Nov 1994 08:49:37 GMT")]
    )
    assert evaluate_conditional(response, "GET", [("if-modified-since", rfc850)]) == 304


@pytest.mark.parametrize("value", ["yesterday", f"{date()}, {date()}"])
def test_invalid_if_modified_since_is_ignored__rfc9110_13_1_3(value: str) -> None:
    assert evaluate_conditional(stored(TAGGED), "GET", [("if-modified-since", value)]) is None


def test_conditionals_apply_to_get_and_head_only__rfc9110_13_1_2() -> None:
    assert evaluate_conditional(stored(TAGGED), "POST", [("if-none-match", "*")]) is None


def test_a_304_repeats_the_validator_and_cache_fields__rfc9110_15_4_5() -> None:
    names = {n for n, _ in not_modified_headers(stored([*TAGGED, ("vary", "x"),
                                                        ("expires", date(60))]))}  # fmt: skip
    assert names == {"cache-control", "etag", "date", "vary", "expires"}
    names = {n for n, _ in not_modified_headers(stored([("cache-control", "max-age=9"),
                                                        ("last-modified", date(-9))]))}  # fmt: skip
    assert "last-modified" in names


# -- requests sent to the handler -------------------------------------------------------------


def test_fills_never_carry_the_clients_validators_or_range__rfc9111_4_3_1() -> None:
    request = [("if-none-match", '"x"'), ("if-modified-since", date()), ("range", "bytes=0-1"),
               ("if-range", '"x"'), ("accept", "text/html")]  # fmt: skip
    assert fill_headers(request) == [("accept", "text/html")]


def test_revalidation_sends_the_stored_validators__rfc9111_4_3_1() -> None:
    headers = dict(revalidation_headers([("if-none-match", '"client"')], stored(TAGGED)))
    assert headers["if-none-match"] == '"abc"'
    assert headers["if-modified-since"] == date(-3600)


def test_revalidation_keeps_the_selecting_fields__rfc9111_4_3_1() -> None:
    response = stored([*TAGGED, ("vary", "accept-language")], request=[("accept-language", "en")])
    assert ("accept-language", "en") in revalidation_headers([("accept-language", "en")], response)


# -- 304 merge and HEAD -----------------------------------------------------------------------


def test_a_304_updates_stored_fields_but_not_content_length__rfc9111_4_3_4() -> None:
    response = stored([*TAGGED, ("x-kept", "1")])
    merged = freshen(response, [("etag", '"abc"'), ("cache-control", "max-age=7200"),
                                ("x-new", "2"), ("content-length", "99"), ("date", date(100))],
                     POLICY, request_time=T0 + 99, response_time=T0 + 100)  # fmt: skip
    assert merged is not None
    headers = dict(merged.headers)
    assert headers["cache-control"] == "max-age=7200" and headers["x-new"] == "2"
    assert headers["content-length"] == "10" and headers["x-kept"] == "1"
    assert headers["date"] == date(100) and merged.response_time == T0 + 100


def test_a_304_restarts_the_age__rfc9111_4_3_4() -> None:
    response = stored([("cache-control", "max-age=60"), ("etag", '"abc"')])
    merged = freshen(response, [("etag", '"abc"'), ("date", date(1000))], POLICY,
                     request_time=T0 + 1000, response_time=T0 + 1000)  # fmt: skip
    assert merged is not None
    assert lookup(merged, "GET", [], POLICY, T0 + 1030).action == "fresh"


def test_a_304_without_date_gets_the_receipt_time__rfc9110_6_6_1() -> None:
    response = stored([("cache-control", "max-age=60"), ("etag", '"abc"'), ("date", date())])
    merged = freshen(response, [], POLICY, request_time=T0 + 500, response_time=T0 + 500)
    assert merged is not None and ("date", date(500)) in merged.headers


def test_a_304_with_another_strong_validator_updates_nothing__rfc9111_4_3_4() -> None:
    response = stored(TAGGED)
    assert freshen(response, [("etag", '"zzz"')], POLICY,
                   request_time=T0, response_time=T0) is None  # fmt: skip
    assert freshen(response, [("etag", 'W/"abc"')], POLICY,
                   request_time=T0, response_time=T0) is not None  # fmt: skip
    assert freshen(response, [("last-modified", date(-1))], POLICY,
                   request_time=T0, response_time=T0) is None  # fmt: skip


def test_a_304_never_brings_hop_by_hop_fields_or_set_cookie__rfc9111_3_1() -> None:
    merged = freshen(stored(TAGGED), [("connection", "close"), ("set-cookie", "a=b"),
                                      ("age", "5")], POLICY,
                     request_time=T0, response_time=T0)  # fmt: skip
    assert merged is not None
    assert not {"connection", "set-cookie", "age"} & {n for n, _ in merged.headers}


def test_a_head_200_updates_the_stored_get__rfc9111_4_3_5() -> None:
    response = stored(TAGGED)
    updated = head_update(response, 200, [("etag", '"abc"'), ("x-new", "1"),
                                          ("cache-control", "max-age=10")], POLICY,
                          request_time=T0 + 1, response_time=T0 + 1)  # fmt: skip
    assert updated is not None and ("x-new", "1") in updated.headers
    assert ("content-type", "text/x") in updated.headers  # preserved


@pytest.mark.parametrize(
    "field", [("etag", '"new"'), ("content-length", "11"), ("last-modified", date())]
)
def test_a_head_200_for_another_representation_drops_the_stored_one__rfc9111_4_3_5(
    field: tuple[str, str],
) -> None:
    assert head_update(stored(TAGGED), 200, [field], POLICY,
                       request_time=T0, response_time=T0) is None  # fmt: skip


def test_a_head_with_another_status_leaves_the_stored_response__rfc9111_4_3_5() -> None:
    response = stored(TAGGED)
    assert head_update(response, 410, [("x", "1")], POLICY,
                       request_time=T0, response_time=T0) is response  # fmt: skip


# -- Range ------------------------------------------------------------------------------------

BODY = 100


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("bytes=0-9", (206, 0, 10, "bytes 0-9/100")),
        ("bytes=90-", (206, 90, 100, "bytes 90-99/100")),
        ("bytes=-10", (206, 90, 100, "bytes 90-99/100")),
        ("bytes=95-200", (206, 95, 100, "bytes 95-99/100")),
        ("bytes=-500", (206, 0, 100, "bytes 0-99/100")),
        ("BYTES=0-0", (206, 0, 1, "bytes 0-0/100")),
        ("bytes=100-", (416, 0, 0, "bytes */100")),
        ("bytes=-0", (416, 0, 0, "bytes */100")),
        ("bytes=0-1, 5-6", (200, 0, 100, None)),
        ("bytes=5-1", (200, 0, 100, None)),
        ("items=0-1", (200, 0, 100, None)),
        ("bytes=x-1", (200, 0, 100, None)),
        ("bytes=", (200, 0, 100, None)),
        ("bytes=200-300, 0-4", (206, 0, 5, "bytes 0-4/100")),
    ],
)
def test_single_ranges_are_served_from_a_stored_200__rfc9110_14(
    value: str, expected: tuple[int, int, int, str | None]
) -> None:
    answer = select_range(stored(TAGGED), "GET", [value], [], BODY)
    assert (answer.status, answer.start, answer.stop, answer.content_range) == expected


def test_range_is_ignored_for_head_and_non_200__rfc9110_14_2() -> None:
    assert select_range(stored(TAGGED), "HEAD", ["bytes=0-1"], [], BODY).status == 200
    response = stored(TAGGED, 404)
    assert select_range(response, "GET", ["bytes=0-1"], [], BODY).status == 200


@pytest.mark.parametrize(
    ("if_range", "status"),
    [('"abc"', 206), ('W/"abc"', 200), ('"zzz"', 200), (date(-3600), 206), (date(-10), 200)],
)
def test_if_range_needs_a_strong_match__rfc9110_13_1_5(if_range: str, status: int) -> None:
    answer = select_range(stored(TAGGED), "GET", ["bytes=0-1"], [if_range], BODY)
    assert answer.status == status


# -- the target URI key and trusted hosts -----------------------------------------------------


def test_scheme_and_authority_are_in_the_key__rfc9111_2() -> None:
    assert target_key("http", "a.example", "/p", "") != target_key("https", "a.example", "/p", "")
    assert target_key("https", "a.example", "/p", "") != target_key("https", "b.example", "/p", "")


def test_equivalent_uris_share_a_key__rfc3986_6_2_2() -> None:
    assert target_key("HTTPS", "a.example", "/%7euser/%2f", "b=2&a=1") == target_key(
        "https", "a.example", "/~user/%2F", "a=%31&b=2"
    )
    assert target_key("https", "a", "", "") == "https://a/"


def test_different_queries_are_different_keys__rfc9111_2() -> None:
    assert target_key("https", "a", "/p", "q=1") != target_key("https", "a", "/p", "q=2")
    assert target_key("https", "a", "/p", "utm=1", ["utm"]) == target_key("https", "a", "/p", "")


@pytest.mark.parametrize(
    ("host", "scheme", "expected"),
    [("Example.COM", "https", "example.com"), ("example.com:443", "https", "example.com"),
     ("example.com:80", "https", "example.com:80"), ("example.com.", "http", "example.com"),
     ("[::1]:8080", "http", "[::1]:8080"), ("bad host", "http", None), ("a:99999", "http", None),
     ("a/b", "http", None), ("evil.com@good.com", "http", None)],
)  # fmt: skip
def test_the_authority_is_normalised_and_validated__rfc9110_4_2_3(
    host: str, scheme: str, expected: str | None
) -> None:
    assert effective_authority(host, scheme, None) == expected


@pytest.mark.parametrize(
    ("host", "allowed"),
    [("shop.example", True), ("a.shop.example", True), ("evil.example", False),
     ("api.tenant.example", True), ("tenant.example", False), ("www.other.example", True),
     ("other.example", True), ("xother.example", False)],
)  # fmt: skip
def test_only_trusted_hosts_reach_the_cache(host: str, allowed: bool) -> None:
    trusted = ["shop.example", "*.shop.example", "*.tenant.example", ".other.example"]
    assert (effective_authority(host, "https", trusted) is not None) is allowed
    assert effective_authority(host, "https", ["*"]) is not None


def test_a_request_without_host_uses_the_server__rfc9110_7_2() -> None:
    assert effective_authority(None, "http", None, ("srv", 8000)) == "srv:8000"
    assert effective_authority(None, "http", None) is None


# -- invalidation -----------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "M-SEARCH"])
def test_unsafe_methods_invalidate_the_target_uri__rfc9111_4_4(method: str) -> None:
    keys = invalidation_keys(method, 204, "https://a.example/items/1?x=1", [])
    assert keys == [target_key("https", "a.example", "/items/1", "x=1")]


@pytest.mark.parametrize("status", [400, 404, 500, 503])
def test_failed_unsafe_requests_invalidate_nothing__rfc9111_4_4(status: int) -> None:
    assert invalidation_keys("POST", status, "https://a.example/x", []) == []


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "TRACE"])
def test_safe_methods_invalidate_nothing__rfc9111_4_4(method: str) -> None:
    assert invalidation_keys(method, 200, "https://a.example/x", []) == []


def test_location_and_content_location_of_the_same_origin_are_invalidated__rfc9111_4_4() -> None:
    keys = invalidation_keys("POST", 201, "https://a.example/items",
                             [("location", "/items/7"),
                              ("content-location", "https://a.example:443/items/7/v")])  # fmt: skip
    assert keys == [target_key("https", "a.example", p, "") for p in
                    ("/items", "/items/7", "/items/7/v")]  # fmt: skip


@pytest.mark.parametrize(
    "location", ["https://b.example/x", "http://a.example/x", "https://a.example:8443/x"]
)
def test_other_origins_are_never_invalidated__rfc9111_4_4(location: str) -> None:
    keys = invalidation_keys("PUT", 200, "https://a.example/x", [("location", location)])
    assert keys == [target_key("https", "a.example", "/x", "")]


def test_variants_get_distinct_ids__rfc9111_4_1() -> None:
    assert variant_id(()) == ""
    one = variant_id((("accept-language", "en"),))
    assert one != variant_id((("accept-language", None),))
    assert one != variant_id((("accept-language", "fr"),))
