"""Backend URLs: every malformed one is a ConfigError naming the bad part, every valid one
means exactly what it says (fuzzed with hypothesis for every scheme)."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from redis.connection import parse_url as redis_py_parse_url

from interlock import ConfigError, Interlock
from interlock._config import SCHEMES, load_settings
from interlock.backends._redis_url import parse_redis_url
from interlock.backends._sentinel_url import parse_sentinel_url
from services import RedisServer, redis_command

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- strategies --------------------------------------------------------------------------

_LABEL = st.from_regex(r"\A[a-z0-9](?:[a-z0-9-]{0,20}[a-z0-9])?\Z")
hostnames = st.lists(_LABEL, min_size=1, max_size=4).map(".".join)
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)
hosts = st.one_of(hostnames, ipv4, ipv6)
ports = st.integers(1, 65535)
dbs = st.integers(0, 2**31 - 1)
secrets = st.text(min_size=1, max_size=30)  # anything, percent-encoded in the URL


def _netloc_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _userinfo(username: str | None, password: str | None) -> str:
    if username is None and password is None:
        return ""
    user = quote(username or "", safe="")
    return f"{user}:{quote(password, safe='')}@" if password is not None else f"{user}@"


@st.composite
def single_node_urls(draw: st.DrawFn) -> tuple[str, dict[str, object]]:
    scheme = draw(st.sampled_from(["redis", "rediss"]))
    host, port, db = draw(hosts), draw(st.none() | ports), draw(st.none() | dbs)
    username, password = draw(st.none() | secrets), draw(st.none() | secrets)
    tls: dict[str, str] = {}
    if scheme == "rediss":
        tls = draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "ssl_ca_certs": secrets,
                    "ssl_cert_reqs": st.sampled_from(["none", "optional", "required"]),
                },
            )
        )
    url = f"{scheme}://{_userinfo(username, password)}{_netloc_host(host)}"
    url += f":{port}" if port is not None else ""
    url += f"/{db}" if db is not None else draw(st.sampled_from(["", "/"]))
    if tls:
        url += "?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in tls.items())
    parts: dict[str, object] = {
        "scheme": scheme,
        "nodes": ((host.lower(), port or 6379),),
        "db": db or 0,
        "username": username or None,
        "password": password,
        "tls": tls,
    }
    return url, parts


@st.composite
def cluster_urls(draw: st.DrawFn) -> tuple[str, dict[str, object]]:
    scheme = draw(st.sampled_from(["redis+cluster", "rediss+cluster"]))
    nodes = draw(st.lists(st.tuples(hosts, ports), min_size=1, max_size=4))
    username, password = draw(st.none() | secrets), draw(st.none() | secrets)
    netloc = ",".join(f"{_netloc_host(h)}:{p}" for h, p in nodes)
    url = f"{scheme}://{_userinfo(username, password)}{netloc}" + draw(st.sampled_from(["", "/"]))
    parts: dict[str, object] = {
        "scheme": scheme,
        "nodes": tuple((h.lower(), p) for h, p in nodes),
        "db": 0,
        "username": username or None,
        "password": password,
    }
    return url, parts


@st.composite
def sentinel_urls(draw: st.DrawFn) -> tuple[str, dict[str, object]]:
    scheme = draw(st.sampled_from(["redis+sentinel", "rediss+sentinel"]))
    sentinels = draw(st.lists(st.tuples(hosts, ports), min_size=1, max_size=3))
    service = draw(st.text(min_size=1, max_size=20).filter(lambda s: "/" not in s))
    db = draw(st.none() | dbs)
    username, password = draw(st.none() | secrets), draw(st.none() | secrets)
    sentinel_password = draw(st.none() | secrets)
    netloc = ",".join(f"{_netloc_host(h)}:{p}" for h, p in sentinels)
    url = f"{scheme}://{_userinfo(username, password)}{netloc}/{quote(service, safe='')}"
    url += f"/{db}" if db is not None else ""
    if sentinel_password is not None:
        url += f"?sentinel_password={quote(sentinel_password, safe='')}"
    parts: dict[str, object] = {
        "sentinels": tuple((h.lower(), p) for h, p in sentinels),
        "service": service,
        "db": db or 0,
        "username": username or None,
        "password": password,
        "sentinel_password": sentinel_password,
        "ssl": scheme.startswith("rediss"),
    }
    return url, parts


valid_urls = st.one_of(single_node_urls(), cluster_urls(), sentinel_urls())
URL_CHARS = st.characters(codec="utf-8") | st.sampled_from(list(":/@?#&=[],%.+ \x00\n"))


@st.composite
def mutated_urls(draw: st.DrawFn) -> str:
    """A valid URL with characters inserted, deleted or replaced somewhere."""
    url, _ = draw(valid_urls)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(url)))
        edit = draw(st.sampled_from(["insert", "delete", "replace"]))
        text = draw(st.text(URL_CHARS, min_size=1, max_size=4))
        if edit == "insert":
            url = url[:at] + text + url[at:]
        elif edit == "delete":
            url = url[:at] + url[at + len(text) :]
        else:
            url = url[:at] + text + url[at + len(text) :]
    return url


def _accepts_or_names_the_fix(url: str) -> None:
    """The settings accept ``url`` or raise ConfigError: never another exception."""
    message = "accepted"
    try:
        load_settings(url, environ={})
    except ConfigError as exc:
        message = str(exc)
    assert message, url


# -- valid URLs round-trip their parts ----------------------------------------------------


@FUZZ
@given(single_node_urls())
@example(("redis://127.0.0.1:6379/0", {"scheme": "redis", "nodes": (("127.0.0.1", 6379),),
          "db": 0, "username": None, "password": None, "tls": {}}))  # fmt: skip
def test_single_node_urls_round_trip_and_agree_with_redis_py(
    case: tuple[str, dict[str, object]],
) -> None:
    url, parts = case
    assert load_settings(url, environ={}).url == url
    target = parse_redis_url(url)
    got = {k: getattr(target, k) for k in parts} | {"tls": dict(target.tls)}
    assert got == parts, url
    # redis-py reads the same node from the URL (the backend passes the parts themselves)
    theirs = redis_py_parse_url(url)
    (host, port), = target.nodes  # fmt: skip
    assert (theirs["host"], theirs.get("port", 6379), theirs.get("db", 0)) == (
        host, port, target.db,
    )  # fmt: skip
    assert (theirs.get("username"), theirs.get("password")) == (target.username, target.password)


@FUZZ
@given(cluster_urls())
def test_cluster_urls_round_trip(case: tuple[str, dict[str, object]]) -> None:
    url, parts = case
    assert load_settings(url, environ={}).url == url
    target = parse_redis_url(url)
    assert {k: getattr(target, k) for k in parts} == parts, url
    assert target.ssl == url.startswith("rediss")


@FUZZ
@given(sentinel_urls())
def test_sentinel_urls_round_trip(case: tuple[str, dict[str, object]]) -> None:
    url, parts = case
    assert load_settings(url, environ={}).url == url
    target = parse_sentinel_url(url)
    assert {k: getattr(target, k) for k in parts} == parts, url


# -- malformed URLs are ConfigErrors -------------------------------------------------------


@FUZZ
@given(st.sampled_from([*SCHEMES, "unix", "http", ""]), st.text(URL_CHARS, max_size=60))
@example("redis", "127.0.0.1:99999/0")
@example("redis", "[::1")
@example("redis+sentinel", "h:²/m")
@example("redis", "h/²")
def test_any_text_after_a_scheme_is_accepted_or_a_config_error(scheme: str, rest: str) -> None:
    _accepts_or_names_the_fix(f"{scheme}://{rest}")


@FUZZ
@given(mutated_urls())
def test_mutated_urls_are_accepted_or_a_config_error(url: str) -> None:
    _accepts_or_names_the_fix(url)


@FUZZ
@given(
    st.sampled_from(["redis", "rediss", "redis+cluster", "rediss+sentinel"]),
    hosts,
    st.one_of(
        st.integers(65536, 10**12).map(str),
        st.just("0"),
        st.text(min_size=1, max_size=6).filter(lambda t: not t.isascii() or not t.isdigit()),
    ),
)
def test_a_bad_port_is_named(scheme: str, host: str, port: str) -> None:
    url = f"{scheme}://{_netloc_host(host)}:{quote(port, safe='')}/m"
    with pytest.raises(ConfigError, match=r"port .* is invalid; a port is a number from 1 to"):
        load_settings(url, environ={})


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://127.0.0.1:99999/0", r"port '99999' of host '127.0.0.1' .* from 1 to 65535"),
        ("redis://host/abc", r"database 'abc' in 'redis://host/abc' is not a number"),
        ("redis://host/-1", r"database '-1' .* is not a number"),
        ("redis://host/0/1", r"database '0/1' .* is not a number"),
        ("redis://h:6379:1/0", r"port '6379:1' of host 'h'"),
        ("redis://[::1/0", r"not a host name or IP address"),
        ("redis://ex ample.com/0", r"not a host name or IP address"),
        ("redis://h1:1,h2:2/0", r"names several hosts; .*redis\+cluster://"),
        ("redis://h/0?db=1", r"query option db .* set it in the URL's path"),
        ("redis://h/0?socket_timeout=1", r"socket_timeout= or INTERLOCK_SOCKET_TIMEOUT"),
        ("redis://h/0?protocol=3", r"unknown query option\(s\) protocol .* valid options are"),
        ("redis://h/0?ssl_ca_certs=/ca.pem", r"no connection uses TLS; use rediss://"),
        ("rediss://h/0?ssl_cert_reqs=always", r"none, optional, required"),
        ("redis+cluster://h1:1/3", r"a Redis Cluster has db 0 only"),
        ("redis+cluster://h1:1,h2", r"cluster node 'h2' .* has no port"),
        ("redis+sentinel://h1:0/m", r"port '0' of sentinel address 'h1'"),
        ("unix:///tmp/redis.sock", r"'unix' is not supported \(a Unix socket"),
    ],
)
def test_bad_urls_name_the_bad_part_and_the_fix(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Interlock(url)


_DBSIZE_OF_DB5 = "redis.call('SELECT', 5) return redis.call('DBSIZE')"


def test_the_backend_uses_the_db_of_the_url(redis_factory: Callable[..., RedisServer]) -> None:
    server = redis_factory()
    with Interlock(f"redis://127.0.0.1:{server.port}/5", namespace="dbcheck") as il:
        with il.lock("job", 1, ttl=10.0):
            in_db5 = redis_command(server.port, "EVAL", _DBSIZE_OF_DB5, "0")
        assert il.lock_info("job", 1) is None
    assert redis_command(server.port, "DBSIZE") == 0  # db 0 untouched
    assert in_db5 >= 1
