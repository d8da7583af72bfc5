"""``interlock chaos gameday --quick`` end to end, and the shipped experiments' templates.

The game day starts its own throwaway Redis, PostgreSQL, MariaDB, demo, bank app,
Prometheus (the generated rules on the 1/60 time scale) and Alertmanager, and runs the
bounded subset: a 2PC coordinator SIGKILLed between prepare and decide, and the link
between the demo and Redis partitioned. About 40 s on a 2-core machine.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from interlock.chaos import QUICK, STANDARD, experiment_names, standard_experiment
from interlock.cli import main
from interlock.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
VALUES = {
    "demo": "http://127.0.0.1:8000", "demo_instance": "127.0.0.1:8000",
    "bank_instance": "127.0.0.1:9400",
    "bank_coordinate": "python -m interlock.demo.bank coordinate",
    "bank_check": "python -m interlock.demo.bank check", "redis_port": 6379,
    "redis_link_port": 16379, "redis_pid_command": "cat /run/redis.pid",
    "redis_argv": '["redis-server", "--port", "6379"]', "partition": 5, "down": 5,
    "fire_within": 20, "resolve_within": 20, "recover_within": 20,
}  # fmt: skip


def test_every_shipped_experiment_parses_once_filled_in() -> None:
    assert set(STANDARD) == set(experiment_names()) and set(QUICK) <= set(STANDARD)
    for name in STANDARD:
        exp = standard_experiment(name, VALUES)
        assert exp.method and exp.alerts and exp.invariants, name


def test_a_missing_placeholder_is_named() -> None:
    values = {k: v for k, v in VALUES.items() if k != "bank_check"}
    with pytest.raises(ConfigError, match=r"killed.toml needs a value for \$bank_check"):
        standard_experiment("coordinator-killed", values)


def test_gameday_quick_detects_and_recovers(tmp_path: Path) -> None:
    out = tmp_path / "gameday"
    code = main(["chaos", "gameday", "--quick", "--out", str(out),
                 "--rules", str(ROOT / "prometheus" / "rules")])  # fmt: skip
    report = json.loads((out / "report.json").read_text())
    print(json.dumps(report, indent=2))  # the figures, with -s
    by_name = {e["name"].split(":")[0]: e for e in report["experiments"]}
    coordinator = by_name["2PC coordinator SIGKILLed mid-commit"]
    assert "InterlockTxnInDoubt" in coordinator["alerts_fired"], coordinator["findings"]
    assert "InterlockTxnInDoubt" in coordinator["alerts_resolved"], coordinator["findings"]
    assert coordinator["invariants"] == {
        "money conserved, no prepared branch left": True,
        "the recovery worker rolled back both branches": True,
    }, coordinator["invariant_details"]
    partition = by_name["App-Redis link partitioned"]
    assert "InterlockCacheDegraded" in partition["alerts_fired"], partition["findings"]
    assert "InterlockCacheDegraded" in partition["alerts_resolved"], partition["findings"]
    assert all(partition["invariants"].values()), partition["invariant_details"]
    assert all(e["time_to_recover_s"] is not None for e in report["experiments"])
    assert report["passed"] and code == 0, [e["findings"] for e in report["experiments"]]
    assert report["gameday"]["quick"] is True
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    kinds = [e["interlock.chaos.kind"] for e in events if e.get("log.logger") == "interlock.chaos"]
    assert kinds == ["kill", "kill", "net-partition", "net-partition"]
    assert "<svg" in (out / "report.html").read_text()
