"""The throwaway services behave as the rest of the suite assumes."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import psycopg
import pymysql
import pytest
import redis

from services import (
    MariaDBServer,
    PostgresServer,
    RedisCluster,
    RedisServer,
    ServiceError,
    ServiceUnavailable,
    free_port,
    redis_command,
    wait_until,
)

TESTS = Path(__file__).parent


def _refused(port: int) -> bool:
    try:
        redis_command(port, "PING", timeout=0.5)
    except OSError:
        return True
    return False


def test_redis_answers_ping(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        assert client.ping() is True
        assert client.config_get("appendonly") == {"appendonly": "no"}
    finally:
        client.close()


def test_redis_flush_empties_the_session_server(redis_server: RedisServer) -> None:
    redis_server.command("SET", "test_services:flush", "1")
    redis_server.flushall()
    assert redis_server.command("DBSIZE") == 0


def test_redis_kill_and_restart_on_the_same_port(fresh_redis: RedisServer) -> None:
    url, port = fresh_redis.url, fresh_redis.port
    client = redis.Redis.from_url(url)
    try:
        client.set("k", "v")
        fresh_redis.kill()
        assert not fresh_redis.running
        with pytest.raises(redis.ConnectionError):
            client.get("k")
        fresh_redis.start()
        assert fresh_redis.url == url
        assert fresh_redis.port == port
        assert client.get("k") is None  # nothing kept on disk by default
    finally:
        client.close()


def test_redis_pause_freezes_until_resume(fresh_redis: RedisServer) -> None:
    fresh_redis.pause()
    assert not fresh_redis.running
    with pytest.raises(TimeoutError):
        fresh_redis.command("PING", timeout=0.2)
    fresh_redis.resume()
    assert fresh_redis.command("PING") == "PONG"


def test_redis_appendonly_survives_a_crash(redis_factory: Callable[..., RedisServer]) -> None:
    server = redis_factory(config={"appendonly": "yes", "appendfsync": "always"})
    server.command("SET", "k", "kept")
    server.kill()
    server.start()
    assert server.command("GET", "k") == "kept"


@pytest.mark.redis
def test_redis_start_failure_shows_the_log() -> None:
    server = RedisServer(config={"no-such-directive": "1"})
    try:
        with pytest.raises(ServiceError, match="no-such-directive"):
            server.start()
        assert not server.running
    finally:
        server.close()


def test_missing_binary_names_the_package(tmp_path: Path) -> None:
    with pytest.raises(ServiceUnavailable, match="apt-get install redis-server"):
        RedisServer(binary=str(tmp_path / "redis-server"))


def test_cluster_slots_cover_the_keyspace(redis_cluster: RedisCluster) -> None:
    assert redis_cluster.url == "redis+cluster://" + ",".join(
        f"127.0.0.1:{port}" for port in redis_cluster.ports
    )
    slots = redis_cluster.nodes[0].command("CLUSTER", "SLOTS")
    covered = sorted((start, end) for start, end, *_ in slots)
    assert len(covered) == 3
    assert sum(end - start + 1 for start, end in covered) == 16384
    client = redis.RedisCluster(host="127.0.0.1", port=redis_cluster.ports[0])
    try:
        for i in range(20):  # keys land on all three masters
            client.set(f"test_services:{i}", i)
        assert [int(client.get(f"test_services:{i}") or -1) for i in range(20)] == list(range(20))
    finally:
        client.close()


def test_postgres_prepared_transaction_roundtrip(postgres_server: PostgresServer) -> None:
    with psycopg.connect(postgres_server.dsn, autocommit=True) as conn:
        assert conn.execute("SHOW max_prepared_transactions").fetchone() == ("64",)
        conn.execute("CREATE TABLE IF NOT EXISTS test_services_pg (v int)")
        conn.execute("BEGIN")
        conn.execute("INSERT INTO test_services_pg VALUES (1)")
        conn.execute("PREPARE TRANSACTION 'test_services_pg'")
        with psycopg.connect(postgres_server.dsn, autocommit=True) as other:
            gids = other.execute("SELECT gid FROM pg_prepared_xacts").fetchall()
            assert ("test_services_pg",) in gids
            assert other.execute("SELECT count(*) FROM test_services_pg").fetchone() == (0,)
            other.execute("COMMIT PREPARED 'test_services_pg'")
            assert other.execute("SELECT count(*) FROM test_services_pg").fetchone() == (1,)
        conn.execute("DROP TABLE test_services_pg")


def test_postgres_prepared_transaction_survives_a_crash(fresh_postgres: PostgresServer) -> None:
    with psycopg.connect(fresh_postgres.dsn, autocommit=True) as conn:
        conn.execute("BEGIN")
        conn.execute("CREATE TABLE t (v int)")
        conn.execute("PREPARE TRANSACTION 'crash'")
    fresh_postgres.kill()
    fresh_postgres.start()
    with psycopg.connect(fresh_postgres.dsn, autocommit=True) as conn:
        assert conn.execute("SELECT gid FROM pg_prepared_xacts").fetchall() == [("crash",)]
        conn.execute("ROLLBACK PREPARED 'crash'")


def test_mariadb_xa_roundtrip(mariadb_server: MariaDBServer) -> None:
    conn = pymysql.connect(**mariadb_server.params, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS test_services_xa (v int) ENGINE=InnoDB")
            cur.execute("XA START 'test_services_xa'")
            cur.execute("INSERT INTO test_services_xa VALUES (1)")
            cur.execute("XA END 'test_services_xa'")
            cur.execute("XA PREPARE 'test_services_xa'")
            cur.execute("XA RECOVER")
            assert any(row[3] == b"test_services_xa" for row in cur.fetchall())
            cur.execute("XA COMMIT 'test_services_xa'")
            cur.execute("SELECT count(*) FROM test_services_xa")
            assert cur.fetchone() == (1,)
            cur.execute("DROP TABLE test_services_xa")
    finally:
        conn.close()


def test_mariadb_xa_prepared_survives_a_crash(fresh_mariadb: MariaDBServer) -> None:
    conn = pymysql.connect(**fresh_mariadb.params, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE t (v int) ENGINE=InnoDB")
            cur.execute("XA START 'crash'")
            cur.execute("INSERT INTO t VALUES (1)")
            cur.execute("XA END 'crash'")
            cur.execute("XA PREPARE 'crash'")
    finally:
        conn.close()
    fresh_mariadb.kill()
    fresh_mariadb.start()
    conn = pymysql.connect(**fresh_mariadb.params, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("XA RECOVER")
            assert [row[3] for row in cur.fetchall()] == [b"crash"]
            cur.execute("XA COMMIT 'crash'")
            cur.execute("SELECT count(*) FROM t")
            assert cur.fetchone() == (1,)
    finally:
        conn.close()


@pytest.mark.redis
@pytest.mark.parametrize("ending", ["sys.exit(0)", "os.kill(os.getpid(), signal.SIGKILL)"])
def test_servers_die_with_the_interpreter(ending: str) -> None:
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        sys.path.insert(0, {str(TESTS)!r})
        from services import RedisServer
        server = RedisServer().start()
        print(server.port, server.dir, flush=True)
        {ending}
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=False
    )
    port, directory = result.stdout.split()
    wait_until(lambda: _refused(int(port)), timeout=10, message=f"redis on {port} to exit")
    if ending.startswith("sys.exit"):
        assert not Path(directory).exists()  # atexit also removes the directory
    shutil.rmtree(directory, ignore_errors=True)  # SIGKILL skips atexit


@pytest.mark.redis
def test_free_port_is_bindable() -> None:
    port = free_port()
    with RedisServer(port=port) as server:
        assert server.port == port
        assert server.command("PING") == "PONG"


def test_backend_url(backend_url: str) -> None:
    assert backend_url == "mem://" or backend_url.startswith(
        ("redis://", "redis+cluster://", "redis+sentinel://")
    )
