"""Fixtures of the transaction tests: a three-store bank on the session's servers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from _bank import Bank, new_namespace

from services import MariaDBServer, PostgresServer, RedisServer

AOF = {"appendonly": "yes", "appendfsync": "always"}


@pytest.fixture
def aof_redis(redis_factory: Callable[..., RedisServer]) -> RedisServer:
    """A private Redis with the durability the Redis decision log requires."""
    return redis_factory(config=AOF)


@pytest.fixture
def make_bank(
    aof_redis: RedisServer, postgres_server: PostgresServer, mariadb_server: MariaDBServer
) -> Iterator[Callable[..., Bank]]:
    """Create banks (tables named after a fresh namespace); dropped after the test."""
    banks: list[Bank] = []

    def make(**kwargs: Any) -> Bank:
        bank = Bank(
            new_namespace(), aof_redis.url, postgres_server.dsn, mariadb_server.params, **kwargs
        )
        bank.setup()
        banks.append(bank)
        return bank

    yield make
    for bank in banks:
        bank.drop()


@pytest.fixture
def bank(make_bank: Callable[..., Bank]) -> Bank:
    return make_bank()
