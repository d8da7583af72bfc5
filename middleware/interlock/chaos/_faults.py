"""Real faults: signals to processes, a fault proxy's link faults, a server killed and restarted.

Each fault has a ``kind`` (one of :data:`FAULT_KINDS`, the metric label), a ``target`` (the
name the experiment gives the thing disturbed) and a ``duration``; :meth:`Fault.inject`
starts it and :meth:`Fault.end` undoes it (resume the process, heal the link, restart the
server). ``end`` is safe to call twice and after a failed ``inject``, so a runner can
always call it on the way out. :func:`run_fault` does one with its accounting.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from interlock.chaos._proxy import FaultProxy
from interlock.chaos._record import FaultRecorder
from interlock.errors import ConfigError

PROCESS_KINDS = ("kill", "pause")
NETWORK_KINDS = ("net-latency", "net-stall", "net-reset", "net-partition")
SERVER_KINDS = ("server-restart",)
FAULT_KINDS = PROCESS_KINDS + NETWORK_KINDS + SERVER_KINDS

_POLL = 0.02
# Starts argv[1:] in a new session and exits at once: the restarted server is not the
# runner's child (it outlives the run, as the killed one did, and leaves no zombie).
_DETACH = (
    "import os, sys\nif os.fork() == 0:\n    os.setsid()\n    os.execvp(sys.argv[1], sys.argv[1:])"
)


class FaultError(RuntimeError):
    """A fault could not be injected or undone (no such process, server did not come back)."""


class Fault(Protocol):
    """One real fault: started by :meth:`inject`, undone by :meth:`end` (idempotent)."""

    kind: str
    target: str
    duration: float

    def inject(self) -> str:
        """Start the fault; returns a detail for the log line (e.g. the pid signalled)."""

    def end(self) -> str:
        """Undo the fault; returns a detail for the log line."""


# ---------------------------------------------------------------------------- processes


@dataclass(frozen=True)
class PidSource:
    """Where a fault finds its process: a pid, a pid file, or a command printing the pid."""

    pid: int | None = None
    pidfile: str | None = None
    pid_command: str | None = None

    def resolve(self) -> int:
        """The pid now (read at injection time: a restarted worker has a new one)."""
        if self.pid is not None:
            return self.pid
        if self.pidfile is not None:
            text = Path(self.pidfile).read_text(encoding="utf-8")
        elif self.pid_command is not None:
            done = subprocess.run(  # noqa: S602 - the experiment's own command
                self.pid_command, shell=True, capture_output=True, text=True, timeout=10,
                check=False,
            )  # fmt: skip
            text = done.stdout
        else:
            raise ConfigError("a process fault needs pid, pidfile or pid_command")
        words = text.split()
        if not words or not words[0].isdigit():
            raise FaultError(f"no pid found (read {text.strip()[:80]!r})")
        return int(words[0])


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (a killed child not yet reaped is dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def _wait(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise FaultError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(_POLL)  # polling process or port state


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        raise FaultError(f"no process {pid}") from None


class KillProcess:
    """SIGKILL a process (an app worker, a lock holder, a 2PC coordinator); nothing to undo."""

    kind = "kill"

    def __init__(self, target: str, source: PidSource) -> None:
        self.target, self.source, self.duration = target, source, 0.0

    def inject(self) -> str:
        pid = self.source.resolve()
        _signal(pid, signal.SIGKILL)
        return f"pid {pid}"

    def end(self) -> str:
        return ""


class PauseProcess:
    """SIGSTOP a process for ``duration`` seconds, then SIGCONT (a GC pause, a VM freeze)."""

    kind = "pause"

    def __init__(self, target: str, source: PidSource, duration: float) -> None:
        self.target, self.source, self.duration = target, source, duration
        self._pid: int | None = None

    def inject(self) -> str:
        self._pid = self.source.resolve()
        _signal(self._pid, signal.SIGSTOP)
        return f"pid {self._pid}"

    def end(self) -> str:
        pid, self._pid = self._pid, None
        if pid is None:
            return ""
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
        return f"pid {pid} resumed"


# ---------------------------------------------------------------------------- network


class NetworkFault:
    """A link fault on a :class:`FaultProxy` for ``duration`` seconds, then healed."""

    def __init__(
        self, kind: str, target: str, proxy: FaultProxy, duration: float,
        latency: float = 0.0, jitter: float = 0.0,
    ) -> None:  # fmt: skip
        if kind not in NETWORK_KINDS:
            raise ConfigError(f"{kind!r} is not a network fault; use one of {NETWORK_KINDS}")
        self.kind, self.target, self.proxy, self.duration = kind, target, proxy, duration
        self.latency, self.jitter = latency, jitter

    def inject(self) -> str:
        if self.kind == "net-latency":
            self.proxy.latency(self.latency, self.jitter)
            return f"{self.latency * 1000:g} ms ± {self.jitter * 1000:g} ms"
        if self.kind == "net-stall":
            self.proxy.stall()
        elif self.kind == "net-reset":
            self.proxy.reset()
            self.proxy.refuse()  # resets keep coming for the fault's duration
        else:
            self.proxy.partition(self.duration)
        return f"port {self.proxy.port} -> {self.proxy.upstream[0]}:{self.proxy.upstream[1]}"

    def end(self) -> str:
        self.proxy.clear()
        return "healed"


# ---------------------------------------------------------------------------- servers


def _connectable(address: tuple[str, int]) -> bool:
    try:
        with socket.create_connection(address, timeout=0.5):
            return True
    except OSError:
        return False


class RestartServer:
    """Kill a server (SIGKILL: no clean shutdown), keep it down ``duration`` s, start it again.

    It starts again with ``restart`` (a shell command: ``systemctl start redis``, a
    ``docker start``, or the server's own command line), or by re-executing ``argv`` (no
    shell) in the working directory the killed process had, or, with neither, the command
    line read from ``/proc`` (not for servers that rewrite their process title, as Redis
    does: give ``argv``).
    It is back when ``ready`` (``host:port``) accepts connections, within ``ready_timeout``.
    Whether data survives is the server's own persistence (Redis: ``appendonly``).
    """

    kind = "server-restart"

    def __init__(
        self, target: str, source: PidSource, duration: float, *, ready: tuple[str, int],
        restart: str | None = None, argv: list[str] | None = None, ready_timeout: float = 30.0,
    ) -> None:  # fmt: skip
        if restart is not None and argv is not None:
            raise ConfigError(f"{target}: give restart (a shell command) or argv, not both")
        self.target, self.source, self.duration = target, source, duration
        self.ready, self.restart, self.ready_timeout = ready, restart, ready_timeout
        self._argv: list[str] | None = list(argv) if argv is not None else None
        self._cwd: str | None = None
        self._down = False
        self.restarted_with = ""  # what end() ran

    def inject(self) -> str:
        pid = self.source.resolve()
        if self.restart is None:
            try:
                self._cwd = os.readlink(f"/proc/{pid}/cwd")
                raw = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError as exc:
                raise FaultError(f"cannot read the command line of pid {pid}: {exc}") from exc
            if self._argv is None:  # NUL-terminated arguments; empty ones are arguments too
                self._argv = [part.decode() for part in raw.removesuffix(b"\0").split(b"\0")]
        _signal(pid, signal.SIGKILL)
        self._down = True
        _wait(lambda: not alive(pid), 10.0, f"pid {pid} to die")
        _wait(lambda: not _connectable(self.ready), 10.0, f"{self.ready} to close")
        return f"pid {pid} killed"

    def end(self) -> str:
        if not self._down:
            return ""
        self._down = False
        if self.restart is not None:
            argv, how = ["/bin/sh", "-c", self.restart], self.restart
        elif self._argv:
            argv, how = self._argv, shlex.join(self._argv)
        else:
            raise FaultError(f"no command line to restart {self.target} with")
        subprocess.run(
            [sys.executable, "-c", _DETACH, *argv], cwd=self._cwd, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, timeout=10,
        )  # fmt: skip
        self.restarted_with = how
        _wait(lambda: _connectable(self.ready), self.ready_timeout, f"{self.ready} to accept")
        return f"restarted: {how}"


# ---------------------------------------------------------------------------- running one


@dataclass
class FaultTimes:
    """When a fault ran, in seconds on the runner's clock (``None``: not (yet) happened)."""

    injected: float | None = None
    ended: float | None = None
    error: str = ""


def run_fault(
    fault: Fault, recorder: FaultRecorder, *, after: float, start: float,
    stop: threading.Event, times: FaultTimes,
) -> None:  # fmt: skip
    """Wait until ``start + after`` (monotonic), inject, hold ``duration``, end; record all.

    ``stop`` cuts the wait and the hold short (an aborted run); ``end`` always runs once the
    fault was injected. Errors are kept in ``times.error``, never raised (this runs on a
    thread of its own).
    """
    if stop.wait(max(0.0, start + after - time.monotonic())):
        return
    try:
        detail = fault.inject()
    except Exception as exc:  # reported in the experiment's result
        times.error = f"inject: {type(exc).__name__}: {exc}"
        detail = "failed"
    # counted even when injection failed midway: a process may be killed all the same
    times.injected = time.monotonic() - start
    recorder.injected(fault.kind, fault.target, fault.duration, detail)
    try:
        if not times.error:
            stop.wait(fault.duration)
    finally:
        try:
            detail = fault.end()
        except Exception as exc:
            times.error = times.error or f"end: {type(exc).__name__}: {exc}"
            detail = "not undone"
        times.ended = time.monotonic() - start
        recorder.ended(fault.kind, fault.target, times.ended - times.injected, detail)
