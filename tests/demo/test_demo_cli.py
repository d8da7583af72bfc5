"""The ``interlock`` command and its demo: a run with load, Ctrl-C, a Redis backend."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from interlock.cli import build_parser, main


def test_cli_help_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "demo" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("interlock ")
    demo = build_parser().parse_args(["demo", "--duration", "2", "--port", "0", "--no-load"])
    assert (demo.duration, demo.port, demo.no_load, demo.redis) == (2.0, 0, True, None)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["demo", "--duration", "-1"])


def test_demo_runs_with_load_and_writes_json_logs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "demo.log"
    assert (
        main(["demo", "--duration", "3", "--port", "0", "--log-file", str(log), "--rate", "100"])
        == 0
    )
    err = capsys.readouterr().err
    assert "interlock demo: shop on http://127.0.0.1:" in err
    assert "over 3." in err and "requests" in err and "hit ratio" in err and "committed" in err
    # every count has its unit (issue 11 item 14): rates per second, the ratio in percent
    assert re.search(r"hits +[\d.]+/s +misses +[\d.]+/s +stale +[\d.]+/s", err), err
    assert err.rstrip().endswith("interlock demo: stopped")
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    requests = [r for r in lines if r.get("log.logger") == "interlock.http"]
    assert len(requests) > 50
    routes = {r["interlock.http.route"] for r in requests}
    assert {"/products/{product_id}", "/inventory/{sku}/reserve", "/orders"} <= routes
    assert any(r.get("interlock.cache.result") == "hit" for r in requests)
    assert any("interlock.lock.fence" in r for r in requests)
    assert any(r.get("interlock.txn.outcome") == "committed" for r in requests)


def test_demo_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "interlock.cli", "demo", "--port", "0", "--log-file", "none"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stderr is not None
        banner = ""
        deadline = time.monotonic() + 20
        while "Ctrl-C to stop" not in banner and time.monotonic() < deadline:
            banner += process.stderr.readline()
        assert "Ctrl-C to stop" in banner, banner
        time.sleep(1.5)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert "Traceback" not in err
    assert "interlock demo: stopped" in err


def test_demo_on_redis(redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["demo", "--duration", "2", "--port", "0", "--log-file", "none", "--redis", redis_url]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert f"backend {redis_url}" in err
    assert "committed" in err
    # issue 11 item 11: the banner names the namespace and the exact command showing the
    # demo's locks (without it, `interlock top --url ...` showed "(no locks held)")
    assert f"its locks: interlock top --url {redis_url} --namespace demo" in err


def test_demo_reports_a_busy_port(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        port = sock.getsockname()[1]
        assert main(["demo", "--port", str(port), "--duration", "1", "--log-file", "none"]) == 1
    assert "cannot listen" in capsys.readouterr().err
