"""Invalid configuration fails at construction with a message that names the fix."""

from __future__ import annotations

import pytest

from interlock import ConfigError, Interlock
from interlock._config import load_settings
from interlock._keys import encode_key
from interlock.backends._sentinel_url import parse_sentinel_url, redact_url


@pytest.mark.parametrize(
    ("url", "fix"),
    [
        ("localhost:6379", "redis://host:6379/0"),
        ("memcached://x", "use one of"),
        ("redis://", "names no host"),
        ("redis+cluster://h1", "host:port"),
    ],
)
def test_bad_urls_name_the_fix(url: str, fix: str) -> None:
    with pytest.raises(ConfigError, match=fix):
        Interlock(url)


@pytest.mark.parametrize(
    ("options", "fix"),
    [
        ({"namespace": "has space"}, "1-64 characters"),
        ({"socket_timeout": -1}, "positive"),
        ({"socket_timeout": "soon"}, "not a number"),
        ({"lock_ttl": float("nan")}, "positive"),
        ({"label_cap": 0}, "integer ≥ 1"),
        ({"sockettimeout": 1}, "valid options are"),
    ],
)
def test_bad_options_name_the_fix(options: dict[str, object], fix: str) -> None:
    with pytest.raises(ConfigError, match=fix):
        Interlock(**options)  # type: ignore[arg-type]


def test_config_errors_are_value_errors() -> None:
    with pytest.raises(ValueError, match="namespace"):
        Interlock(namespace="")


def test_environment_fills_unset_options() -> None:
    env = {"INTERLOCK_URL": "mem://env", "INTERLOCK_NAMESPACE": "shop", "INTERLOCK_LOCK_TTL": "5"}
    settings = load_settings(environ=env)
    assert (settings.url, settings.namespace, settings.lock_ttl) == ("mem://env", "shop", 5.0)
    assert load_settings("mem://arg", environ=env, namespace="arg").namespace == "arg"
    with pytest.raises(ConfigError, match="INTERLOCK_SOCKET_TIMEOUT"):
        load_settings(environ={"INTERLOCK_SOCKET_TIMEOUT": "fast"})


def test_lock_arguments_are_validated() -> None:
    il = Interlock()
    with pytest.raises(ConfigError, match="metric labels"):
        il.lock("account id", 1)
    with pytest.raises(ConfigError, match="ttl"):
        il.lock("account", 1, ttl=0)
    with pytest.raises(ConfigError, match="timeout"):
        il.lock("account", 1, timeout=-1)
    with pytest.raises(TypeError, match="str, int or a tuple"):
        il.lock("account", 1.5)
    il.close()


def test_keys_are_encoded_and_long_keys_hashed() -> None:
    assert encode_key(("a:b", 7)) == "a%3Ab:7"
    assert encode_key("{x}") == "%7Bx%7D"
    assert encode_key(42) == encode_key("42")
    long = encode_key("x" * 500)
    assert long.startswith("#") and len(long) == 65


# -- Sentinel URLs: query options, credentials, TLS ------------------------------------------

SENTINEL = "redis+sentinel://app:m%40ster@h1:26379,h2:26380/mymaster/2"


def test_sentinel_credentials_are_separate_and_percent_decoded() -> None:
    target = parse_sentinel_url(
        f"{SENTINEL}?sentinel_username=watch&sentinel_password=s%26nt%3Fl%23%25+pw"
    )
    assert target.sentinels == (("h1", 26379), ("h2", 26380))
    assert (target.service, target.db) == ("mymaster", 2)
    assert not target.ssl and not target.sentinel_ssl
    assert target.master_options() == {"db": 2, "username": "app", "password": "m@ster"}
    assert target.sentinel_options() == {"username": "watch", "password": "s&nt?l#%+pw"}
    assert "m@ster" not in repr(target) and "s&nt" not in repr(target)


def test_sentinels_get_no_credentials_unless_given() -> None:
    # the master's password is never tried on the sentinels
    assert parse_sentinel_url(SENTINEL).sentinel_options() == {}


@pytest.mark.parametrize(
    ("url", "master_tls", "sentinel_tls"),
    [
        (SENTINEL, False, False),
        ("rediss+sentinel://h:1/m", True, True),
        ("rediss+sentinel://h:1/m?sentinel_ssl=false", True, False),
        ("rediss+sentinel://h:1/m?sentinel_ssl=0", True, False),
        ("redis+sentinel://h:1/m?sentinel_ssl=TRUE", False, True),
    ],
)
def test_tls_to_the_sentinels_follows_the_scheme_unless_set(
    url: str, master_tls: bool, sentinel_tls: bool
) -> None:
    target = parse_sentinel_url(url)
    assert (target.ssl, target.sentinel_ssl) == (master_tls, sentinel_tls)
    assert ("ssl" in target.master_options()) is master_tls
    assert ("ssl" in target.sentinel_options()) is sentinel_tls


def test_ssl_options_go_to_every_tls_connection() -> None:
    url = (
        "rediss+sentinel://h:1/m?ssl_ca_certs=/etc/ca%20dir/ca.pem&ssl_certfile=/c.pem"
        "&ssl_keyfile=/k.pem&ssl_cert_reqs=Required"
    )
    tls = {
        "ssl": True,
        "ssl_ca_certs": "/etc/ca dir/ca.pem",
        "ssl_certfile": "/c.pem",
        "ssl_keyfile": "/k.pem",
        "ssl_cert_reqs": "required",
    }
    target = parse_sentinel_url(url)
    assert target.sentinel_options() == tls
    assert target.master_options() == {"db": 0, "username": None, "password": None, **tls}
    only_sentinels = parse_sentinel_url("redis+sentinel://h:1/m?sentinel_ssl=1&ssl_ca_certs=/a")
    assert "ssl_ca_certs" not in only_sentinels.master_options()
    assert only_sentinels.sentinel_options()["ssl_ca_certs"] == "/a"


@pytest.mark.parametrize(
    ("query", "fix"),
    [
        ("password=x", r"unknown query option\(s\) password in .*; valid options are sentinel_"),
        ("ssl=true&db=1", r"unknown query option\(s\) db, ssl"),
        ("sentinel_password=a&sentinel_password=b", "given twice"),
        ("sentinel_password=", "has no value"),
        ("sentinel_username", "has no value"),
        ("sentinel_ssl=maybe", "sentinel_ssl=true or sentinel_ssl=false"),
        ("ssl_ca_certs=/ca.pem", "no connection uses TLS; use rediss\\+sentinel://"),
        ("sentinel_ssl=true&ssl_keyfile=/k.pem", "ssl_keyfile .* needs ssl_certfile"),
        ("sentinel_ssl=true&ssl_cert_reqs=always", "none, optional, required"),
    ],
)
def test_bad_sentinel_query_options_name_the_fix(query: str, fix: str) -> None:
    with pytest.raises(ConfigError, match=fix):
        Interlock(f"{SENTINEL}?{query}")


@pytest.mark.parametrize(
    "url",
    [
        "redis+sentinel://app:t0p-s3cret@h1:26379/mymaster?bogus=1",
        "redis+sentinel://app:t0p-s3cret@h1:x/mymaster",
        "redis+sentinel://app:t0p-s3cret@h1:1/mymaster/db",
        "redis+sentinel://app:t0p#s3cret@h1:1/mymaster",  # an unencoded '#'
        "redis+sentinel://h1:1/mymaster?sentinel_password=t0p-s3cret&sentinel_ssl=perhaps",
        "redis+sentinel://h1:1/mymaster?sentinel_password=t0p-s3cret&ssl_ca_certs=/ca",
        "redis+sentinel://h1:1?sentinel_password=t0p-s3cret",
        "redis+cluster://app:t0p-s3cret@h1",
    ],
)
def test_config_errors_never_show_passwords(url: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Interlock(url)
    assert "s3cret" not in str(raised.value)
    assert "***" in str(raised.value)


def test_reprs_never_show_passwords() -> None:
    url = "rediss+sentinel://app:t0p-s3cret@h1:1/m?sentinel_password=s3cret-2&ssl_ca_certs=/ca"
    shown = "rediss+sentinel://app:***@h1:1/m?sentinel_password=***&ssl_ca_certs=/ca"
    assert redact_url(url) == shown
    il = Interlock(url)  # no I/O until the first command
    try:
        for text in (repr(il), repr(il.settings), il.backend.url):
            assert shown in text and "s3cret" not in text
    finally:
        il.close()
    assert redact_url("redis://h:6379/0") == "redis://h:6379/0"
    assert redact_url("redis://:pw@h/0?password=x&db=1") == "redis://:***@h/0?password=***&db=1"
