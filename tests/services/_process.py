"""Free ports and one server process: started, stopped, killed or paused with deadlines.

Every process is killed at interpreter exit (``atexit``, plus a parent-death signal if the
interpreter itself is killed).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

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


def wait_until(
    predicate: Callable[[], bool], timeout: float = 10.0, message: str = "condition"
) -> None:
    """Poll ``predicate`` until true, or raise :class:`ServiceError` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise ServiceError(f"timed out after {timeout} s waiting for {message}")
        time.sleep(_POLL)
