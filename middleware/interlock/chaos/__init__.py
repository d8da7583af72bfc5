"""Fault injection: in-process rules, real faults, and declarative experiments. Off unless used.

**In-process rules.** A chaos spec is a comma-separated list of rules
``kind:target:probability[:seconds]``:

* ``latency:lock_acquire:0.1:0.05`` — delay 10 % of lock acquisitions by 50 ms;
* ``error:GET:0.01`` — fail 1 % of plain ``GET`` commands with ``BackendUnavailable``;
* ``error:*:0.5`` — fail half of all backend operations.

Targets are backend operations: Lua script names (``lock_acquire``, ``lock_release``,
``lock_extend``, the cache and transaction scripts) and plain command names (``GET``,
``SET``, ...), or ``*``. Pass the spec as ``Interlock(..., chaos=spec)`` or set
``INTERLOCK_CHAOS``; each injected fault counts in
``interlock_chaos_injected_total{kind,target}`` (the target label is the rule's target, so it
stays bounded). Use it in staging and demos to watch dashboards and alerts react.

**Real faults** (:data:`FAULT_KINDS`): SIGKILL or SIGSTOP/SIGCONT of a process
(:class:`KillProcess`, :class:`PauseProcess`), link faults through the TCP
:class:`FaultProxy` (:class:`NetworkFault`), a server killed and restarted
(:class:`RestartServer`). Each injection is counted in the same metric and logged as
``chaos-injected`` / ``chaos-ended`` event lines (:class:`FaultRecorder`).

**Experiments**: :func:`load_experiment` reads a TOML experiment (steady state, method,
rollbacks, expected alerts and invariants), :func:`run_experiment` runs it and
:func:`write_reports` writes ``report.json`` and ``report.html``; ``interlock chaos run``
does all three (docs/chaos.md).

**Game days**: :func:`run_gameday` starts throwaway local services (Redis, PostgreSQL,
MariaDB, the demo, the 2PC bank app, Prometheus, Alertmanager) and runs the standard
experiments shipped in ``chaos/experiments/`` (:data:`STANDARD`; :data:`QUICK` is the
bounded subset): ``interlock chaos gameday``.
"""

from __future__ import annotations

from interlock.chaos._experiment import Experiment, load_experiment, parse_experiment
from interlock.chaos._faults import (
    FAULT_KINDS,
    Fault,
    FaultError,
    KillProcess,
    NetworkFault,
    PauseProcess,
    PidSource,
    RestartServer,
)
from interlock.chaos._gameday import (
    QUICK,
    STANDARD,
    experiment_names,
    run_gameday,
    standard_experiment,
)
from interlock.chaos._plan import (
    KINDS,
    ChaosPlan,
    ChaosRule,
    parse_chaos,
)
from interlock.chaos._proxy import FaultProxy
from interlock.chaos._record import FaultRecorder
from interlock.chaos._report import write_reports
from interlock.chaos._runner import ExperimentResult, run_experiment
from interlock.chaos._timescale import scale_rules

__all__ = [
    "FAULT_KINDS",
    "KINDS",
    "QUICK",
    "STANDARD",
    "ChaosPlan",
    "ChaosRule",
    "Experiment",
    "ExperimentResult",
    "Fault",
    "FaultError",
    "FaultProxy",
    "FaultRecorder",
    "KillProcess",
    "NetworkFault",
    "PauseProcess",
    "PidSource",
    "RestartServer",
    "experiment_names",
    "load_experiment",
    "parse_chaos",
    "parse_experiment",
    "run_experiment",
    "run_gameday",
    "scale_rules",
    "standard_experiment",
    "write_reports",
]
