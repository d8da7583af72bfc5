"""A Redis master, a replica and a Sentinel monitoring them, for real failovers."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Self
from urllib.parse import quote

from ._process import (
    _POLL,
    STARTUP_TIMEOUT,
    ServiceError,
    _find_binary,
    _Process,
    _tail,
    free_port,
)
from .redis import RedisServer, redis_command


class _SentinelProcess(_Process):
    """``redis-server <dir>/sentinel.conf --sentinel``; Sentinel rewrites that file itself."""

    name = "redis-sentinel"

    def __init__(
        self, binary: str, conf: str, startup_timeout: float, password: str | None = None
    ) -> None:
        self.binary = binary
        self.conf = conf
        self.password = password  # the sentinel's requirepass, for the readiness probe
        super().__init__(None, startup_timeout, "sentinel")

    def _prepare(self) -> None:
        text = self.conf.replace("{port}", str(self.port)).replace("{dir}", str(self.dir))
        (self.dir / "sentinel.conf").write_text(text)

    def _command(self) -> list[str]:
        return [self.binary, str(self.dir / "sentinel.conf"), "--sentinel"]

    def _ready(self) -> bool:
        try:
            reply = redis_command(self.port, "PING", timeout=1.0, password=self.password)
            return bool(reply == "PONG")
        except (OSError, ConnectionError, ServiceError):
            return False


class RedisSentinel:
    """One master, one replica and one Sentinel (quorum 1) monitoring them as ``service``.

    Sentinel declares the master down after ``down_after_ms`` and promotes the replica, so
    :meth:`kill_master` followed by :meth:`wait_failover` exercises a real failover. The
    topology is not restored afterwards: use a private instance for destructive tests.

    Args:
        password: ``requirepass`` of master and replica (the sentinel and the replica are
            told it: ``sentinel auth-pass``, ``masterauth``); :attr:`url` carries it,
            percent-encoded, in its user info. No spaces or quotes (config file syntax).
        sentinel_password: ``requirepass`` of the sentinel; :attr:`url` carries it,
            percent-encoded, as ``?sentinel_password=``.
        tls: ``{"ca", "cert", "key"}`` file paths: every node (sentinel included) also
            listens for TLS (``tls-port``, clients unauthenticated), replication and the
            sentinel's monitoring run over TLS, and :attr:`url` is ``rediss+sentinel://`` to
            the sentinel's TLS port. The plain ports stay open for the health checks.
    """

    def __init__(
        self,
        service: str = "mymaster",
        *,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 3000,
        startup_timeout: float = STARTUP_TIMEOUT,
        password: str | None = None,
        sentinel_password: str | None = None,
        tls: Mapping[str, str] | None = None,
    ) -> None:
        binary = _find_binary(["redis-server"], "redis-server")
        self.service = service
        self.startup_timeout = startup_timeout
        self.password = password
        self.sentinel_password = sentinel_password
        self.tls = dict(tls) if tls is not None else None
        # No 5 s wait before a full sync (Redis 7's diskless default), on either node.
        self._config = {"repl-diskless-sync-delay": "0"}
        tls_conf = ""
        if self.tls is not None:
            tls_files = {
                "tls-cert-file": self.tls["cert"],
                "tls-key-file": self.tls["key"],
                "tls-ca-cert-file": self.tls["ca"],
                "tls-auth-clients": "no",
                "tls-replication": "yes",
            }
            self._config.update(tls_files)
            tls_conf = "tls-port {tls_port}\n" + "".join(f"{k} {v}\n" for k, v in tls_files.items())
        if password is not None:
            self._config["masterauth"] = password
        self.master = self._server()
        self.replica: RedisServer | None = None  # needs the master's port, known once started
        self._conf_template = (
            "port {port}\nbind 127.0.0.1\nprotected-mode no\ndir {dir}\n"
            f"{tls_conf}"
            f"sentinel monitor {service} 127.0.0.1 {{master}} 1\n"
            f"sentinel down-after-milliseconds {service} {down_after_ms}\n"
            f"sentinel failover-timeout {service} {failover_timeout_ms}\n"
            + (f"sentinel auth-pass {service} {password}\n" if password is not None else "")
            + (f"requirepass {sentinel_password}\n" if sentinel_password is not None else "")
        )
        self._binary = binary
        self.sentinel: _SentinelProcess | None = None
        self.sentinel_tls_port: int | None = None
        self.paused = False

    def _server(self, **config: str) -> RedisServer:
        if self.tls is not None:
            config["tls-port"] = str(free_port())
        return RedisServer(
            config={**self._config, **config},
            startup_timeout=self.startup_timeout,
            password=self.password,
        )

    @staticmethod
    def _client_port(server: RedisServer) -> int:
        """The port clients (and the sentinel) use: the TLS port with ``tls``."""
        return int(server.config.get("tls-port", server.port))

    @property
    def url(self) -> str:
        if self.sentinel is None:
            raise ServiceError("RedisSentinel is not started")
        auth = f":{quote(self.password, safe='')}@" if self.password is not None else ""
        options = []
        if self.sentinel_password is not None:
            options.append(f"sentinel_password={quote(self.sentinel_password, safe='')}")
        scheme, port = "redis+sentinel", self.sentinel.port
        if self.tls is not None:
            scheme, port = "rediss+sentinel", self.sentinel_tls_port
            options.append(f"ssl_ca_certs={quote(self.tls['ca'])}")
        query = f"?{'&'.join(options)}" if options else ""
        return f"{scheme}://{auth}127.0.0.1:{port}/{self.service}/0{query}"

    @property
    def servers(self) -> list[RedisServer]:
        return [s for s in (self.master, self.replica) if s is not None]

    @property
    def running(self) -> bool:
        return self.sentinel is not None and self.sentinel.running and all(
            s.running for s in self.servers
        )

    def start(self) -> Self:
        """Start master, replica (synced) and sentinel (seeing the replica); each bounded."""
        if not self.master.running:
            self.master.start()
        if self.replica is None:
            self.replica = self._server(
                replicaof=f"127.0.0.1 {self._client_port(self.master)}"
            )
        if not self.replica.running:
            self.replica.start()
            self._wait(self._replica_synced, "the replica to sync with the master")
        if self.sentinel is None:
            conf = self._conf_template.replace("{master}", str(self._client_port(self.master)))
            if self.tls is not None:
                self.sentinel_tls_port = free_port()
                conf = conf.replace("{tls_port}", str(self.sentinel_tls_port))
            self.sentinel = _SentinelProcess(
                self._binary, conf, self.startup_timeout, self.sentinel_password
            )
        if not self.sentinel.running:
            self.sentinel.start()
            self._wait(self._sentinel_sees_replica, "the sentinel to discover the replica")
        return self

    def _wait(self, predicate: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while True:
            try:
                if predicate():
                    return
            except (OSError, ConnectionError, ServiceError):
                pass
            if time.monotonic() > deadline:
                logs = "\n".join(
                    f"{p.name} {p.port} ({p.log_path}):\n{_tail(p.log_path, 10)}"
                    for p in (*self.servers, self.sentinel)
                    if p is not None
                )
                raise ServiceError(
                    f"timed out after {self.startup_timeout:.0f} s waiting for {what}:\n{logs}"
                )
            time.sleep(_POLL * 5)

    def _replica_synced(self) -> bool:
        assert self.replica is not None
        info = str(self.replica.command("INFO", "replication", timeout=1.0))
        return "master_link_status:up" in info

    def _sentinel_sees_replica(self) -> bool:
        replicas = self.sentinel_command("SENTINEL", "REPLICAS", self.service)
        return any(
            "s_down" not in str(r) and "disconnected" not in str(r) for r in replicas or ()
        )

    def sentinel_command(self, *args: str | bytes | int, timeout: float = 5.0) -> Any:
        if self.sentinel is None:
            raise ServiceError("RedisSentinel is not started")
        return redis_command(
            self.sentinel.port, *args, timeout=timeout, password=self.sentinel_password
        )

    def master_port(self) -> int:
        """The master's port according to the sentinel (its TLS port with ``tls``)."""
        addr = self.sentinel_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)
        return int(addr[1])

    def server_at(self, port: int) -> RedisServer:
        """The master or replica that the sentinel names by ``port``."""
        return next(s for s in self.servers if port in (s.port, self._client_port(s)))

    def kill_master(self) -> RedisServer:
        """SIGKILL the current master; return it (it can be started again as a replica)."""
        server = self.server_at(self.master_port())
        server.kill()
        return server

    def wait_failover(self, old_port: int, timeout: float = 15.0) -> int:
        """Wait until the sentinel names a master other than ``old_port`` that accepts writes."""

        def promoted() -> bool:
            port = self.master_port()
            if port == old_port:
                return False
            info = self.server_at(port).command("INFO", "replication", timeout=1.0)
            return "role:master" in str(info)

        deadline = time.monotonic() + timeout
        while True:
            try:
                if promoted():
                    return self.master_port()
            except (OSError, ConnectionError, ServiceError):
                pass
            if time.monotonic() > deadline:
                raise ServiceError(
                    f"no failover away from port {old_port} within {timeout} s; sentinel log "
                    f"{self.sentinel.log_path if self.sentinel else '?'}"
                )
            time.sleep(_POLL * 5)

    def flushall(self) -> None:
        self.server_at(self.master_port()).command("FLUSHALL")

    def stop(self) -> None:
        for proc in (self.sentinel, self.replica, self.master):
            if proc is not None:
                proc.stop()

    def close(self) -> None:
        for proc in (self.sentinel, self.replica, self.master):
            if proc is not None:
                proc.close()

    def resume(self) -> None:
        """Nothing is ever paused as a whole; present for the shared-service check."""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<RedisSentinel {self.service} {self.servers!r} {self.sentinel!r}>"
