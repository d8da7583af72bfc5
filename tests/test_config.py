"""Invalid configuration fails at construction with a message that names the fix."""

from __future__ import annotations

import pytest

from interlock import ConfigError, Interlock
from interlock._config import load_settings
from interlock._keys import encode_key


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
