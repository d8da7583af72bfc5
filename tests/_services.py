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

from __future__ import annotations

import atexit
import contextlib
import ctypes
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

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

STARTUP_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
_POLL = 0.02
_LOG_TAIL = 30


class ServiceError(RuntimeError):
    """A service failed to start, become ready or stop in time."""


class ServiceUnavailable(ServiceError):
    """A service binary is not installed; the message names the package to install."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _find_binary(names: Sequence[str], package: str, dirs: Sequence[str] = ()) -> str:
    for name in names:
        for directory in dirs:
            candidate = os.path.join(directory, name)
            if os.access(candidate, os.X_OK):
                return candidate
        found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
        if found:
            return found
    raise ServiceUnavailable(
        f"{' / '.join(names)} not found: install it with `apt-get install {package}`"
    )


def _tail(path: Path, lines: int = _LOG_TAIL) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"


_PR_SET_PDEATHSIG = 1
try:
    _libc: ctypes.CDLL | None = ctypes.CDLL(None, use_errno=True)
except OSError:  # not Linux/glibc: atexit alone cleans up
    _libc = None


def _die_with_parent() -> None:
    # Runs in the child between fork and exec, after Popen's setuid (which would clear it):
    # the kernel kills the service if the test interpreter dies without running atexit.
    if _libc is not None:
        with contextlib.suppress(AttributeError):
            _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


_live: set[_Process] = set()  # strong references: an unreferenced server still dies at exit


@atexit.register
def _kill_all() -> None:
    for proc in list(_live):
        with contextlib.suppress(Exception):
            proc.kill()
            shutil.rmtree(proc.dir, ignore_errors=True)


def _connectable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class _Process:
    """One long-running server process with a log file, started and stopped with deadlines."""

    name = "service"
    stop_signal = signal.SIGTERM
    kill_signal = signal.SIGKILL

    def __init__(self, port: int | None, startup_timeout: float, prefix: str) -> None:
        self._auto_port = port is None
        self.port = free_port() if port is None else port
        self.startup_timeout = startup_timeout
        self.dir = Path(tempfile.mkdtemp(prefix=f"interlock-{prefix}-"))
        self.log_path = self.dir / "server.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._started_once = False
        self._prepared = False
        self.paused = False

    # -- subclass hooks -------------------------------------------------------------------

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _prepare(self) -> None:
        """Run once before the first start (initialise a data directory, ...)."""

    def _ready(self) -> bool:
        raise NotImplementedError

    def _popen_kwargs(self) -> dict[str, Any]:
        return {}

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        """The process is alive and not paused."""
        return self._proc is not None and self._proc.poll() is None and not self.paused

    def start(self) -> Self:
        """Start the server (again, on the same port and directory) and wait until ready."""
        if self._proc is not None and self._proc.poll() is None:
            raise ServiceError(f"{self.name} on port {self.port} is already running")
        if not self._prepared:
            self._prepare()
            self._prepared = True
        attempts = 3 if self._auto_port and not self._started_once else 1
        for attempt in range(attempts):
            try:
                self._spawn_and_wait()
            except ServiceError:
                # The port picked by free_port() may have been taken meanwhile: pick another.
                if attempt + 1 == attempts or not _connectable(self.port):
                    raise
                self.port = free_port()
            else:
                break
        self._started_once = True
        return self

    def _spawn_and_wait(self) -> None:
        with self.log_path.open("ab") as log:
            log.write(f"--- {time.strftime('%H:%M:%S')} starting {self.name}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in the terminal reaches pytest, not us
                preexec_fn=_die_with_parent,
                **self._popen_kwargs(),
            )
        self.paused = False
        _live.add(self)
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._proc = None
                raise ServiceError(
                    f"{self.name} exited with code {code} while starting on port "
                    f"{self.port}; log {self.log_path}:\n{_tail(self.log_path)}"
                )
            if self._ready():
                return
            if time.monotonic() > deadline:
                self._terminate(signal.SIGKILL)
                raise ServiceError(
                    f"{self.name} not ready on port {self.port} after "
                    f"{self.startup_timeout:.0f} s; log {self.log_path}:\n{_tail(self.log_path)}"
                )
            time.sleep(_POLL)

    def _terminate(self, sig: int, timeout: float = STOP_TIMEOUT) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
                if self.paused:
                    proc.send_signal(signal.SIGCONT)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT)
        self._proc = None
        self.paused = False
        _live.discard(self)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Shut down cleanly (SIGKILL after ``timeout`` seconds); a no-op when not running."""
        self._terminate(self.stop_signal, timeout)

    def kill(self) -> None:
        """Crash the server: no clean shutdown, like a power cut for the process."""
        self._terminate(self.kill_signal)

    def restart(self) -> Self:
        self.stop()
        return self.start()

    def pause(self) -> None:
        """Freeze the process (SIGSTOP): connections hang instead of failing."""
        if self._proc is None or self._proc.poll() is not None:
            raise ServiceError(f"{self.name} on port {self.port} is not running")
        self._proc.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        if self._proc is not None and self.paused:
            self._proc.send_signal(signal.SIGCONT)
        self.paused = False

    def close(self) -> None:
        """Stop the server and delete its directory."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Self:
        if self._proc is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "paused" if self.paused else "running" if self.running else "stopped"
        return f"<{type(self).__name__} port={self.port} {state} dir={self.dir}>"


# -- Redis ------------------------------------------------------------------------------------


def _resp_encode(args: Sequence[str | bytes | int]) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _resp_read(f: Any) -> Any:
    line = f.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError("connection closed")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise ServiceError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        return None if size < 0 else f.read(size + 2)[:-2].decode()
    if kind == b"*":
        size = int(rest)
        return None if size < 0 else [_resp_read(f) for _ in range(size)]
    raise ConnectionError(f"unexpected reply {line!r}")


def redis_command(
    port: int, *args: str | bytes | int, timeout: float = 5.0, password: str | None = None
) -> Any:
    """Send one command to the Redis on 127.0.0.1:``port`` and return the decoded reply.

    A dependency-free client for health checks; error replies raise :class:`ServiceError`.
    With ``password``, ``AUTH password`` goes first (a ``requirepass`` server or sentinel).
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        auth = _resp_encode(("AUTH", password)) if password is not None else b""
        sock.sendall(auth + _resp_encode(args))
        with sock.makefile("rb") as f:
            if auth:
                _resp_read(f)
            return _resp_read(f)


def make_tls(directory: Path) -> dict[str, str]:
    """A throwaway CA and a server certificate for 127.0.0.1 (``openssl``), as file paths.

    Returns ``{"ca": ..., "cert": ..., "key": ...}``: what the Redis ``tls-*-file``
    directives and a client's ``ssl_ca_certs`` need.
    """

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    ca_key, ca, key, csr, cert, ext = (
        directory / name for name in ("ca.key", "ca.crt", "r.key", "r.csr", "r.crt", "ext.cnf")
    )
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
            "/CN=test-ca", "-keyout", str(ca_key), "-out", str(ca))  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", str(key), "-out", str(csr))  # fmt: skip
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
            "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(cert))  # fmt: skip
    return {"ca": str(ca), "cert": str(cert), "key": str(key)}


class RedisServer(_Process):
    """A ``redis-server`` on 127.0.0.1 keeping nothing on disk unless ``config`` says so.

    Args:
        port: fixed port, or None for a free one (kept across restarts).
        config: extra or overriding directives, e.g. ``{"appendonly": "yes",
            "appendfsync": "always"}``.
        binary: path of ``redis-server``; found on PATH by default.
        password: ``requirepass``; :meth:`command` and the readiness probe authenticate.
    """

    name = "redis-server"

    def __init__(
        self,
        port: int | None = None,
        *,
        config: Mapping[str, str] | None = None,
        binary: str | None = None,
        startup_timeout: float = STARTUP_TIMEOUT,
        password: str | None = None,
    ) -> None:
        self.binary = binary or _find_binary(["redis-server"], "redis-server")
        if not os.access(self.binary, os.X_OK):
            raise ServiceUnavailable(
                f"{self.binary} not found: install it with `apt-get install redis-server`"
            )
        super().__init__(port, startup_timeout, "redis")
        self.config: dict[str, str] = {
            "bind": "127.0.0.1",
            "save": "",
            "appendonly": "no",
            "protected-mode": "no",
            **({"requirepass": password} if password is not None else {}),
            **(config or {}),
        }
        self.password = password

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _command(self) -> list[str]:
        cmd = [self.binary, "--port", str(self.port), "--dir", str(self.dir)]
        for key, value in self.config.items():
            cmd += [f"--{key}", *value.split(" ")] if value else [f"--{key}", ""]
        return cmd

    def _ready(self) -> bool:
        try:
            return bool(self.command("PING", timeout=1.0) == "PONG")
        except (OSError, ConnectionError, ServiceError):  # refused, or -LOADING
            return False

    def command(self, *args: str | bytes | int, timeout: float = 5.0) -> Any:
        """Run one Redis command on this server (see :func:`redis_command`)."""
        return redis_command(self.port, *args, timeout=timeout, password=self.password)

    def flushall(self) -> None:
        self.command("FLUSHALL")


class RedisCluster:
    """Three Redis masters forming a cluster (no replicas), each a :class:`RedisServer`.

    The nodes keep their ``nodes.conf`` in their own directory, so a node that is killed and
    started again rejoins with its slots; :meth:`wait_ok` waits for the cluster to agree.
    """

    def __init__(
        self,
        masters: int = 3,
        *,
        node_timeout_ms: int = 2000,
        config: Mapping[str, str] | None = None,
        startup_timeout: float = STARTUP_TIMEOUT,
    ) -> None:
        self.cli = _find_binary(["redis-cli"], "redis-server")
        self.startup_timeout = startup_timeout
        self.nodes = [
            RedisServer(
                config={
                    "cluster-enabled": "yes",
                    "cluster-config-file": "nodes.conf",
                    "cluster-node-timeout": str(node_timeout_ms),
                    # Redis 7 lets the bus port be chosen, so it need not be port + 10000.
                    "cluster-port": str(free_port()),
                    **(config or {}),
                },
                startup_timeout=startup_timeout,
            )
            for _ in range(masters)
        ]
        self._created = False

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    @property
    def ports(self) -> list[int]:
        return [n.port for n in self.nodes]

    @property
    def running(self) -> bool:
        return all(n.running for n in self.nodes)

    def start(self) -> Self:
        """Start every stopped node; create the cluster the first time; wait for state ok."""
        for node in self.nodes:
            if not node.running:
                if node.paused:
                    node.resume()
                else:
                    node.start()
        if not self._created:
            self._create()
            self._created = True
        self.wait_ok()
        return self

    def _create(self) -> None:
        cmd = [self.cli, "--cluster", "create"]
        cmd += [f"127.0.0.1:{port}" for port in self.ports]
        cmd += ["--cluster-replicas", "0", "--cluster-yes"]
        try:
            result = subprocess.run(
                cmd,
                capture_output=True,
                text=True,
                timeout=self.startup_timeout,
                stdin=subprocess.DEVNULL,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise ServiceError(f"`{' '.join(cmd)}` timed out: {exc.stdout!r}") from exc
        if result.returncode != 0:
            raise ServiceError(
                f"`{' '.join(cmd)}` failed ({result.returncode}):\n{result.stdout}{result.stderr}"
            )

    def wait_ok(self, timeout: float | None = None) -> None:
        """Wait until every node reports ``cluster_state:ok`` and knows every other node."""
        deadline = time.monotonic() + (self.startup_timeout if timeout is None else timeout)
        want = f"cluster_known_nodes:{len(self.nodes)}"
        last: dict[int, str] = {}
        while True:
            for node in self.nodes:
                try:
                    last[node.port] = info = str(node.command("CLUSTER", "INFO", timeout=1.0))
                except (OSError, ConnectionError, ServiceError) as exc:
                    last[node.port] = repr(exc)
                    break
                if "cluster_state:ok" not in info or want not in info:
                    break
            else:
                return
            if time.monotonic() > deadline:
                details = "\n".join(f"{port}: {info[:200]!r}" for port, info in last.items())
                raise ServiceError(f"redis cluster not ok in time:\n{details}")
            time.sleep(_POLL * 5)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def close(self) -> None:
        for node in self.nodes:
            node.close()

    def flushall(self) -> None:
        for node in self.nodes:
            node.flushall()

    def __enter__(self) -> Self:
        return self.start()

    def __repr__(self) -> str:
        return f"<RedisCluster {self.nodes!r}>"

    def __exit__(self, *exc_info: object) -> None:
        self.close()


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


# -- PostgreSQL -------------------------------------------------------------------------------


def _postgres_bindir() -> str:
    dirs = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda d: int(d.split("/")[-2]) if d.split("/")[-2].isdigit() else 0,
    )
    for directory in reversed(dirs):
        if os.access(os.path.join(directory, "postgres"), os.X_OK):
            return directory
    found = shutil.which("postgres")
    if found:
        return os.path.dirname(found)
    raise ServiceUnavailable(
        "PostgreSQL server binaries (/usr/lib/postgresql/*/bin/postgres) not found: "
        "install them with `apt-get install postgresql`"
    )


class PostgresServer(_Process):
    """A throwaway PostgreSQL cluster with prepared transactions enabled, trust auth.

    As root, ``initdb`` and ``postgres`` run as the ``postgres`` user (they refuse root).
    :meth:`kill` is an immediate shutdown (SIGQUIT: no checkpoint, crash recovery on the
    next start, prepared transactions survive), not SIGKILL, which would orphan backends.

    Args:
        settings: extra ``-c name=value`` server settings.
    """

    name = "postgres"
    stop_signal = signal.SIGINT  # "fast" shutdown; SIGTERM would wait for clients
    kill_signal = signal.SIGQUIT

    def __init__(
        self,
        port: int | None = None,
        *,
        settings: Mapping[str, str] | None = None,
        startup_timeout: float = STARTUP_TIMEOUT,
    ) -> None:
        self.bindir = _postgres_bindir()
        super().__init__(port, startup_timeout, "postgres")
        self.data = self.dir / "data"
        self.settings: dict[str, str] = {
            "listen_addresses": "127.0.0.1",
            "max_prepared_transactions": "64",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            **(settings or {}),
        }
        self._user: str | None = None
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError as exc:
                raise ServiceUnavailable(
                    "running as root needs a `postgres` user to own the cluster: "
                    "`apt-get install postgresql` creates it"
                ) from exc
            self._user = "postgres"
            shutil.chown(self.dir, "postgres", "postgres")

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _popen_kwargs(self) -> dict[str, Any]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        kwargs: dict[str, Any] = {"cwd": str(self.dir), "env": env}
        if self._user is not None:
            kwargs.update(user=self._user, group=self._user, extra_groups=[])
        return kwargs

    def _prepare(self) -> None:
        cmd = [f"{self.bindir}/initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres"]
        cmd += ["-E", "UTF8", "--locale=C", "--no-sync"]
        with self.log_path.open("ab") as log:
            try:
                result = subprocess.run(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    timeout=self.startup_timeout,
                    check=False,
                    **self._popen_kwargs(),
                )
            except subprocess.TimeoutExpired as exc:
                raise ServiceError(f"initdb timed out; log:\n{_tail(self.log_path)}") from exc
        if result.returncode != 0:
            raise ServiceError(f"initdb failed; log {self.log_path}:\n{_tail(self.log_path)}")

    def _command(self) -> list[str]:
        cmd = [f"{self.bindir}/postgres", "-D", str(self.data), "-p", str(self.port)]
        cmd += ["-k", str(self.dir)]
        for key, value in self.settings.items():
            cmd += ["-c", f"{key}={value}"]
        return cmd

    def _ready(self) -> bool:
        # The last line of postmaster.pid turns to "ready" once connections are accepted.
        try:
            lines = (self.data / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        return len(lines) >= 8 and lines[7].strip() == "ready" and _connectable(self.port)


# -- MariaDB ----------------------------------------------------------------------------------


def _mysql_handshake(port: int) -> bool:
    """True when the server on ``port`` greets with a protocol-10 handshake packet."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            header = sock.recv(5)
    except OSError:
        return False
    return len(header) == 5 and header[4] == 10


class MariaDBServer(_Process):
    """A throwaway ``mariadbd``: user ``root``, empty password, database ``test``.

    Grants are kept (no ``--skip-grant-tables``), so XA RECOVER and privileges behave as in
    production.
    """

    name = "mariadbd"

    def __init__(
        self,
        port: int | None = None,
        *,
        options: Sequence[str] = (),
        startup_timeout: float = STARTUP_TIMEOUT,
    ) -> None:
        self.binary = _find_binary(["mariadbd", "mysqld"], "mariadb-server")
        self.install_db = _find_binary(["mariadb-install-db", "mysql_install_db"], "mariadb-server")
        super().__init__(port, startup_timeout, "mariadb")
        self.data = self.dir / "data"
        self.socket = self.dir / "sock"
        self.options = list(options)

    @property
    def params(self) -> dict[str, Any]:
        """Keyword arguments for ``pymysql.connect``."""
        return {
            "host": "127.0.0.1",
            "port": self.port,
            "user": "root",
            "password": "",
            "database": "test",
        }

    @property
    def url(self) -> str:
        return f"mysql://root@127.0.0.1:{self.port}/test"

    def _prepare(self) -> None:
        cmd = [self.install_db, "--no-defaults", f"--datadir={self.data}"]
        cmd += ["--auth-root-authentication-method=normal", "--user=root"]
        with self.log_path.open("ab") as log:
            try:
                result = subprocess.run(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    timeout=self.startup_timeout,
                    cwd=self.dir,
                    check=False,
                )
            except subprocess.TimeoutExpired as exc:
                raise ServiceError(
                    f"{self.install_db} timed out; log:\n{_tail(self.log_path)}"
                ) from exc
        if result.returncode != 0:
            raise ServiceError(
                f"{self.install_db} failed; log {self.log_path}:\n{_tail(self.log_path)}"
            )

    def _command(self) -> list[str]:
        return [
            self.binary,
            "--no-defaults",
            f"--datadir={self.data}",
            f"--port={self.port}",
            "--bind-address=127.0.0.1",
            f"--socket={self.socket}",
            f"--pid-file={self.dir / 'mariadbd.pid'}",
            "--user=root",
            "--skip-name-resolve",
            "--innodb-buffer-pool-size=32M",
            *self.options,
        ]

    def _ready(self) -> bool:
        return _mysql_handshake(self.port)


def wait_until(
    predicate: Callable[[], bool], timeout: float = 10.0, message: str = "condition"
) -> None:
    """Poll ``predicate`` until true, or raise :class:`ServiceError` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise ServiceError(f"timed out after {timeout} s waiting for {message}")
        time.sleep(_POLL)
