"""Parsing of the caching fields: Cache-Control (RFC 9111 §5.2), CDN-Cache-Control
(RFC 9213, RFC 8941 Dictionaries), Expires (§5.3), Age (§5.1), Date and HTTP-date
(RFC 9110 §5.6.7), Vary (§4.1), entity tags (RFC 9110 §8.8.3). Each test names its section."""

from __future__ import annotations

import pytest
from _caching_support import T0, date, reused, use

from interlock.http.caching import (
    DELTA_SECONDS_MAX,
    MAX_STALE_ANY,
    Token,
    age_value,
    cache_control,
    delta_seconds,
    expires_value,
    format_http_date,
    normalise,
    parse_dictionary,
    parse_entity_tag,
    parse_http_date,
    request_directives,
    response_directives,
    split_list,
    vary_fields,
)

# -- Cache-Control syntax ----------------------------------------------------------------------


def test_directive_names_are_case_insensitive__rfc9111_5_2() -> None:
    cc = cache_control(["MaX-AgE=60, nO-StOrE, No-CaChE"])
    assert (cc.max_age, cc.no_store, cc.no_cache) == (60, True, True)


def test_quoted_string_arguments_are_accepted__rfc9111_5_2() -> None:
    assert cache_control(['max-age="3600"']).max_age == 3600


def test_commas_inside_quoted_strings_do_not_split_directives__rfc9110_5_6_1() -> None:
    assert split_list('a="x, y", b') == ['a="x, y"', "b"]
    assert cache_control(['ext="max-age=3600, public", max-age=1']).max_age == 1
    assert not cache_control(['ext="a, public"']).public


@pytest.mark.parametrize(
    "lines",
    [["max-age=1800, max-age=1"], ["max-age=1800", "max-age=1"]],
    ids=["same-line", "separate-lines"],
)
def test_a_repeated_directive_keeps_its_first_occurrence__rfc9111_4_2_1(lines: list[str]) -> None:
    assert cache_control(lines).max_age == 1800


def test_max_age_inside_an_extension_quoted_string_is_not_a_directive__rfc9111_5_2() -> None:
    assert not reused([("cache-control", 'extension="max-age=3600", max-age=1')], after=5)
    assert not reused([("cache-control", 'max-age=1, extension="max-age=3600"')], after=5)


@pytest.mark.parametrize(
    "value",
    ["max-age=-1", "max-age=3600.0", "max-age=3600.5", "max-age=a3600", "max-age=3600a",
     "max-age='3600'", "max-age =3600", "max-age= 3600", "max-age=", 'max-age="-5"'],
)  # fmt: skip
def test_invalid_max_age_makes_the_response_stale__rfc9111_4_2_1(value: str) -> None:
    assert cache_control([value]).max_age == 0
    assert not reused([("cache-control", value)])


def test_leading_zeros_are_delta_seconds__rfc9111_1_2_2() -> None:
    assert cache_control(["max-age=003600"]).max_age == 3600


@pytest.mark.parametrize("value", ["2147483647", "2147483648", "2147483649", "99999999999"])
def test_huge_delta_seconds_read_as_2_31__rfc9111_1_2_2(value: str) -> None:
    assert delta_seconds(value) == min(int(value), DELTA_SECONDS_MAX)
    assert reused([("cache-control", f"max-age={value}")], after=86400 * 365)


def test_unknown_extensions_are_ignored__rfc9111_5_2_3() -> None:
    cc = cache_control(["max-age=60, community=UCI, foo, bar=baz"])
    assert cc.max_age == 60
    assert reused([("cache-control", "max-age=3600, unknown-extension")])


def test_qualified_no_cache_names_fields_not_the_response__rfc9111_5_2_2_4() -> None:
    cc = cache_control(['no-cache="Set-Cookie, X-Foo"'])
    assert not cc.no_cache
    assert cc.no_cache_fields == {"set-cookie", "x-foo"}
    assert cache_control(["no-cache=x-token"]).no_cache_fields == {"x-token"}


def test_qualified_private_names_fields_not_the_response__rfc9111_5_2_2_7() -> None:
    cc = cache_control(['private="authorization-info"'])
    assert not cc.private
    assert cc.private_fields == {"authorization-info"}


@pytest.mark.parametrize("value", ['no-cache=""', 'no-cache="a b"', "no-cache =x"])
def test_an_unreadable_qualified_no_cache_applies_to_everything__rfc9111_5_2_2_4(
    value: str,
) -> None:
    assert cache_control([value]).no_cache


def test_restrictive_directives_win_conflicts__rfc9111_4_2_1() -> None:
    cc = cache_control(["public, private, max-age=60"])
    assert cc.private and cc.public
    assert use([("cache-control", "public, private, max-age=60")]).reason == "miss"


def test_public_with_an_argument_is_ignored__rfc9111_5_2_2_9() -> None:
    assert not cache_control(["public=yes"]).public


def test_rfc5861_windows_are_parsed_and_bad_ones_ignored__rfc5861_3() -> None:
    cc = cache_control(["max-age=1, stale-while-revalidate=30, stale-if-error=abc"])
    assert (cc.stale_while_revalidate, cc.stale_if_error) == (30, None)


def test_request_directives__rfc9111_5_2_1() -> None:
    rd = request_directives(
        [("cache-control", "max-age=5, min-fresh=2, no-cache, no-store, only-if-cached"),
         ("cache-control", "max-stale=9, no-transform, stale-if-error=7")]
    )  # fmt: skip
    assert (rd.max_age, rd.min_fresh, rd.max_stale, rd.stale_if_error) == (5, 2, 9, 7)
    assert rd.no_cache and rd.no_store and rd.only_if_cached and rd.no_transform


def test_max_stale_without_a_value_accepts_any_staleness__rfc9111_5_2_1_2() -> None:
    assert request_directives([("cache-control", "max-stale")]).max_stale == MAX_STALE_ANY


def test_invalid_request_directive_values_are_ignored__rfc9111_5_2_1() -> None:
    rd = request_directives([("cache-control", "max-age=x, min-fresh=-1, max-stale=1.5")])
    assert (rd.max_age, rd.min_fresh, rd.max_stale) == (None, None, None)


def test_pragma_no_cache_only_without_cache_control__rfc9111_5_4() -> None:
    assert request_directives([("pragma", "no-cache")]).no_cache
    assert not request_directives([("pragma", "no-cache"), ("cache-control", "max-age=9")]).no_cache
    assert not request_directives([("pragma", "unrecognised-extension")]).no_cache


def test_response_pragma_no_cache_is_ignored__rfc9111_5_4() -> None:
    assert reused([("cache-control", "max-age=3600"), ("pragma", "no-cache")])


# -- Targeted fields: CDN-Cache-Control (RFC 9213) ---------------------------------------------


def test_structured_dictionary_types__rfc8941_4_2_2() -> None:
    members = parse_dictionary(
        [("cdn-cache-control", 'max-age=60, no-store, a="s", b=tok, c=?0, d=1.5, '
                               'e=:aGk=:, private=("x-a" "x-b");p=1')],
        "cdn-cache-control",
    )  # fmt: skip
    assert members is not None
    assert members["max-age"] == (60, {})
    assert members["no-store"] == (True, {})
    assert members["a"][0] == "s" and isinstance(members["b"][0], Token)
    assert members["c"][0] is False and members["d"][0] == 1.5 and members["e"][0] == b"hi"
    assert members["private"] == ([("x-a", {}), ("x-b", {})], {"p": 1})


@pytest.mark.parametrize(
    "value",
    ["max-age=10000, &&&&&", "MaX-aGe=10", "max-age =3600", "max-age= 3600", "a=1,",
     'a="unterminated', "a=1.2345", "a=1234567890123456", "a=?2"],
)  # fmt: skip
def test_invalid_structured_fields_are_rejected__rfc8941_4_2(value: str) -> None:
    assert parse_dictionary([("cdn-cache-control", value)], "cdn-cache-control") is None


def test_cdn_cache_control_overrides_cache_control_and_expires__rfc9213_2_2() -> None:
    headers = [("cache-control", "no-store"), ("expires", "0"),
               ("cdn-cache-control", "max-age=10000")]  # fmt: skip
    rd = response_directives(headers, ("cdn-cache-control",))
    assert rd.targeted and rd.max_age == 10000 and not rd.no_store
    assert reused(headers, after=5000)


def test_cdn_cache_control_short_max_age_wins_over_long_cache_control__rfc9213_2_2() -> None:
    headers = [("cache-control", "max-age=3600"), ("cdn-cache-control", "max-age=1")]
    assert not reused(headers, after=5)
    headers = [("cache-control", "max-age=1"), ("cdn-cache-control", "max-age=3600")]
    assert reused(headers, after=5)


@pytest.mark.parametrize(
    ("cdn", "expected"),
    [("private", "private"), ("no-store", "no-store")],
)
def test_cdn_cache_control_forbids_storing__rfc9213_2_1(cdn: str, expected: str) -> None:
    headers = [("cache-control", "max-age=10000"), ("cdn-cache-control", cdn),
               ("expires", date(10000))]  # fmt: skip
    assert use(headers).reason == "miss"


def test_cdn_cache_control_no_cache_always_revalidates__rfc9213_2_1() -> None:
    headers = [("cache-control", "max-age=10000"), ("cdn-cache-control", "no-cache"),
               ("etag", '"x"')]  # fmt: skip
    assert use(headers).action == "revalidate"


@pytest.mark.parametrize("cdn", ["max-age=10000, &&&&&", 'max-age="10000"', "max-age=-1"])
def test_an_invalid_cdn_cache_control_falls_back_to_cache_control__rfc9213_2_1(cdn: str) -> None:
    headers = [("cdn-cache-control", cdn), ("cache-control", "no-store")]
    assert not response_directives(headers, ("cdn-cache-control",)).targeted
    assert use(headers).reason == "miss"


def test_cdn_cache_control_max_age_zero_is_stale_even_with_a_future_expires__rfc9213_2_2() -> None:
    assert not reused([("cdn-cache-control", "max-age=0"), ("expires", date(3600))])


def test_cdn_cache_control_qualified_private_is_an_inner_list__rfc9213_2_1() -> None:
    rd = response_directives([("cdn-cache-control", 'max-age=9, private=("x-user")')],
                             ("cdn-cache-control",))  # fmt: skip
    assert rd.private_fields == {"x-user"} and not rd.private


def test_a_rule_chooses_which_targeted_field_to_obey__rfc9213_2_2() -> None:
    headers = [("cdn-cache-control", "max-age=1"), ("acme-cache-control", "max-age=500"),
               ("cache-control", "max-age=5")]  # fmt: skip
    assert response_directives(headers, ("acme-cache-control", "cdn-cache-control")).max_age == 500
    assert response_directives(headers, ()).max_age == 5


# -- Dates, Expires, Age -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT",
     "Sun Nov  6 08:49:37 1994", "SUN, 06 NOV 1994 08:49:37 gmt"],
)  # fmt: skip
def test_the_three_http_date_formats__rfc9110_5_6_7(text: str) -> None:
    assert parse_http_date(text, now=T0) == 784111777.0


@pytest.mark.parametrize(
    "text",
    ["Sun, 06 Nov 1994 08:49:37 UTC", "Sun, 06 Nov 1994 08:49:37 CET",
     "Sun, 06 Nov 94 08:49:37 GMT", "Sun 06 Nov 1994 08:49:37 GMT",
     "Sun,  06 Nov 1994 08:49:37 GMT", "Sun, 06-Nov-1994 08:49:37 GMT",
     "Sun, 06 Nov 1994 08.49.37 GMT", "Sun, 06 Nov 1994 8:49:37 GMT",
     "Sun, 31 Feb 1994 08:49:37 GMT", "0", "", "tomorrow"],
)  # fmt: skip
def test_invalid_http_dates_are_rejected__rfc9110_5_6_7(text: str) -> None:
    assert parse_http_date(text, now=T0) is None


def test_two_digit_years_more_than_50_years_ahead_are_in_the_past__rfc9110_5_6_7() -> None:
    parsed = parse_http_date("Monday, 01-Jan-99 00:00:00 GMT", now=T0)
    assert parsed is not None and format_http_date(parsed).endswith("1999 00:00:00 GMT")


def test_dates_far_in_the_future_parse__rfc9110_5_6_7() -> None:
    assert parse_http_date("Tue, 19 Jan 2038 03:14:08 GMT") == 2**31
    assert reused([("expires", "Fri, 31 Dec 9999 23:59:59 GMT")], after=10**6)


@pytest.mark.parametrize("value", ["0", "-1", "Sun, 06 Nov 1994 08:49:37 UTC", "soon"])
def test_an_invalid_expires_means_already_expired__rfc9111_5_3(value: str) -> None:
    assert expires_value([("expires", value)], T0) == float("-inf")
    assert not reused([("expires", value)])


def test_repeated_expires_lines_make_the_response_stale__rfc9111_4_2_1() -> None:
    assert not reused([("expires", date(3600)), ("expires", date(7200))])


@pytest.mark.parametrize(
    ("lines", "expected"),
    [(["abc"], 0), (["-7200"], 0), (["7200.0"], 0), (["7200, 0"], 7200), (["0, 7200"], 0),
     (["7200", "0"], 7200), (["0", "7200"], 0), (["2147483649"], DELTA_SECONDS_MAX),
     (["0, 0"], 0), ([], 0)],
)  # fmt: skip
def test_age_uses_the_first_member_and_ignores_bad_values__rfc9111_5_1(
    lines: list[str], expected: int
) -> None:
    assert age_value([("age", line) for line in lines]) == expected


@pytest.mark.parametrize(
    ("age", "fresh"),
    [("abc", True), ("-7200", True), ("7200.0", True), ("7200", False), ("2147483648", False)],
)
def test_age_decides_freshness_with_max_age__rfc9111_5_1(age: str, fresh: bool) -> None:
    assert reused([("cache-control", "max-age=3600"), ("age", age)]) is fresh


# -- Vary, entity tags -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "lines",
    [["*"], ["*, *"], ["*", "*"], [", *"], ["", "*"], ["*, Foo"], ["Foo, *"], ["Accept Encoding"]],
)
def test_vary_star_never_matches__rfc9111_4_1(lines: list[str]) -> None:
    assert vary_fields([("vary", line) for line in lines]) is None


def test_vary_field_names_are_normalised__rfc9111_4_1() -> None:
    assert vary_fields(
        [("vary", "Accept-Encoding, accept-language"), ("vary", "ACCEPT-ENCODING")]
    ) == ("accept-encoding", "accept-language")


def test_selecting_values_are_normalised_per_field__rfc9111_4_1() -> None:
    assert normalise("accept-language", ["en, FR;q=0.5"]) == normalise(
        "accept-language", ["fr ; q=0.5", "EN"]
    )
    assert normalise("x-unknown", ["a,   b"]) == normalise("x-unknown", ["a", "b"])
    assert normalise("x-unknown", ["A"]) != normalise("x-unknown", ["a"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [('"abc"', ('"abc"', False)), ('W/"abc"', ('"abc"', True)), ("abc", ('"abc"', False)),
     ('w/"abc"', None), ('W\\"abc"', None), ('"a"b"', None)],
)  # fmt: skip
def test_entity_tag_syntax__rfc9110_8_8_3(text: str, expected: tuple[str, bool] | None) -> None:
    tag = parse_entity_tag(text)
    assert (None if tag is None else (tag.opaque, tag.weak)) == expected
