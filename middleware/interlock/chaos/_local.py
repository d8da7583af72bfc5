"""Throwaway local servers for a game day: Redis, PostgreSQL, MariaDB, Prometheus, Alertmanager.

Each runs from the Debian binaries on a free loopback port in a directory of its own, is
started with a bounded wait until it accepts connections, and is stopped (then killed) when
the game day ends. PostgreSQL refuses to run as root: as root it runs as the ``postgres``
user. Nothing here is meant for production; it is the smallest set of starters
``interlock chaos gameday`` needs.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from interlock.chaos._faults import FaultError

STARTUP = 60.0  # seconds a server may take to accept connections


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def connectable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - our own URL
            return bool(response.status == 200)
    except OSError:
        return False


def binary(names: Sequence[str], package: str, dirs: Sequence[str] = ()) -> str:
    for name in names:
        for directory in dirs:
            if os.access(os.path.join(directory, name), os.X_OK):
                return os.path.join(directory, name)
        found = shutil.which(name)
        if found:
            return found
    raise FaultError(f"{names[0]} not found: install it with `apt-get install {package}`")


def tail(path: Path, lines: int = 20) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


class Server:
    """One process: started by :meth:`start`, ready when ``ready()`` says so."""

    def __init__(
        self, name: str, argv: list[str], directory: Path, port: int,
        ready: Callable[[], bool], *, url: str = "", user: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:  # fmt: skip
        self.name, self.argv, self.dir, self.port = name, argv, directory, port
        self.url = url  # how clients reach it: a redis://, postgresql://, mysql:// or http:// URL
        self._ready, self.user, self.env = ready, user, env
        self.log = directory / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc is not None else 0

    def popen_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"cwd": str(self.dir), "env": self.env}
        if self.user is not None:
            kwargs.update(user=self.user, group=self.user, extra_groups=[])
        return kwargs

    def start(self, timeout: float = STARTUP) -> Server:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, **self.popen_kwargs(),
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while not self._ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise FaultError(f"{self.name} did not start; {self.log}:\n{tail(self.log)}")
            time.sleep(0.05)  # polling readiness
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGCONT)
            os.kill(proc.pid, sig)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def redis(directory: Path) -> Server:
    """``redis-server`` without persistence (a kill forgets every key), with a pid file."""
    port = free_port()
    argv = [binary(["redis-server"], "redis-server"), "--port", str(port), "--bind", "127.0.0.1",
            "--dir", str(directory), "--save", "", "--appendonly", "no",
            "--protected-mode", "no", "--pidfile", str(directory / "redis.pid")]  # fmt: skip
    return Server("redis", argv, directory, port, lambda: connectable(port),
                  url=f"redis://127.0.0.1:{port}/0")


def _pg_bindir() -> str:
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                  key=lambda d: int(d.split("/")[-2]) if d.split("/")[-2].isdigit() else 0)
    for directory in reversed(dirs):
        if os.access(os.path.join(directory, "postgres"), os.X_OK):
            return directory
    return os.path.dirname(binary(["postgres"], "postgresql"))


def postgres(directory: Path) -> Server:
    """PostgreSQL with ``max_prepared_transactions=64`` and trust auth (initdb first)."""
    port, bindir, data = free_port(), _pg_bindir(), directory / "data"
    user = None
    if os.geteuid() == 0:  # initdb and postgres refuse root
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise FaultError("running as root needs a `postgres` user: "
                             "`apt-get install postgresql` creates it") from None  # fmt: skip
        user = "postgres"
        shutil.chown(directory, "postgres", "postgres")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")} | {"LC_ALL": "C"}
    argv = [f"{bindir}/postgres", "-D", str(data), "-p", str(port), "-k", str(directory),
            "-c", "listen_addresses=127.0.0.1", "-c", "max_prepared_transactions=64",
            "-c", "fsync=off", "-c", "synchronous_commit=off"]  # fmt: skip
    server = Server("postgres", argv, directory, port, lambda: connectable(port), user=user,
                    env=env, url=f"postgresql://postgres@127.0.0.1:{port}/postgres")  # fmt: skip
    with server.log.open("ab") as log:
        done = subprocess.run(
            [f"{bindir}/initdb", "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
             "--locale=C", "--no-sync"], stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, timeout=STARTUP, check=False, **server.popen_kwargs(),
        )  # fmt: skip
    if done.returncode != 0:
        raise FaultError(f"initdb failed; {server.log}:\n{tail(server.log)}")
    return server


def _mysql_greets(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            header = sock.recv(5)
    except OSError:
        return False
    return len(header) == 5 and header[4] == 10


def mariadb(directory: Path) -> Server:
    """``mariadbd`` with root and an empty password, database ``test``."""
    port, data = free_port(), directory / "data"
    install = binary(["mariadb-install-db", "mysql_install_db"], "mariadb-server")
    argv = [binary(["mariadbd", "mysqld"], "mariadb-server", ["/usr/sbin"]), "--no-defaults",
            f"--datadir={data}", f"--port={port}", "--bind-address=127.0.0.1",
            f"--socket={directory / 'sock'}", f"--pid-file={directory / 'mariadbd.pid'}",
            "--user=root", "--skip-name-resolve", "--innodb-buffer-pool-size=32M"]  # fmt: skip
    server = Server("mariadb", argv, directory, port, lambda: _mysql_greets(port),
                    url=f"mysql://root@127.0.0.1:{port}/test")
    with server.log.open("ab") as log:
        done = subprocess.run(
            [install, "--no-defaults", f"--datadir={data}",
             "--auth-root-authentication-method=normal", "--user=root"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, timeout=STARTUP,
            cwd=directory, check=False,
        )  # fmt: skip
    if done.returncode != 0:
        raise FaultError(f"{install} failed; {server.log}:\n{tail(server.log)}")
    return server


def prometheus(directory: Path, config: Path) -> Server:
    """``/usr/bin/prometheus`` with ``config``, its storage in ``directory``."""
    port = free_port()
    argv = [binary(["prometheus"], "prometheus", ["/usr/bin"]), f"--config.file={config}",
            f"--storage.tsdb.path={directory / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn"]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    return Server("prometheus", argv, directory, port, lambda: http_ok(f"{url}/-/ready"), url=url)


def alertmanager(directory: Path) -> Server | None:
    """Debian's ``prometheus-alertmanager`` routing to nowhere, or None when not installed."""
    path = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if path is None:
        return None
    port = free_port()
    config = directory / "alertmanager.yml"
    config.write_text("route:\n  receiver: nowhere\n  group_wait: 1s\n  group_interval: 1s\n"
                      "receivers:\n  - name: nowhere\n", encoding="utf-8")  # fmt: skip
    argv = [path, f"--config.file={config}", f"--storage.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=",
            "--log.level=warn"]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    return Server("alertmanager", argv, directory, port, lambda: http_ok(f"{url}/-/ready"), url=url)
