"""Shared fixtures: real throwaway services, started on first use and stopped at session end.

A missing service binary fails the tests that need it, naming the Debian package to install.
Only with ``INTERLOCK_ALLOW_SKIP=1`` (and neither ``CI`` nor ``INTERLOCK_REQUIRE_SERVICES``
set) are those tests skipped instead, with the same message.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any, NoReturn, TypeVar

import pytest

from _blocked import Stock
from interlock import Interlock
from services import (
    MariaDBServer,
    PostgresServer,
    RedisCluster,
    RedisSentinel,
    RedisServer,
    ServiceError,
    ServiceUnavailable,
)

Service = RedisServer | RedisCluster | RedisSentinel | PostgresServer | MariaDBServer
_S = TypeVar("_S", RedisServer, RedisCluster, RedisSentinel, PostgresServer, MariaDBServer)

# Session services that tests must leave running; checked after every test.
_shared: list[Service] = []

# Tests using these fixtures get the marker, so `-m "not cluster"` selects as expected.
_MARKS = {
    "redis": {"redis_server", "redis_url", "redis_flush", "redis_factory", "fresh_redis"},
    "cluster": {"redis_cluster", "redis_cluster_url"},
    "sentinel": {"redis_sentinel", "redis_sentinel_url"},
    "postgres": {"postgres_server", "fresh_postgres"},
    "mysql": {"mariadb_server", "fresh_mariadb"},
}


@pytest.fixture
def anyio_backend() -> str:
    """``@pytest.mark.anyio`` tests run on asyncio only (the async API is asyncio-native)."""
    return "asyncio"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        for mark, fixtures in _MARKS.items():
            if names & fixtures:
                item.add_marker(mark)


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


def _unavailable(exc: ServiceUnavailable) -> NoReturn:
    required = _flag("CI") or _flag("INTERLOCK_REQUIRE_SERVICES")
    if _flag("INTERLOCK_ALLOW_SKIP") and not required:
        raise pytest.skip.Exception(str(exc))
    hint = "" if required else " (or set INTERLOCK_ALLOW_SKIP=1 to skip locally)"
    pytest.fail(f"{exc}{hint}", pytrace=False)


def _start(factory: Callable[[], _S]) -> _S:
    try:
        service = factory()
    except ServiceUnavailable as exc:
        _unavailable(exc)
    try:
        return service.start()
    except BaseException:
        service.close()
        raise


def _shared_service(factory: Callable[[], _S]) -> Iterator[_S]:
    service = _start(factory)
    _shared.append(service)
    try:
        yield service
    finally:
        _shared.remove(service)
        service.close()


@pytest.fixture(autouse=True)
def _shared_services_left_running(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that leaves a session service stopped or paused, after restoring it."""
    yield
    broken = [service for service in _shared if not service.running]
    described = ", ".join(map(repr, broken))
    for service in broken:
        if isinstance(service, RedisCluster | RedisSentinel):
            service.start()
        elif service.paused:
            service.resume()
        else:
            service.start()
    if broken:
        pytest.fail(
            f"{request.node.nodeid} left {described} not running; tests that stop, kill or pause "
            "a server use fresh_redis / redis_factory / fresh_postgres / fresh_mariadb",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One Redis for the whole session; tests keep to their own key namespaces."""
    yield from _shared_service(RedisServer)


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
def redis_flush(redis_server: RedisServer) -> RedisServer:
    """The session Redis, emptied with FLUSHALL before the test."""
    redis_server.flushall()
    return redis_server


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    """A 3-master Redis Cluster for the whole session."""
    yield from _shared_service(RedisCluster)


@pytest.fixture(scope="session")
def redis_cluster_url(redis_cluster: RedisCluster) -> str:
    return redis_cluster.url


@pytest.fixture(scope="session")
def redis_sentinel() -> Iterator[RedisSentinel]:
    """A master, a replica and one Sentinel for the whole session (never failed over)."""
    yield from _shared_service(RedisSentinel)


@pytest.fixture(scope="session")
def redis_sentinel_url(redis_sentinel: RedisSentinel) -> str:
    return redis_sentinel.url


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """PostgreSQL with max_prepared_transactions=64; ``.dsn`` for psycopg."""
    yield from _shared_service(PostgresServer)


@pytest.fixture(scope="session")
def mariadb_server() -> Iterator[MariaDBServer]:
    """MariaDB, root with an empty password; ``.params`` for pymysql.connect."""
    yield from _shared_service(MariaDBServer)


@pytest.fixture
def redis_factory() -> Iterator[Callable[..., RedisServer]]:
    """Start private Redis servers (``RedisServer`` keyword arguments); closed after the test."""
    servers: list[RedisServer] = []

    def make(**kwargs: Any) -> RedisServer:
        server = _start(lambda: RedisServer(**kwargs))
        servers.append(server)
        return server

    yield make
    errors: list[ServiceError] = []
    for server in servers:
        try:
            server.close()
        except ServiceError as exc:
            errors.append(exc)
    if errors:
        raise errors[0]


@pytest.fixture
def fresh_redis(redis_factory: Callable[..., RedisServer]) -> RedisServer:
    """A private Redis for destructive tests (kill, pause, restart on the same port)."""
    return redis_factory()


@pytest.fixture
def fresh_postgres() -> Iterator[PostgresServer]:
    """A private PostgreSQL (about a second to initdb) that a test may crash and restart."""
    server = _start(PostgresServer)
    yield server
    server.close()


@pytest.fixture
def fresh_mariadb() -> Iterator[MariaDBServer]:
    """A private MariaDB (about a second to install) that a test may crash and restart."""
    server = _start(MariaDBServer)
    yield server
    server.close()


@pytest.fixture(
    params=[
        pytest.param("mem", id="mem"),
        pytest.param("redis", id="redis", marks=pytest.mark.redis),
        pytest.param("cluster", id="cluster", marks=pytest.mark.cluster),
        pytest.param("sentinel", id="sentinel", marks=pytest.mark.sentinel),
    ]
)
def backend_url(request: pytest.FixtureRequest) -> str:
    """Each backend in turn: ``mem://``, the session Redis, Cluster and Sentinel-managed Redis."""
    if request.param == "mem":
        return "mem://"
    if request.param == "redis":
        return str(request.getfixturevalue("redis_url"))
    if request.param == "sentinel":
        return str(request.getfixturevalue("redis_sentinel_url"))
    return str(request.getfixturevalue("redis_cluster_url"))


@pytest.fixture
def il(backend_url: str) -> Iterator[Interlock]:
    """A blocking client on each backend in turn, in a namespace of its own."""
    client = Interlock(backend_url, namespace=f"t{uuid.uuid4().hex[:12]}")
    yield client
    client.close()


@pytest.fixture
def other(il: Interlock) -> Iterator[Interlock]:
    """A second client on the same backend and namespace, like another process."""
    client = Interlock(il.settings.url, namespace=il.namespace)
    yield client
    client.close()


@pytest.fixture(params=["postgres", "mysql"])
def stock(request: pytest.FixtureRequest) -> Iterator[Stock]:
    """A stock table on a throwaway PostgreSQL or MariaDB (tests/_blocked.py holds its rows
    with a real prepared branch)."""
    server = request.getfixturevalue(
        "postgres_server" if request.param == "postgres" else "mariadb_server"
    )
    table = Stock(request.param, server)
    table.create()
    try:
        yield table
    finally:
        table.drop()
