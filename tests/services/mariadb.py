"""A throwaway MariaDB server (``mariadbd``) with grants, for XA tests."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Sequence
from typing import Any

from ._process import STARTUP_TIMEOUT, ServiceError, _find_binary, _Process, _tail


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
