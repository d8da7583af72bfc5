"""Freshness, age, serving stale and request directives (RFC 9111 §4.2, §4.2.3, §4.2.4,
§5.2.1, §5.2.2; RFC 5861)."""

from __future__ import annotations

import pytest
from _caching_support import T0, date, reused, stored, use

from interlock.http.caching import (
    Action,
    CachePolicy,
    corrected_initial_age,
    current_age,
    lookup,
    served_headers,
    stale_if_error,
)

# -- lifetime ----------------------------------------------------------------------------------


def test_positive_max_age_is_reused_until_stale__rfc9111_5_2_2_1() -> None:
    assert reused([("cache-control", "max-age=3600")], after=3599)
    assert not reused([("cache-control", "max-age=3600")], after=3600)


def test_s_maxage_overrides_max_age__rfc9111_5_2_2_10() -> None:
    assert not reused([("cache-control", "max-age=3600, s-maxage=1")], after=5)
    assert not reused([("cache-control", "s-maxage=1, max-age=3600")], after=5)
    assert not reused([("cache-control", "max-age=3600"), ("cache-control", "s-maxage=1")],
                      after=5)  # fmt: skip
    assert reused([("cache-control", "max-age=1, s-maxage=3600")], after=5)


def test_s_maxage_wins_over_max_age_zero_and_a_past_expires__rfc9111_5_2_2_10() -> None:
    assert reused([("cache-control", "max-age=0, s-maxage=3600"), ("expires", date(-10))])


def test_max_age_wins_over_expires__rfc9111_5_3() -> None:
    assert reused([("cache-control", "max-age=3600"), ("expires", date(-10))])
    assert reused([("cache-control", "max-age=3600"), ("expires", "garbage")])
    assert not reused([("cache-control", "max-age=0"), ("expires", date(3600))])


def test_expires_minus_date_is_the_lifetime__rfc9111_4_2_1() -> None:
    assert reused([("expires", date(3600))], after=3500)
    assert not reused([("expires", date(3600))], after=3601)
    assert not reused([("expires", date(0))], after=0.5)  # "present" Expires
    assert not reused([("expires", date(-3600))])


def test_expires_uses_the_origins_date_not_the_cache_clock__rfc9111_4_2_1() -> None:
    # The origin's clock runs an hour fast: Date and Expires are both an hour ahead.
    fast = [("date", date(3600)), ("expires", date(3600 + 600))]
    assert reused(fast, after=500)
    # Expires before Date: stale whatever the clocks.
    assert not reused([("date", date(3600)), ("expires", date(3000))])


def test_an_invalid_date_falls_back_to_the_receipt_time__rfc9110_6_6_1() -> None:
    assert reused([("date", "never"), ("expires", date(3600))], after=100)


def test_age_above_expires_minus_date_is_stale__rfc9111_4_2_3() -> None:
    assert not reused([("date", date()), ("expires", date(3600)), ("age", "7200")])


def test_max_ttl_caps_explicit_freshness() -> None:
    assert not reused([("cache-control", "max-age=3600")], policy=CachePolicy(max_ttl=10),
                      after=11)  # fmt: skip


def test_override_keeps_the_old_fixed_ttl_behaviour() -> None:
    policy = CachePolicy(ttl=30, override=True)
    assert reused([("cache-control", "max-age=0")], policy=policy, after=29)
    assert not reused([("cache-control", "max-age=3600")], policy=policy, after=31)
    assert use([("cache-control", "no-store")], policy=policy).reason == "miss"


def test_heuristic_freshness_only_when_the_rule_opts_in__rfc9111_4_2_2() -> None:
    headers = [("last-modified", date(-100_000))]
    assert not reused(headers, after=60)  # stored, revalidated on use
    policy = CachePolicy(heuristic=True)
    assert reused(headers, policy=policy, after=9_999)  # 10% of 100000 s
    assert not reused(headers, policy=policy, after=10_001)


def test_heuristic_freshness_without_last_modified_uses_the_rules_ttl__rfc9111_4_2_2() -> None:
    policy = CachePolicy(heuristic=True, ttl=60)
    assert reused([], policy=policy, after=59)
    assert not reused([], policy=policy, after=61)
    assert use([], policy=policy, status=500).reason == "miss"  # not heuristically cacheable


def test_heuristic_freshness_is_capped_by_max_ttl__rfc9111_4_2_2() -> None:
    policy = CachePolicy(heuristic=True, max_ttl=100)
    assert not reused([("last-modified", date(-100_000))], policy=policy, after=101)


def test_public_allows_heuristics_for_other_statuses__rfc9111_4_2_2() -> None:
    policy = CachePolicy(heuristic=True, ttl=60)
    assert reused([("cache-control", "public")], policy=policy, status=302)


# -- age ---------------------------------------------------------------------------------------


def test_current_age_follows_the_full_algorithm__rfc9111_4_2_3() -> None:
    headers = [("date", date(-10)), ("age", "3")]
    initial = corrected_initial_age(headers, T0 - 2, T0)
    # apparent_age = 10; corrected_age_value = 3 + 2 (response_delay); max = 10
    assert initial == 10
    assert current_age(initial, T0, T0 + 5) == 15  # + resident_time
    assert corrected_initial_age([("date", date(10)), ("age", "30")], T0 - 1, T0) == 31


def test_apparent_age_is_never_negative__rfc9111_4_2_3() -> None:
    assert corrected_initial_age([("date", date(60))], T0, T0) == 0


def test_served_responses_carry_age_and_keep_date__rfc9111_5_1() -> None:
    response = stored([("cache-control", "max-age=3600"), ("date", date(-10)),
                       ("expires", date(3600))])  # fmt: skip
    result = lookup(response, "GET", [], CachePolicy(), T0 + 20)
    assert result.freshness is not None
    headers = dict(served_headers(response, result.freshness))
    assert headers["age"] == "30" and headers["date"] == date(-10)
    assert headers["expires"] == date(3600)


def test_age_header_is_capped_at_2_31__rfc9111_1_2_2() -> None:
    result = use([("cache-control", "max-age=9"), ("age", "2147483649"), ("etag", '"a"')])
    assert result.age == "2147483648"


# -- no-cache, must-revalidate, stale ----------------------------------------------------------


@pytest.mark.parametrize("value", ["no-cache", "No-CaChE", "no-cache, max-age=3600"])
def test_no_cache_is_stored_but_always_revalidated__rfc9111_5_2_2_4(value: str) -> None:
    headers = [("cache-control", value), ("expires", date(3600)), ("etag", '"a"')]
    result = use(headers)
    assert (result.action, result.reason) == (Action.REVALIDATE, "no-cache")


def test_must_revalidate_is_fresh_then_always_revalidated__rfc9111_5_2_2_2() -> None:
    headers = [("cache-control", "max-age=60, must-revalidate"), ("etag", '"a"')]
    assert use(headers, after=30).action == "fresh"
    assert use(headers, after=61).action == "revalidate"


def test_immutable_is_fresh_then_revalidated__rfc8246_2() -> None:
    headers = [("cache-control", "max-age=60, immutable"), ("etag", '"a"')]
    assert use(headers, after=30).action == "fresh"
    assert use(headers, after=61).action == "revalidate"


@pytest.mark.parametrize(
    "value",
    ["must-revalidate", "proxy-revalidate", "no-cache", "s-maxage=1"],
)
def test_stale_is_never_served_when_directives_forbid_it__rfc9111_4_2_4(value: str) -> None:
    cc = f"max-age=1, {value}" if "s-maxage" not in value else value
    headers = [("cache-control", cc), ("etag", '"a"')]
    policy = CachePolicy(stale_while_revalidate=600, stale_if_error=600)
    assert use(headers, after=5, policy=policy,
               request=[("cache-control", "max-stale")]).action == "revalidate"  # fmt: skip
    response = stored(headers, policy=policy)
    assert not stale_if_error(response, [("cache-control", "max-stale")], policy, T0 + 5, 503)


def test_stale_while_revalidate_serves_stale_inside_its_window__rfc5861_3() -> None:
    headers = [("cache-control", "max-age=1, stale-while-revalidate=60")]
    assert use(headers, after=30).action == "stale-while-revalidate"
    assert use(headers, after=62).action == "revalidate"


def test_the_rules_stale_window_applies_without_one_from_the_origin__rfc5861_3() -> None:
    policy = CachePolicy(stale_while_revalidate=60)
    assert use([("cache-control", "max-age=1")], policy=policy,
               after=30).action == "stale-while-revalidate"  # fmt: skip
    # s-maxage implies proxy-revalidate (§5.2.2.10): the rule's window does not apply ...
    assert use([("cache-control", "s-maxage=1"), ("etag", '"a"')], policy=policy,
               after=30).action == "revalidate"  # fmt: skip
    # ... but the origin's own, explicit window does
    assert use([("cache-control", "s-maxage=1, stale-while-revalidate=60")],
               after=30).action == "stale-while-revalidate"  # fmt: skip


def test_must_revalidate_beats_stale_while_revalidate__rfc9111_4_2_4() -> None:
    headers = [("cache-control", "max-age=1, must-revalidate, stale-while-revalidate=60")]
    assert use(headers, after=5).action == "revalidate"


def test_stale_if_error_serves_stale_on_errors_within_its_window__rfc5861_4() -> None:
    response = stored([("cache-control", "max-age=1, stale-if-error=60")])
    assert stale_if_error(response, [], CachePolicy(), T0 + 30, 503)
    assert stale_if_error(response, [], CachePolicy(), T0 + 30, None)  # the handler raised
    assert not stale_if_error(response, [], CachePolicy(), T0 + 30, 404)
    assert not stale_if_error(response, [], CachePolicy(), T0 + 62, 500)


def test_the_request_may_ask_for_stale_if_error__rfc5861_4() -> None:
    response = stored([("cache-control", "max-age=1"), ("etag", '"a"')])
    request = [("cache-control", "stale-if-error=60")]
    assert stale_if_error(response, request, CachePolicy(), T0 + 30, 502)
    assert not stale_if_error(response, [], CachePolicy(), T0 + 30, 502)


def test_stale_is_not_served_without_permission__rfc9111_4_2_4() -> None:
    assert use([("cache-control", "max-age=1"), ("etag", '"a"')], after=5).action == "revalidate"


# -- request directives ------------------------------------------------------------------------

FRESH = [("cache-control", "max-age=3600"), ("etag", '"a"')]


def test_request_max_age_zero_revalidates_a_fresh_response__rfc9111_5_2_1_1() -> None:
    result = use(FRESH, request=[("cache-control", "max-age=0")])
    assert (result.action, result.reason) == (Action.REVALIDATE, "max-age")


def test_request_max_age_compares_with_the_current_age__rfc9111_5_2_1_1() -> None:
    assert use(FRESH, after=5, request=[("cache-control", "max-age=10")]).action == "fresh"
    aged = [*FRESH, ("age", "1800")]
    assert use(aged, request=[("cache-control", "max-age=600")]).action == "revalidate"


def test_request_max_stale_accepts_stale_responses__rfc9111_5_2_1_2() -> None:
    stale = [("cache-control", "max-age=1"), ("etag", '"a"')]
    assert use(stale, after=100, request=[("cache-control", "max-stale=1000")]).action == "stale"
    assert use(stale, after=100, request=[("cache-control", "max-stale")]).action == "stale"
    assert use(stale, after=2000,
               request=[("cache-control", "max-stale=1000")]).action == "revalidate"  # fmt: skip
    aged = [("cache-control", "max-age=1"), ("age", "500"), ("etag", '"a"')]
    assert use(aged, request=[("cache-control", "max-stale=1000")]).action == "stale"


def test_request_min_fresh_wants_remaining_freshness__rfc9111_5_2_1_3() -> None:
    assert use(FRESH, after=3000, request=[("cache-control", "min-fresh=1000")]).action == (
        "revalidate"
    )
    aged = [*FRESH, ("age", "3000")]
    assert use(aged, request=[("cache-control", "min-fresh=1000")]).reason == "min-fresh"
    assert use(FRESH, request=[("cache-control", "min-fresh=10")]).action == "fresh"


@pytest.mark.parametrize(
    "request_headers", [[("cache-control", "no-cache")], [("pragma", "no-cache")]]
)
def test_request_no_cache_revalidates_instead_of_reloading__rfc9111_5_2_1_4(
    request_headers: list[tuple[str, str]],
) -> None:
    assert use(FRESH, request=request_headers).action == "revalidate"


def test_request_no_store_bypasses_the_cache__rfc9111_5_2_1_5() -> None:
    assert use(FRESH, request=[("cache-control", "no-store")]).reason == "request-no-store"


def test_only_if_cached_answers_504_when_nothing_fits__rfc9111_5_2_1_7() -> None:
    oic = [("cache-control", "only-if-cached")]
    assert lookup(None, "GET", oic, CachePolicy(), T0).action == "gateway-timeout"
    assert use(FRESH, request=oic).action == "fresh"
    stale = [("cache-control", "max-age=1"), ("etag", '"a"')]
    assert use(stale, after=5, request=oic).action == "gateway-timeout"
    assert use(stale, after=5, request=[("cache-control", "only-if-cached, max-stale")]).action == (
        "stale"
    )


def test_a_missing_stored_response_is_a_miss__rfc9111_4() -> None:
    assert lookup(None, "GET", [], CachePolicy(), T0).action == "miss"


def test_head_is_answered_from_the_stored_get__rfc9110_9_3_2() -> None:
    assert use(FRESH, method="HEAD").action == "fresh"


def test_unsafe_methods_are_never_answered_from_the_cache__rfc9111_4() -> None:
    assert use(FRESH, method="POST").reason == "method"


def test_origin_only_conditionals_go_to_the_origin__rfc9111_4_3_2() -> None:
    assert use(FRESH, request=[("if-match", '"a"')]).reason == "origin-conditional"
    assert use(FRESH, request=[("if-unmodified-since", date())]).reason == "origin-conditional"


# -- Vary on lookup ----------------------------------------------------------------------------


def test_vary_reuses_only_matching_requests__rfc9111_4_1() -> None:
    headers = [*FRESH, ("vary", "Accept-Language, X-Foo")]
    first = [("accept-language", "en"), ("x-foo", "1")]
    assert use(headers, first_request=first, request=first).action == "fresh"
    assert use(headers, first_request=first,
               request=[("accept-language", "fr"), ("x-foo", "1")]).reason == "vary"  # fmt: skip
    assert use(headers, first_request=first,
               request=[("accept-language", "en")]).reason == "vary"  # fmt: skip
    assert use(headers, first_request=[("accept-language", "en")],
               request=first).reason == "vary"  # fmt: skip
    # normalised values: order, case and whitespace of Accept-Language do not matter
    first = [("accept-language", "en, fr"), ("x-foo", "1")]
    later = [("accept-language", "FR ,EN"), ("x-foo", "1")]
    assert use(headers, first_request=first, request=later).action == "fresh"


def test_vary_omitted_in_both_requests_matches__rfc9111_4_1() -> None:
    headers = [*FRESH, ("vary", "a, b, c")]
    assert use(headers, first_request=[("a", "1")], request=[("a", "1")]).action == "fresh"


def test_headers_outside_vary_do_not_select__rfc9111_4_1() -> None:
    headers = [*FRESH, ("vary", "a")]
    assert use(headers, first_request=[("a", "1"), ("b", "x")],
               request=[("a", "1"), ("b", "y")]).action == "fresh"  # fmt: skip


def test_vary_combines_field_lines__rfc9111_4_1() -> None:
    headers = [*FRESH, ("vary", "x-foo")]
    assert use(headers, first_request=[("x-foo", "a"), ("x-foo", "b")],
               request=[("x-foo", "a, b")]).action == "fresh"  # fmt: skip
