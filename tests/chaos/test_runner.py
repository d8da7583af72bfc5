"""The runner without Prometheus: blast radius, invariants during a fault, reports, time scale."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import _chaos_stack as stack
import pytest

from interlock.chaos import scale_rules
from interlock.cli import main
from services._process import free_port

PAUSE = """
title = "worker paused"
[settings]
poll = 0.1
steady_within = $steady_within
recover_within = 5
[[steady_state]]
name = "worker runs"
command = "test $$(cut -d' ' -f3 /proc/$pid/stat) != T"
$extra_steady
[[method]]
kind = "pause"
target = "worker"
pid = $pid
duration = 0.5
[[rollbacks]]
name = "mark"
command = "touch $rolled_back"
[[expect.invariants]]
name = "stopped while paused"
when = "during"
command = "test $$(cut -d' ' -f3 /proc/$pid/stat) = T"
[[expect.invariants]]
name = "running again"
command = "test $$(cut -d' ' -f3 /proc/$pid/stat) != T"
within = 2
"""


@pytest.fixture
def worker() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait(10)


def _run(tmp: Path, pid: int, **values: object) -> tuple[int, dict[str, object]]:
    import string

    defaults = {"steady_within": 5, "extra_steady": "", "rolled_back": tmp / "rolled-back"}
    text = string.Template(PAUSE).substitute({**defaults, **values, "pid": pid})
    (tmp / "exp.toml").write_text(text, encoding="utf-8")
    code = main(["chaos", "run", str(tmp / "exp.toml"), "--out", str(tmp / "out"),
                 "--log-file", str(tmp / "chaos.jsonl")])  # fmt: skip
    return code, json.loads((tmp / "out" / "report.json").read_text())


def test_a_pause_without_alerts_passes_its_invariants_and_names_the_gap(
    tmp_path: Path, worker: subprocess.Popen[bytes]
) -> None:
    code, report = _run(tmp_path, worker.pid)
    [result] = report["experiments"]  # type: ignore[misc]
    assert result["invariants"] == {"stopped while paused": True, "running again": True}
    assert result["findings"] == ["no alert is expected to catch pause:worker"]
    assert result["passed"] and code == 0 and result["time_to_recover_s"] is not None
    assert (tmp_path / "rolled-back").exists()
    html = (tmp_path / "out" / "report.html").read_text()
    assert "pause:worker" in html and "<svg" in html and "<script" not in html


def test_steady_state_loss_aborts_before_anything_is_injected(
    tmp_path: Path, worker: subprocess.Popen[bytes]
) -> None:
    closed = f"http://127.0.0.1:{free_port()}/health"
    extra = f'[[steady_state]]\nname = "app answers"\nhttp = "{closed}"'
    code, report = _run(tmp_path, worker.pid, steady_within=0.3, extra_steady=extra)
    [result] = report["experiments"]  # type: ignore[misc]
    assert code == 1 and not report["passed"] and not result["passed"]
    assert "steady state not met before the method (app answers:" in result["aborted"]
    assert "nothing was injected" in result["aborted"] and result["faults"] == []
    lines = (tmp_path / "chaos.jsonl").read_text().splitlines()
    assert not [line for line in lines if "chaos-injected" in line]
    assert (tmp_path / "rolled-back").exists()  # rollbacks run on every way out


def test_an_invalid_experiment_exits_2_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "bad.toml").write_text('title = "x"\n[[method]]\nkind = "nuke"\ntarget = "a"\n')
    assert main(["chaos", "run", str(tmp_path / "bad.toml"), "--out", str(tmp_path)]) == 2
    assert "method[0].kind is 'nuke'; use one of kill, pause" in capsys.readouterr().err


def test_time_scale_changes_durations_only() -> None:
    rule = (
        "  - alert: A\n    expr: sum(increase(x_total[5m])) > 0 unless x_total offset 5m\n"
        "      and rate(y[1h:30s]) > 0 and job:z:rate5m > 1\n    for: 2m\n"
    )
    assert scale_rules(rule, 1 / 60) == (
        "  - alert: A\n    expr: sum(increase(x_total[5000ms])) > 0 unless x_total offset "
        "5000ms\n      and rate(y[60000ms:1000ms]) > 0 and job:z:rate5m > 1\n    for: 2000ms\n"
    )
    with pytest.raises(ValueError, match="positive"):
        scale_rules(rule, 0)


def test_the_scaled_rules_are_valid_prometheus_rules(tmp_path: Path) -> None:
    paths = stack.scaled_rules(tmp_path)
    assert {p.name for p in paths} == {"alerts.yml", "recording.yml"}
    done = subprocess.run(["promtool", "check", "rules", *map(str, paths)],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "for: 120000ms" not in paths[0].read_text()
    assert "for: 2000ms" in (tmp_path / "rules" / "alerts.yml").read_text()
