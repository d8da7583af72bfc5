"""Storing responses in a shared cache (RFC 9111 §3, §3.1, §3.5, §4.1; RFC 9110 §15.1)."""

from __future__ import annotations

import pytest
from _caching_support import T0, date, reused, store, stored, use

from interlock.http.caching import HEURISTICALLY_CACHEABLE, CachePolicy

FRESH = ("cache-control", "max-age=3600")


@pytest.mark.parametrize("status", sorted(HEURISTICALLY_CACHEABLE - {206}))
def test_heuristically_cacheable_statuses_with_a_validator_are_stored__rfc9110_15_1(
    status: int,
) -> None:
    assert store([("etag", '"v"')], status).store


@pytest.mark.parametrize(
    "status",
    [
        200,
        203,
        204,
        300,
        301,
        302,
        303,
        307,
        308,
        400,
        404,
        405,
        410,
        414,
        500,
        501,
        502,
        503,
        504,
        599,
    ],
)
def test_any_status_with_explicit_freshness_is_reused_while_fresh__rfc9111_3(status: int) -> None:
    assert reused([FRESH], status=status)
    assert not reused([("cache-control", "max-age=2")], status=status, after=5)


@pytest.mark.parametrize("status", [201, 302, 307, 400, 403, 500, 503])
def test_other_statuses_without_explicit_freshness_are_not_stored__rfc9111_3(status: int) -> None:
    assert store([("etag", '"v"')], status).reason == "status"


def test_partial_content_is_never_stored_as_a_full_response__rfc9111_3_3() -> None:
    assert store([FRESH, ("content-range", "bytes 0-9/100")], 206).reason == "partial"


@pytest.mark.parametrize(
    ("status", "reason"), [(100, "interim"), (103, "interim"), (304, "not-modified")]
)
def test_non_final_and_304_responses_are_not_stored__rfc9111_3(status: int, reason: str) -> None:
    assert store([FRESH], status).reason == reason


@pytest.mark.parametrize("method", ["HEAD", "POST", "PUT", "DELETE", "OPTIONS"])
def test_only_get_responses_are_stored__rfc9111_3(method: str) -> None:
    assert store([FRESH], method=method).reason == "method"


@pytest.mark.parametrize("value", ["no-store", "nO-StOrE", "no-store, max-age=3600"])
def test_no_store_is_never_stored__rfc9111_5_2_2_5(value: str) -> None:
    assert store([("cache-control", value), ("expires", date(3600))]).reason == "no-store"


@pytest.mark.parametrize("value", ["private", "PRIVATE, max-age=3600", "max-age=60, private"])
def test_a_shared_cache_does_not_store_private__rfc9111_5_2_2_7(value: str) -> None:
    assert store([("cache-control", value)]).reason == "private"


def test_qualified_private_strips_the_named_fields__rfc9111_5_2_2_7() -> None:
    kept = stored([("cache-control", 'max-age=60, private="x-user"'), ("x-user", "ann"),
                   ("x-other", "1")]).headers  # fmt: skip
    assert ("x-other", "1") in kept and all(name != "x-user" for name, _ in kept)


def test_qualified_no_cache_strips_the_named_fields__rfc9111_5_2_2_4() -> None:
    kept = stored([("cache-control", 'max-age=60, no-cache="set-cookie, x-a"'),
                   ("set-cookie", "s=1"), ("x-a", "1"), ("x-b", "2")]).headers  # fmt: skip
    names = [name for name, _ in kept]
    assert "set-cookie" not in names and "x-a" not in names and "x-b" in names


def test_must_understand_overrides_no_store_for_a_known_status__rfc9111_5_2_2_3() -> None:
    assert store([("cache-control", "no-store, must-understand, max-age=60")]).store
    assert (
        store([("cache-control", "no-store, must-understand, max-age=60")], 299).reason
        == "must-understand"
    )


def test_request_no_store_prevents_storing__rfc9111_5_2_1_5() -> None:
    decision = store([FRESH], request=[("cache-control", "no-store")])
    assert decision.reason == "request-no-store"


def test_authorized_requests_are_not_shared_by_default__rfc9111_3_5() -> None:
    assert store([FRESH], request=[("authorization", "Basic x")]).reason == "authorization"


@pytest.mark.parametrize(
    "value", ["public", "s-maxage=60", "must-revalidate, max-age=60", "public, max-age=60"]
)
def test_authorized_responses_marked_shareable_are_stored__rfc9111_3_5(value: str) -> None:
    decision = store([("cache-control", value), ("etag", '"a"')],
                     request=[("authorization", "Basic x")])  # fmt: skip
    assert decision.store and decision.stored is not None and decision.stored.shared_authorized


def test_an_authorized_request_is_served_only_explicitly_shareable_responses__rfc9111_3_5() -> None:
    auth = [("authorization", "Bearer t")]
    assert use([FRESH], request=auth).reason == "authorization"
    assert reused([("cache-control", "public, max-age=60")], request=auth)
    assert reused([("cache-control", "s-maxage=60")], request=auth)


def test_set_cookie_responses_are_not_shared_unless_the_rule_says_so__rfc9111_7_3() -> None:
    assert store([FRESH, ("set-cookie", "a=b")]).reason == "set-cookie"
    decision = store([FRESH, ("set-cookie", "a=b")], policy=CachePolicy(store_set_cookie=True))
    assert decision.stored is not None and ("set-cookie", "a=b") in decision.stored.headers


def test_vary_star_is_not_stored__rfc9111_4_1() -> None:
    assert store([FRESH, ("vary", "*")]).reason == "vary"


def test_without_freshness_or_validator_nothing_is_stored__rfc9111_4_2_2() -> None:
    assert store([]).reason == "no-freshness"
    assert store([], policy=CachePolicy(ttl=60)).reason == "no-freshness"


def test_a_validator_gets_the_rules_ttl_as_default_freshness__rfc9111_4_2_2() -> None:
    decision = store([("etag", '"a"')], policy=CachePolicy(ttl=30))
    assert decision.lifetime is not None and decision.lifetime.source == "default"
    assert decision.lifetime.seconds == 30


def test_a_validator_without_any_ttl_is_stored_to_be_revalidated__rfc9111_4_3() -> None:
    decision = store([("last-modified", date(-3600))])
    assert decision.lifetime is not None and decision.lifetime.seconds == 0
    assert use([("last-modified", date(-3600))]).action == "revalidate"


def test_expired_on_arrival_without_validator_or_window_is_not_stored__rfc9111_4_2() -> None:
    assert store([("cache-control", "max-age=0")]).reason == "expired"
    assert store([("cache-control", "max-age=60"), ("age", "100")]).reason == "expired"
    assert store([("cache-control", "max-age=0, stale-while-revalidate=60")]).store


@pytest.mark.parametrize(
    "name",
    [
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authentication-info",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "transfer-encoding",
        "upgrade",
    ],
)
def test_hop_by_hop_and_proxy_fields_are_not_stored__rfc9111_3_1(name: str) -> None:
    kept = stored([FRESH, (name, "x")]).headers
    assert all(n != name for n, _ in kept)


def test_fields_listed_in_connection_are_not_stored__rfc9111_3_1() -> None:
    kept = dict(stored([FRESH, ("connection", "a, B"), ("a", "1"), ("b", "2"),
                        ("c", "3")]).headers)  # fmt: skip
    assert "a" not in kept and "b" not in kept and kept["c"] == "3"


@pytest.mark.parametrize(
    "name",
    [
        "content-location",
        "content-type",
        "etag",
        "expires",
        "x-frame-options",
        "content-security-policy",
        "x-test",
    ],
)
def test_end_to_end_fields_are_stored__rfc9111_3_1(name: str) -> None:
    assert (name, "v") in stored([FRESH, (name, "v")]).headers


def test_the_origin_date_is_kept_and_a_missing_one_added__rfc9110_6_6_1() -> None:
    assert ("date", date(-30)) in stored([FRESH, ("date", date(-30))]).headers
    assert ("date", date()) in stored([FRESH]).headers


def test_age_is_not_stored_but_counted__rfc9111_4_2_3() -> None:
    response = stored([FRESH, ("age", "100")], delay=2)
    assert all(name != "age" for name, _ in response.headers)
    assert response.initial_age == 102  # corrected_age_value = age_value + response_delay


def test_the_secondary_key_of_vary_is_kept_with_the_response__rfc9111_4_1() -> None:
    response = stored([FRESH, ("vary", "Accept-Language")],
                      request=[("accept-language", "en")])  # fmt: skip
    assert response.vary == ("accept-language",)
    assert response.secondary == (("accept-language", "en"),)


def test_the_rule_may_restrict_statuses__rfc9111_3() -> None:
    policy = CachePolicy(statuses=frozenset((200,)))
    assert store([FRESH], 404, policy=policy).reason == "status"
    assert store([FRESH], 200, policy=policy).store


def test_the_entry_is_kept_for_freshness_plus_windows_plus_a_revalidation_grace() -> None:
    plain = store([("cache-control", "max-age=60, stale-if-error=30")])
    assert plain.keep_for == 90
    validated = store([("cache-control", "max-age=60"), ("etag", '"a"')])
    assert validated.keep_for > 60


def test_policy_validation_names_the_bad_value() -> None:
    with pytest.raises(ValueError, match="max_ttl=0"):
        CachePolicy(max_ttl=0)
    with pytest.raises(TypeError, match="ttl='5'"):
        CachePolicy(ttl="5")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="override=True needs a ttl"):
        CachePolicy(override=True)
    with pytest.raises(TypeError, match="targets="):
        CachePolicy(targets="cdn-cache-control")  # type: ignore[arg-type]


def test_decisions_use_the_given_times_not_the_clock() -> None:
    response = stored([FRESH])
    assert (response.request_time, response.response_time) == (T0, T0)
