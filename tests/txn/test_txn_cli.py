"""``interlock txn list|recover|migrate`` on a coordinator that died after its decision."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable

import psycopg
import pytest
from _bank import Bank
from _crash import AFTER, NOTHING_LEFT, crash, recover_until_settled

from interlock.cli import main
from services import MariaDBServer, PostgresServer


def _args(bank: Bank, mariadb: MariaDBServer) -> list[str]:
    return [
        "txn",
        "--url", bank.redis_url,
        "--namespace", bank.namespace,
        "--resource", f"postgres={bank.pg_dsn}",
        "--resource", f"mysql=mysql://root@127.0.0.1:{mariadb.port}/test",
    ]  # fmt: skip


def test_list_then_recover_a_crashed_transfer(
    make_bank: Callable[..., Bank],
    mariadb_server: MariaDBServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bank = make_bank()
    crash(bank, "txn-decided")
    args = _args(bank, mariadb_server)

    assert main([*args, "list", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    [decision] = listing["decisions"]
    assert decision["outcome"] == "commit" and decision["name"] == "transfer"
    assert {(b["resource"], b["decision"]) for b in listing["prepared"]} >= {
        ("postgres", "commit"), ("redis", "commit"),
    }  # fmt: skip

    deadline = time.monotonic() + 15
    while True:  # until the server has detached the dead session's MariaDB branch
        assert main([*args, "recover", "--safety", "0", "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        if not report["pending"]:
            break
        assert time.monotonic() < deadline, report
    assert bank.balances() == AFTER
    assert bank.prepared() == NOTHING_LEFT

    assert main([*args, "list"]) == 0
    assert "0 logged decision(s), 0 prepared branch(es)" in capsys.readouterr().out


def test_migrate_creates_the_decision_and_marker_tables(
    postgres_server: PostgresServer,
    mariadb_server: MariaDBServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    table = "interlock_txn_decisions"
    args = [
        "txn", "--namespace", f"n{uuid.uuid4().hex[:8]}", "--decision-log", postgres_server.dsn,
        "--resource", f"stock=mysql://root@127.0.0.1:{mariadb_server.port}/test", "migrate",
    ]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"decision table {table} ready" in out and "marker table ready on stock" in out
    with psycopg.connect(postgres_server.dsn, autocommit=True) as conn:
        assert conn.execute("SELECT to_regclass(%s)", [table]).fetchone() == (table,)


def test_bad_resources_are_explained(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit, match="use postgresql:// or mysql://"):
        main(["txn", "--resource", "x=redis://localhost", "list"])
    with pytest.raises(SystemExit, match="NAME=URL"):
        main(["txn", "--resource", "postgresql://localhost", "list"])


def test_messages_name_the_command_line_flags(
    redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Fixes are spelled as this command's flags, not as Python arguments."""
    namespace = f"n{uuid.uuid4().hex[:8]}"
    base = ["txn", "--url", redis_url, "--namespace", namespace]
    assert main([*base, "recover"]) == 2  # the session Redis runs without AOF
    err = capsys.readouterr().err
    assert "--durability relaxed" in err and "durability='relaxed'" not in err
    assert "appendfsync always" in err

    assert main([*base, "--decision-log", "sqlite:///x", "list"]) == 2
    err = capsys.readouterr().err
    assert "--decision-log" in err and "decision_log=" not in err

    with pytest.raises(SystemExit):
        main([*base, "--durability", "relaxed", "recover", "--safety", "-1"])
    assert "--safety" in capsys.readouterr().err


def test_recover_names_the_flag_for_a_resource_that_is_not_given(
    make_bank: Callable[..., Bank], capsys: pytest.CaptureFixture[str]
) -> None:
    bank = make_bank()
    crash(bank, "txn-decided")
    args = ["txn", "--url", bank.redis_url, "--namespace", bank.namespace,
            "--resource", f"postgres={bank.pg_dsn}"]  # fmt: skip
    try:
        assert main([*args, "recover", "--safety", "0"]) == 1
        out = capsys.readouterr().out
        assert "--resource mysql=" in out  # the branch on mysql needs it
    finally:
        il = bank.interlock()
        try:
            recover_until_settled(il)
        finally:
            il.close()
