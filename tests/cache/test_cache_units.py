"""The cache's pure parts: envelope, serializers, XFetch and jitter, options, breaker, LRU."""

from __future__ import annotations

import datetime as dt
import math
import pickle
import uuid
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from interlock import ConfigError, SerializationError
from interlock._keys import base_key
from interlock.cache import (
    FILL_WINDOW_S,
    cache_options,
    call_ttl,
    default_key,
    entry_keys,
    jittered_ms,
    refresh_early,
    tag_keys,
)
from interlock.cache._entry import HEADER_SIZE, Envelope, encode_envelope
from interlock.cache._local import CLOSED, HALF_OPEN, OPEN, CircuitBreaker, NearCache
from interlock.serializers import JsonSerializer, MsgpackSerializer, PickleSerializer

MSGPACK = MsgpackSerializer()
EXTENDED = {
    "when": dt.datetime(2024, 2, 29, 23, 59, 59, 123456),
    "aware": dt.datetime(2024, 1, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
    "day": dt.date(1999, 12, 31),
    "at": dt.time(8, 30, 15, 5),
    "span": dt.timedelta(days=-1, seconds=5, microseconds=7),
    "price": Decimal("-12.3400"),
    "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "raw": b"\x00\xffbytes",
    "big": 2**100,
    "neg_big": -(2**70),
    1: "int keys stay ints",
    "nested": [{"a": [1, 2.5, None, True, "é"]}],
}


def envelope(value: object, **kw: object) -> Envelope:
    options = {"created_ms": 1_000, "ttl_ms": 2_000, "stale_ms": 500, "delta_us": 40_000}
    options.update(kw)
    return Envelope(encode_envelope(value, MSGPACK, **options))  # type: ignore[arg-type]


def test_msgpack_is_lossless_for_json_and_extended_types() -> None:
    assert MSGPACK.loads(MSGPACK.dumps(EXTENDED)) == EXTENDED
    decoded = MSGPACK.loads(MSGPACK.dumps(EXTENDED))
    assert decoded["aware"].utcoffset() == dt.timedelta(hours=-5)
    assert str(decoded["price"]) == "-12.3400"
    assert MSGPACK.loads(MSGPACK.dumps(Decimal("NaN"))).is_nan()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_msgpack_roundtrips_any_json_value(value: object) -> None:
    assert MSGPACK.loads(MSGPACK.dumps(value)) == value


def test_unsupported_values_raise_serialization_error() -> None:
    with pytest.raises(SerializationError, match="set is not supported"):
        MSGPACK.dumps({1, 2})
    with pytest.raises(SerializationError):
        JsonSerializer().dumps(dt.date.today())
    with pytest.raises(SerializationError):
        MSGPACK.loads(b"\xc1")


def test_envelope_roundtrip_and_fields() -> None:
    entry = envelope({"x": 1}, tags=[("catalog", 7), ("brand%3Aa", 0)])
    assert entry.value(MSGPACK) == {"x": 1}
    assert (entry.created_ms, entry.ttl_ms, entry.stale_ms, entry.delta_us) == (
        1_000, 2_000, 500, 40_000,
    )  # fmt: skip
    assert entry.fresh_until_ms == 3_000 and entry.expires_ms == 3_500
    assert entry.tags == [("catalog", 7), ("brand%3Aa", 0)]
    assert not entry.negative
    assert len(entry.header) == HEADER_SIZE
    assert envelope(None).negative and envelope(None).value(MSGPACK) is None


def test_envelope_is_judged_against_current_tag_versions() -> None:
    entry = envelope(1, tags=[("a", 5), ("b", 0)])
    assert not entry.stale_against({"a": 5, "b": 0})
    assert not entry.stale_against({})  # versions expired: nothing newer happened
    assert entry.stale_against({"a": 6})
    assert entry.stale_against({"b": 1})


def test_large_values_are_compressed_small_ones_not() -> None:
    big = {"text": "abc" * 5000}
    packed = encode_envelope(
        big, MSGPACK, created_ms=0, ttl_ms=1, stale_ms=0, delta_us=0, compress_threshold=1024
    )
    assert len(packed) < 1000
    assert Envelope(packed).value(MSGPACK) == big
    small = encode_envelope(
        "x", MSGPACK, created_ms=0, ttl_ms=1, stale_ms=0, delta_us=0, compress_threshold=1024
    )
    assert Envelope(small).flags == 0


@pytest.mark.parametrize(
    "data",
    [b"", b"il", b"garbage that is long enough to hold a header", pickle.dumps({"a": 1})],
)
def test_foreign_or_truncated_bytes_are_refused(data: bytes) -> None:
    with pytest.raises(SerializationError):
        Envelope(data).value(MSGPACK)


def test_a_payload_of_another_codec_is_refused_unread() -> None:
    signed = PickleSerializer(hmac_key=b"k" * 32)
    data = encode_envelope([1], signed, created_ms=0, ttl_ms=1, stale_ms=0, delta_us=0)
    with pytest.raises(SerializationError, match="codec 3"):
        Envelope(data).value(MSGPACK)


def test_pickle_needs_a_key_and_verifies_it() -> None:
    with pytest.raises(ConfigError, match="hmac_key"):
        PickleSerializer(hmac_key=b"short")
    with pytest.raises(ConfigError, match="refused"):
        cache_options(serializer="pickle")
    signer = PickleSerializer(hmac_key=b"k" * 32)
    value = {"complex": 1 + 2j, "set": {1, 2}}
    assert signer.loads(signer.dumps(value)) == value
    forger = PickleSerializer(hmac_key=b"x" * 32)
    with pytest.raises(SerializationError, match="HMAC"):
        signer.loads(forger.dumps(value))
    with pytest.raises(SerializationError, match="HMAC"):
        signer.loads(b"\x00" * 10)
    assert "k" * 32 not in repr(signer)


def test_xfetch_refreshes_earlier_for_slow_loaders_and_near_expiry() -> None:
    expiry = 10_000
    half = lambda: 0.5  # noqa: E731 - -ln(0.5) ≈ 0.69
    # a 1 s loader with beta 1 refreshes from 0.69 s before expiry
    assert not refresh_early(9_000, expiry, 1_000_000, 1.0, half)
    assert refresh_early(9_400, expiry, 1_000_000, 1.0, half)
    assert not refresh_early(9_400, expiry, 100_000, 1.0, half)  # fast loader: later
    assert refresh_early(9_400, expiry, 100_000, 10.0, half)  # larger beta: earlier
    assert not refresh_early(9_999, expiry, 1_000_000, 0.0, half)  # disabled
    assert refresh_early(9_990, expiry, 20_000, 1.0, lambda: 0.0)  # no division by zero


def test_xfetch_draws_only_when_a_refresh_is_possible() -> None:
    def never() -> float:
        raise AssertionError("drew a random number")

    # 36.8 times the loader's duration before expiry, no draw can trigger a refresh
    assert not refresh_early(0, 40_000, 1_000_000, 1.0, never)
    assert refresh_early(0, 36_000, 1_000_000, 1.0, lambda: 1e-16)


def test_xfetch_probability_matches_the_exponential_law() -> None:
    delta_us, gap_ms = 200_000, 100  # P(refresh) = exp(-gap / delta) = exp(-0.5)
    draws = iter((i + 0.5) / 10_000 for i in range(10_000))
    hits = sum(
        refresh_early(10_000 - gap_ms, 10_000, delta_us, 1.0, lambda: next(draws))
        for _ in range(10_000)
    )
    assert abs(hits / 10_000 - math.exp(-0.5)) < 0.01


def test_jitter_never_exceeds_the_ttl() -> None:
    assert jittered_ms(10.0, 0.1, 0.0) == 10_000
    assert jittered_ms(10.0, 0.1, 1.0) == 9_000
    assert jittered_ms(10.0, 0.0, 0.7) == 10_000
    assert jittered_ms(0.0001, 0.5, 1.0) == 1


def test_options_are_validated_with_the_fix_named() -> None:
    options = cache_options(ttl=30.0)
    assert options.negative_ttl == 10.0 and options.near_ttl == 5.0
    assert options.tag_retention >= 86400
    assert cache_options(ttl=2.0).negative_ttl == 2.0
    for bad in (
        {"ttl": 0},
        {"ttl": "60"},
        {"jitter": 0.9},
        {"near_size": 0},
        {"compress_threshold": -1},
        {"serializer": object()},
        {"tag_retention": 10.0},
        {"near": "yes"},
    ):
        with pytest.raises(ConfigError):
            cache_options(**bad)
    with pytest.raises(ConfigError, match="unknown cache option"):
        cache_options(tll=3)
    with pytest.raises(ConfigError, match="tag_retention"):
        call_ttl(options, 80_000.0, tagged=True)
    assert call_ttl(options, 80_000.0, tagged=False) == 80_000.0
    assert options.tag_retention > 2 * 30 + FILL_WINDOW_S


def test_keys_share_a_hash_tag_and_cannot_escape_it() -> None:
    for key in (42, "abc", "a}b{c:d", ("user", 7), "x" * 500, "é"):
        keys = entry_keys("ns", "products", key)
        assert keys.entry == base_key("ns", "cache", "products", key)
        tag = keys.entry[keys.entry.index("{") : keys.entry.index("}") + 1]
        assert keys.lease.startswith(keys.entry) and tag in keys.generation
        assert keys.entry.count("{") == 1 and keys.entry.count("}") == 1
    assert entry_keys("ns", "p", "1").entry == entry_keys("ns", "p", 1).entry  # documented
    assert entry_keys("ns", "p", ("a:b",)).entry != entry_keys("ns", "p", ("a", "b")).entry
    with pytest.raises(TypeError):
        entry_keys("ns", "p", 1.5)
    with pytest.raises(TypeError):
        tag_keys("ns", "p", "catalog")  # a str is not a list of tags
    assert tag_keys("ns", "p", ["b", "a", "a"]) == (
        ("a", "ns:cache:{p}:tag:a"), ("b", "ns:cache:{p}:tag:b"),
    )  # fmt: skip


def test_default_key_binds_arguments() -> None:
    def load(pid: int, region: str = "eu", *rest: int, **extra: str) -> None: ...

    make = default_key(load)
    assert make(1) == make(pid=1) == make(1, "eu")
    assert make(1)[0].endswith("load") and make(1)[1:] == (1, "eu")
    assert make(1, "us", 5, z="1") == (make(1)[0], 1, "us", 5, "z", "1")


def test_breaker_opens_probes_and_closes() -> None:
    now = [0.0]
    breaker = CircuitBreaker(threshold=2, cooldown=1.0, clock=lambda: now[0])
    assert breaker.allow() and not breaker.failure()
    assert breaker.state == CLOSED
    assert breaker.failure()  # second consecutive failure opens it
    assert breaker.state == OPEN and breaker.degraded and not breaker.allow()
    now[0] = 1.0
    assert breaker.allow() and breaker.state == HALF_OPEN
    assert not breaker.allow()  # one probe at a time
    assert not breaker.failure()  # probe failed: open again (no new transition)
    assert not breaker.allow()
    now[0] = 2.5
    assert breaker.allow()
    assert breaker.success() and breaker.state == CLOSED and not breaker.degraded
    assert not breaker.success()
    assert not breaker.failure()  # a single failure after recovery does not reopen


def test_near_cache_lru_ttl_tags_and_epoch() -> None:
    now = [0.0]
    near = NearCache(size=2, ttl=5.0, clock=lambda: now[0])
    assert near.put("a", 1, negative=False, tags=["t"], fresh_for=10, epoch=0)
    assert near.put("b", 2, negative=False, tags=[], fresh_for=1, epoch=0)
    assert near.get("a") is not None  # a is now most recently used
    near.put("c", 3, negative=False, tags=["t"], fresh_for=10, epoch=0)
    assert near.get("b") is None and len(near) == 2  # b evicted
    near.drop_tag("t")
    assert near.get("a") is None and near.get("c") is None
    assert not near.put("a", 1, negative=False, tags=[], fresh_for=10, epoch=0)  # stale epoch
    assert near.put("a", 1, negative=False, tags=[], fresh_for=0.5, epoch=near.epoch)
    now[0] = 0.6  # capped by the entry's own freshness, not near_ttl
    assert near.get("a") is None
    assert not near.put("x", 1, negative=False, tags=[], fresh_for=0, epoch=near.epoch)
