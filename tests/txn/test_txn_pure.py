"""The pure parts of two-phase commit: ids, records, the state machine, recovery rules."""

from __future__ import annotations

import pytest

from interlock.errors import ConfigError, TransactionError
from interlock.txn import BranchRef, Decision, State, Vote, parse_gtrid
from interlock.txn._records import decode_decision, encode_decision
from interlock.txn._state import Action, abort_reason, advance, heuristic, recovery_action
from interlock.txn._xid import (
    MAX_GTRID,
    branch_xid,
    default_coordinator_id,
    gtrid_prefix,
    namespace_tag,
    new_gtrid,
    owned_by,
    split_branch,
    validate_coordinator_id,
)


def test_gtrid_names_namespace_coordinator_and_creation_time() -> None:
    gtrid = new_gtrid("shop", "web-1", 1_700_000_000.123)
    info = parse_gtrid(gtrid)
    assert info is not None
    assert (info.namespace_tag, info.coordinator) == ("shop", "web-1")
    assert info.created == pytest.approx(1_700_000_000.123, abs=0.001)
    assert gtrid.startswith(gtrid_prefix("shop"))
    assert gtrid != new_gtrid("shop", "web-1", 1_700_000_000.123)  # random part


def test_gtrid_fits_mysql_even_for_the_longest_namespace() -> None:
    longest = "n" * 64
    gtrid = new_gtrid(longest, "c" * 10, 4_000_000_000.0)
    assert len(gtrid) <= MAX_GTRID
    assert owned_by(gtrid, longest)
    assert not owned_by(gtrid, "n" * 63)
    assert namespace_tag(longest) != namespace_tag("n" * 63 + "m")


def test_recovery_only_claims_its_own_namespace() -> None:
    ours = new_gtrid("shop", "a", 1.0)
    assert owned_by(ours, "shop")
    assert not owned_by(ours, "shop2")
    assert not owned_by(new_gtrid("shop2", "a", 1.0), "shop")
    for foreign in ("", "il:shop", "il:shop:a:zz", "xx:shop:a:0000000000000000a", "shop:1"):
        assert parse_gtrid(foreign) is None
        assert not owned_by(foreign, "shop")


def test_branch_ids_round_trip() -> None:
    gtrid = new_gtrid("shop", "a", 2.0)
    assert split_branch(branch_xid(gtrid, "3")) == (gtrid, "3")
    assert split_branch(gtrid) is None  # a gtrid alone is not a branch id
    assert split_branch("someone-elses-gid") is None


def test_coordinator_ids_are_validated() -> None:
    assert validate_coordinator_id(default_coordinator_id())
    for bad in ("", "has:colon", "x" * 11, "sp ace"):
        with pytest.raises(ConfigError, match="coordinator_id"):
            validate_coordinator_id(bad)


def test_decisions_round_trip_and_reject_garbage() -> None:
    decision = Decision(
        new_gtrid("shop", "a", 3.0),
        "checkout",
        "commit",
        3.25,
        (BranchRef("postgres", "postgres", "1", "731"), BranchRef("redis", "redis", "2", "s")),
    )
    assert decode_decision(encode_decision(decision)) == decision
    assert decode_decision(encode_decision(decision).encode()) == decision
    for garbage in ("{}", "not json", '{"xid":"x","name":"n","outcome":"maybe","created":1}'):
        with pytest.raises(TransactionError, match="corrupted"):
            decode_decision(garbage)


def test_state_machine_allows_only_protocol_moves() -> None:
    state = advance(State.ACTIVE, State.PREPARING)
    state = advance(state, State.PREPARED)
    state = advance(state, State.COMMITTING)
    assert advance(state, State.COMMITTED) is State.COMMITTED
    assert advance(State.PREPARED, State.ABORTING) is State.ABORTING
    for current, new in [
        (State.COMMITTED, State.ABORTING),
        (State.ABORTED, State.PREPARING),
        (State.COMMITTING, State.ABORTING),  # after the decision there is no way back
        (State.ACTIVE, State.COMMITTING),  # no commit without prepare and a decision
    ]:
        with pytest.raises(TransactionError, match="cannot become"):
            advance(current, new)


@pytest.mark.parametrize(
    ("votes", "late", "reason"),
    [
        ([Vote.YES, Vote.YES], False, None),
        ([Vote.YES, Vote.YES], True, "timeout"),
        ([Vote.YES, Vote.NO], False, "vote_no"),
        ([Vote.ERROR, Vote.NO], False, "vote_no"),
        ([Vote.ERROR, Vote.YES], False, "error"),
        ([Vote.NO, Vote.TIMEOUT], False, "timeout"),
    ],
)
def test_abort_reason(votes: list[Vote], late: bool, reason: str | None) -> None:
    assert abort_reason(votes, late) == reason


def test_recovery_action_presumes_abort_only_after_the_safety_interval() -> None:
    assert recovery_action("commit", 0.0, 60.0) is Action.COMMIT
    assert recovery_action("abort", 0.0, 60.0) is Action.ABORT
    assert recovery_action(None, 59.9, 60.0) is Action.WAIT
    assert recovery_action(None, 60.0, 60.0) is Action.DECIDE_ABORT


def test_heuristic_means_a_fate_against_the_decision() -> None:
    assert heuristic("commit", "aborted")
    assert heuristic("abort", "committed")
    assert not heuristic("commit", "committed")
    assert not heuristic("commit", "unknown")
    assert not heuristic("abort", "aborted")


def test_the_worker_leaves_a_decided_transaction_to_its_coordinator_for_settle() -> None:
    assert recovery_action("commit", 4.9, 60.0, settle=5.0) is Action.WAIT
    assert recovery_action("abort", 4.9, 60.0, settle=5.0) is Action.WAIT
    assert recovery_action("commit", 5.0, 60.0, settle=5.0) is Action.COMMIT
    assert recovery_action(None, 4.9, 60.0, settle=5.0) is Action.WAIT
