"""Redis Sentinel: locks and cache through ``redis+sentinel://``, and a real failover.

The failover tests use a private master + replica + sentinel (``down-after-milliseconds
1000``). Bound: from SIGKILL of the master, the same client works again on the promoted
replica within ``FAILOVER_BOUND`` seconds (measured ~2.6 s here); in between, every lock call
fails closed with ``BackendUnavailable`` within ``CALL_BOUND`` seconds, never hangs.

Protected sentinels: a master with ``requirepass`` behind a sentinel with a ``requirepass`` of
its own (different; both need percent-encoding in a URL), and the same over TLS everywhere.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from _waits import queued
from interlock import AsyncInterlock, BackendUnavailable, ConfigError, Interlock
from interlock.cli import main
from services import RedisSentinel, make_tls, redis_command

FAILOVER_BOUND = 15.0  # seconds from killing the master to the first successful lock
CALL_BOUND = 2.5  # seconds any single call may take while there is no master


@pytest.fixture
def sentinel() -> Iterator[RedisSentinel]:
    """A private master/replica/sentinel that a test may fail over."""
    with RedisSentinel() as service:
        yield service


def _client(url: str) -> Interlock:
    return Interlock(url, namespace=f"s{uuid.uuid4().hex[:8]}", socket_timeout=0.5,
                     connect_timeout=0.5)


def test_locks_and_cache_through_sentinel(redis_sentinel_url: str) -> None:
    il = Interlock(redis_sentinel_url, namespace=f"s{uuid.uuid4().hex[:8]}")
    other = Interlock(redis_sentinel_url, namespace=il.namespace)
    try:
        with il.lock("account", 1) as lease:
            info = other.lock_info("account", 1)
            assert info is not None and info.fence == lease.fence
            assert other.lock("account", 1, timeout=0.2).acquire(blocking=False) is None
        products = il.cache("products", ttl=30.0)
        assert products.get_or_load(7, lambda: {"id": 7}) == {"id": 7}
        assert other.cache("products", ttl=30.0).get(7) == {"id": 7}
    finally:
        il.close()
        other.close()


@pytest.mark.anyio
async def test_async_locks_through_sentinel(redis_sentinel_url: str) -> None:
    ail = AsyncInterlock(redis_sentinel_url, namespace=f"s{uuid.uuid4().hex[:8]}")
    try:
        async with ail.lock("account", 1) as lease:
            info = await ail.lock_info("account", 1)
            assert info is not None and info.fence == lease.fence
    finally:
        await ail.aclose()


def test_waiter_is_woken_on_the_master(redis_sentinel_url: str) -> None:
    il = _client(redis_sentinel_url)
    try:
        _assert_handoff(il)
    finally:
        il.close()


def _assert_handoff(il: Interlock) -> None:
    """A waiter is handed the lock on release quickly (its signal list), not by TTL timeout."""
    key = uuid.uuid4().hex
    lease = il.lock("handoff", key, ttl=30.0).acquire()
    assert lease is not None
    got: list[float] = []

    def wait() -> None:
        with il.lock("handoff", key, ttl=30.0, timeout=10.0):
            got.append(time.monotonic())

    thread = threading.Thread(target=wait, name="waiter")
    thread.start()
    queued(il, "handoff", key)  # the waiter is queued
    released = time.monotonic()
    lease.release()
    thread.join(12)
    assert got, "waiter never got the lock"
    assert got[0] - released < 2.0


@pytest.mark.parametrize("how", ["kill", "sentinel-failover"])
def test_failover_same_client_recovers_and_fails_closed_meanwhile(
    sentinel: RedisSentinel, how: str
) -> None:
    il = _client(sentinel.url)
    try:
        with il.lock("account", 1):
            pass
        _assert_handoff(il)
        heard: list[bytes] = []
        il.backend.subscribe("failover-probe", heard.append)  # pub/sub on the first master
        old = sentinel.master_port()
        started = time.monotonic()
        if how == "kill":
            sentinel.kill_master()
        else:
            assert sentinel.sentinel_command("SENTINEL", "FAILOVER", sentinel.service) == "OK"
        failures = 0
        attempt = 0
        while True:
            attempt += 1
            call = time.monotonic()
            try:
                lease = il.lock("account", f"k{attempt}", timeout=0.5).acquire()
            except BackendUnavailable:
                failures += 1
                lease = None
            assert time.monotonic() - call < CALL_BOUND, "a lock call hung during failover"
            if lease is not None:
                lease.release()
                if sentinel.master_port() != old:  # SENTINEL FAILOVER answers before it acts
                    break
            assert time.monotonic() - started < FAILOVER_BOUND, "no recovery after failover"
            time.sleep(0.1)
        recovered = time.monotonic() - started
        new = sentinel.wait_failover(old, timeout=5.0)
        assert new != old
        print(f"\n{how}: recovered after {recovered:.2f} s, {failures} BackendUnavailable")
        if how == "kill":
            assert failures > 0  # there was no master for a while: calls failed closed
        # hand-off still works, and the pub/sub listener followed the master to `new` (a
        # demoted master keeps its clients: the listener moves when commands see READONLY)
        _assert_handoff(il)
        deadline = time.monotonic() + 5.0
        while not heard and time.monotonic() < deadline:
            redis_command(new, "PUBLISH", "failover-probe", "after")
            time.sleep(0.1)
        assert heard, f"no pub/sub message from the new master {new}"
    finally:
        il.close()


def test_unknown_service_name_fails_closed_with_a_clear_message(
    redis_sentinel: RedisSentinel,
) -> None:
    url = redis_sentinel.url.replace(f"/{redis_sentinel.service}/", "/no-such-service/")
    il = _client(url)
    try:
        started = time.monotonic()
        with pytest.raises(BackendUnavailable, match="No master found for 'no-such-service'"):
            il.lock("account", 1).acquire()
        assert time.monotonic() - started < CALL_BOUND
    finally:
        il.close()


def test_unreachable_sentinels_fail_fast() -> None:
    il = _client("redis+sentinel://127.0.0.1:1,127.0.0.1:2/mymaster")
    try:
        started = time.monotonic()
        with pytest.raises(BackendUnavailable, match="sentinel"):
            il.lock("account", 1).acquire()
        assert time.monotonic() - started < CALL_BOUND
    finally:
        il.close()


@pytest.mark.parametrize(
    ("url", "fix"),
    [
        ("redis+sentinel://127.0.0.1:26379", "names no Sentinel service"),
        ("redis+sentinel://127.0.0.1:26379/", "redis\\+sentinel://"),
        ("redis+sentinel://127.0.0.1/mymaster", "host:port"),
        ("redis+sentinel://127.0.0.1:26379/mymaster/x", "numeric db"),
        ("rediss+sentinel://127.0.0.1:26379/mymaster/0?ssl=1", "unknown query option.*ssl"),
    ],
)
def test_bad_sentinel_urls_name_the_fix(url: str, fix: str) -> None:
    with pytest.raises(ConfigError, match=fix):
        Interlock(url)


# -- sentinels with a password, and TLS -----------------------------------------------------

MASTER_PW = "m@ster:pw/1"  # the master's requirepass (user info of the URL)
SENTINEL_PW = "s&nt?l#pw%2"  # the sentinel's requirepass (?sentinel_password=)
SECRETS = (MASTER_PW, SENTINEL_PW, quote(MASTER_PW, safe=""), quote(SENTINEL_PW, safe=""))


@pytest.fixture(scope="module")
def protected() -> Iterator[RedisSentinel]:
    """Master and replica with ``requirepass``, a sentinel with another ``requirepass``."""
    with RedisSentinel(password=MASTER_PW, sentinel_password=SENTINEL_PW) as service:
        yield service


@pytest.fixture(scope="module")
def tls_protected(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisSentinel]:
    """The same, with master, replica and sentinel reached over TLS (plain ports kept)."""
    tls = make_tls(tmp_path_factory.mktemp("tls"))
    with RedisSentinel(password=MASTER_PW, sentinel_password=SENTINEL_PW, tls=tls) as service:
        yield service


def _no_secrets(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"a password leaked: {text}"


def _assert_works(url: str) -> None:
    """Locks and cache across two clients, a hand-off, and pub/sub from the master."""
    il = _client(url)
    other = Interlock(url, namespace=il.namespace)
    try:
        with il.lock("account", 1) as lease:
            info = other.lock_info("account", 1)
            assert info is not None and info.fence == lease.fence
        products = il.cache("products", ttl=30.0)
        assert products.get_or_load(7, lambda: {"id": 7}) == {"id": 7}
        assert other.cache("products", ttl=30.0).get(7) == {"id": 7}
        _assert_handoff(il)
        heard = threading.Event()
        il.backend.subscribe("auth-probe", lambda payload: heard.set())  # listener connects
        other.backend.execute("PUBLISH", "auth-probe", b"hello")
        assert heard.wait(2.0), "the pub/sub listener heard nothing"
        _no_secrets(repr(il) + repr(il.settings) + il.backend.url)
    finally:
        il.close()
        other.close()


@pytest.mark.anyio
@pytest.mark.sentinel
async def test_locks_cache_and_pubsub_through_a_password_protected_sentinel(
    protected: RedisSentinel,
) -> None:
    assert f"sentinel_password={quote(SENTINEL_PW, safe='')}" in protected.url
    _assert_works(protected.url)

    ail = AsyncInterlock(protected.url, namespace=f"s{uuid.uuid4().hex[:8]}")
    try:
        async with ail.lock("account", 1) as lease:  # async waiters ride on pub/sub
            info = await ail.lock_info("account", 1)
            assert info is not None and info.fence == lease.fence
    finally:
        await ail.aclose()


@pytest.mark.sentinel
@pytest.mark.parametrize("sentinel_pw", ["wrong-pw", None], ids=["wrong", "missing"])
def test_a_refused_sentinel_login_fails_closed_naming_the_fix(
    protected: RedisSentinel, sentinel_pw: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    # "missing": the master's password is in the URL, and is not tried on the sentinels
    url = protected.url.split("?")[0]
    if sentinel_pw is not None:
        url += f"?sentinel_password={sentinel_pw}"
    il = _client(url)
    caplog.set_level(logging.DEBUG)
    try:
        started = time.monotonic()
        with pytest.raises(BackendUnavailable, match="Sentinel refused the login") as raised:
            il.lock("account", 1).acquire()
        assert time.monotonic() - started < CALL_BOUND
        message = str(raised.value)
        assert "?sentinel_password=" in message and "requirepass" in message
        with pytest.raises(BackendUnavailable):  # the pub/sub listener cannot connect either
            il.backend.subscribe("auth-probe", lambda payload: None)
        _no_secrets(message + repr(il) + caplog.text)
        if sentinel_pw is not None:
            assert sentinel_pw not in message + caplog.text
    finally:
        il.close()


@pytest.mark.sentinel
def test_interlock_check_passes_against_a_protected_sentinel(
    protected: RedisSentinel, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["check", "--url", protected.url, "--namespace", f"c{uuid.uuid4().hex[:8]}"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert re.search(r"ok +topology: master 'mymaster' at 127\.0\.0\.1:\d+ \(master\)", out), out
    _no_secrets(out)

    wrong = protected.url.split("?")[0] + "?sentinel_password=wrong-pw"
    assert main(["check", "--url", wrong, "--timeout", "0.5"]) == 1
    out = capsys.readouterr().out
    assert "Sentinel refused the login" in out and "sentinel_password=" in out, out
    _no_secrets(out)
    assert "wrong-pw" not in out


@pytest.mark.sentinel
def test_tls_to_the_sentinels_and_the_master(tls_protected: RedisSentinel) -> None:
    url = tls_protected.url
    assert url.startswith("rediss+sentinel://") and "ssl_ca_certs=" in url
    _assert_works(url)  # rediss+sentinel://: TLS to the sentinel and to the master


@pytest.mark.sentinel
def test_sentinel_ssl_false_keeps_the_sentinels_on_plain_tcp(
    tls_protected: RedisSentinel, capsys: pytest.CaptureFixture[str]
) -> None:
    assert tls_protected.sentinel is not None and tls_protected.sentinel_tls_port is not None
    # the sentinel's TLS port (which the default, TLS, reaches) refuses plain TCP
    il = _client(tls_protected.url + "&sentinel_ssl=false")
    try:
        started = time.monotonic()
        with pytest.raises(BackendUnavailable, match="No master found"):
            il.lock("account", 1).acquire()
        assert time.monotonic() - started < CALL_BOUND
    finally:
        il.close()
    url = tls_protected.url.replace(
        f":{tls_protected.sentinel_tls_port}/", f":{tls_protected.sentinel.port}/"
    )
    plain = url + "&sentinel_ssl=false"  # TLS to the master only
    il = _client(plain)
    try:
        with il.lock("account", 1) as lease:
            assert lease.fence > 0
    finally:
        il.close()
    status = main(["check", "--url", plain, "--namespace", f"c{uuid.uuid4().hex[:8]}"])
    out = capsys.readouterr().out
    assert status == 0, out


@pytest.mark.sentinel
def test_ssl_options_reach_the_sentinels(
    tls_protected: RedisSentinel, tmp_path: Path
) -> None:
    """A CA that did not sign the sentinel's certificate is refused: the options are used."""
    other_ca = make_tls(tmp_path)["ca"]
    assert tls_protected.tls is not None
    url = tls_protected.url.replace(quote(tls_protected.tls["ca"]), quote(other_ca))
    il = _client(url)
    try:
        with pytest.raises(BackendUnavailable, match="certificate verify failed"):
            il.lock("account", 1).acquire()
    finally:
        il.close()
