"""Throwaway Redis (single, Sentinel, Cluster), PostgreSQL and MariaDB servers for tests.

Plain Python, no pytest: each server runs from the Debian binaries on free ports in its own
temporary directory, owned by the process that started it, and is gone at interpreter exit
even when a test crashes (``atexit``, plus a parent-death signal if the interpreter itself is
killed). Every wait has a deadline; a server that does not come up raises
:class:`ServiceError` with the tail of its log.

A server can be stopped, killed or paused and started again on the same port and data
directory, so tests can crash a service and check that clients reconnect and recover::

    with RedisServer(config={"appendonly": "yes"}) as redis:
        ...                      # redis.url == "redis://127.0.0.1:<port>/0"
        redis.kill()             # SIGKILL, like a crash
        redis.start()            # same port, same directory
"""

from ._process import ServiceError, ServiceUnavailable, free_port, wait_until
from .cluster import RedisCluster
from .mariadb import MariaDBServer
from .postgres import PostgresServer
from .redis import RedisServer, redis_command
from .sentinel import RedisSentinel
from .tls import make_tls

__all__ = [
    "MariaDBServer",
    "PostgresServer",
    "RedisCluster",
    "RedisSentinel",
    "RedisServer",
    "ServiceError",
    "ServiceUnavailable",
    "free_port",
    "make_tls",
    "redis_command",
    "wait_until",
]
