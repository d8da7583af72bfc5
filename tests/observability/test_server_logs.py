"""Under real uvicorn and gunicorn processes, every line on stdout and stderr is ECS JSON."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from interlock.logs import gunicorn_log_config, uvicorn_log_config
from services import free_port

HERE = Path(__file__).parent
REQUESTS = 4


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}


def _startups(*paths: Path) -> int:
    return sum(path.read_bytes().count(b"Application startup complete") for path in paths)


def _serve_and_stop(
    command: list[str], port: int, tmp_path: Path, started: int = 1
) -> list[dict[str, Any]]:
    """Start the server, send REQUESTS requests, wait until ``started`` workers said
    "Application startup complete", stop it; every output line, parsed."""
    out_path, err_path = tmp_path / "stdout", tmp_path / "stderr"
    with out_path.open("wb") as out_file, err_path.open("wb") as err_file:
        server = subprocess.Popen(command, cwd=HERE, env=_env(), stdout=out_file, stderr=err_file)
    try:
        deadline = time.monotonic() + 30
        sent = 0
        while sent < REQUESTS:
            assert server.poll() is None, "the server exited early"
            assert time.monotonic() < deadline, "the server did not answer within 30 s"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/hello", timeout=2) as r:
                    assert r.status == 200
                    sent += 1
            except OSError:
                time.sleep(0.1)  # not listening yet
        while _startups(out_path, err_path) < started:
            assert time.monotonic() < deadline, f"{started} workers did not start within 30 s"
            time.sleep(0.05)  # every worker up before the stop (its lines are asserted on)
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=10)
    out, err = out_path.read_bytes(), err_path.read_bytes()
    lines = []
    for stream, text in (("stdout", out), ("stderr", err)):
        for line in text.decode().splitlines():
            try:
                lines.append(json.loads(line))
            except ValueError:
                pytest.fail(f"a {stream} line is not JSON: {line!r}\n{out.decode()}{err.decode()}")
    return lines


def _by_logger(lines: list[dict[str, Any]], logger: str) -> list[dict[str, Any]]:
    return [line for line in lines if line["log.logger"] == logger]


def test_uvicorn_with_workers_writes_only_json_lines(tmp_path: Path) -> None:
    config = tmp_path / "log.json"
    config.write_text(json.dumps(uvicorn_log_config("server-logs")))
    port = free_port()

    lines = _serve_and_stop(
        [sys.executable, "-m", "uvicorn", "_server_log_app:app", "--host", "127.0.0.1",
         "--port", str(port), "--workers", "2", "--log-config", str(config)],
        port, tmp_path, started=2,
    )  # fmt: skip

    messages = [line["message"] for line in _by_logger(lines, "uvicorn.error")]
    assert any("Uvicorn running on" in m for m in messages), messages  # the supervisor's
    assert sum("Started server process" in m for m in messages) == 2, messages  # each worker's
    assert len(_by_logger(lines, "uvicorn.access")) == REQUESTS
    assert len(_by_logger(lines, "interlock.http")) == REQUESTS  # once each, not twice
    assert len(_by_logger(lines, "shop")) == REQUESTS
    assert {line["service.name"] for line in _by_logger(lines, "shop")} == {"server-logs-app"}


def test_uvicorn_without_access_lines(tmp_path: Path) -> None:
    config = tmp_path / "log.json"
    config.write_text(json.dumps(uvicorn_log_config("server-logs")))
    port = free_port()

    lines = _serve_and_stop(
        [sys.executable, "-m", "uvicorn", "_server_log_app:app", "--host", "127.0.0.1",
         "--port", str(port), "--log-config", str(config), "--no-access-log"],
        port, tmp_path,
    )  # fmt: skip

    assert _by_logger(lines, "uvicorn.access") == []
    assert len(_by_logger(lines, "interlock.http")) == REQUESTS


def test_gunicorn_with_uvicorn_workers_writes_only_json_lines(tmp_path: Path) -> None:
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text(
        "from interlock.logs import gunicorn_log_config\n"
        "logconfig_dict = gunicorn_log_config('server-logs')\n"
    )
    port = free_port()

    lines = _serve_and_stop(
        [sys.executable, "-m", "gunicorn", "-c", str(conf), "-k", "uvicorn.workers.UvicornWorker",
         "-w", "2", "-b", f"127.0.0.1:{port}", "_server_log_app:app"],
        port, tmp_path, started=2,
    )  # fmt: skip

    messages = [line["message"] for line in _by_logger(lines, "gunicorn.error")]
    assert any("Listening at" in m for m in messages), messages  # the master's
    assert sum("Booting worker" in m for m in messages) == 2, messages
    started = [line for line in _by_logger(lines, "uvicorn.error")]
    assert sum("Application startup complete" in line["message"] for line in started) == 2
    assert len(_by_logger(lines, "uvicorn.access")) == REQUESTS
    assert len(_by_logger(lines, "interlock.http")) == REQUESTS
    assert len(_by_logger(lines, "shop")) == REQUESTS


def test_log_config_command_prints_the_config(capsys: pytest.CaptureFixture[str]) -> None:
    from interlock.cli import main

    assert main(["log-config", "uvicorn", "--service", "shop", "--no-access"]) == 0
    config = json.loads(capsys.readouterr().out)
    assert config == uvicorn_log_config("shop", access=False)
    handler = {"()": "interlock.logs.json_handler", "service": "shop"}
    assert config["handlers"]["interlock"] == handler
    assert config["loggers"]["uvicorn.access"]["level"] == "WARNING"
    assert main(["log-config", "gunicorn", "--level", "debug"]) == 0
    assert json.loads(capsys.readouterr().out) == gunicorn_log_config(level="DEBUG")
