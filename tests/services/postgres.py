"""A throwaway PostgreSQL cluster with prepared transactions enabled."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
from collections.abc import Mapping
from typing import Any

from ._process import (
    STARTUP_TIMEOUT,
    ServiceError,
    ServiceUnavailable,
    _connectable,
    _Process,
    _tail,
)


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
