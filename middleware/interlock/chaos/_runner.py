"""Run one experiment: steady state, the method's faults, detection, invariants, recovery.

1. Start the experiment's fault proxies. The steady-state probes must all hold within
   ``settings.steady_within`` seconds, and no expected alert may be firing already —
   otherwise the run is **aborted before anything is injected** (blast radius: a system
   that is not healthy is not disturbed further).
2. Each fault of the method runs on a thread of its own: it waits ``after`` seconds from
   the method's start, is injected (counted and logged), held ``duration`` seconds and
   undone. Meanwhile, every ``settings.poll`` seconds, the alerts are read (Prometheus or
   Alertmanager), the ``during`` invariants are probed while a fault is active, and once
   every fault has ended the steady state is probed until it holds again.
3. The run ends when the steady state is back and every expected alert has fired and
   resolved, or when ``max(recover_within, resolve_within)`` has passed since the last
   fault ended. Then the ``after`` invariants are probed (each for up to its ``within``)
   and the rollbacks run — they run on every way out, Ctrl-C included.

Times are seconds since the method's start; *time to detect* is from the first injection
to the first expected alert firing, *time to recover* from the end of the last fault to
the steady state holding again.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from interlock.chaos._experiment import AlertExpectation, Experiment, FaultSpec, Probe
from interlock.chaos._faults import (
    NETWORK_KINDS,
    Fault,
    FaultTimes,
    KillProcess,
    NetworkFault,
    PauseProcess,
    PidSource,
    RestartServer,
    run_fault,
)
from interlock.chaos._probes import AlertState, ProbeError, evaluate, read_alerts
from interlock.chaos._proxy import FaultProxy
from interlock.chaos._record import FaultRecorder
from interlock.errors import ConfigError


@dataclass
class AlertOutcome:
    alert: str
    fired_at: float | None = None
    resolved_at: float | None = None
    passed: bool = False


@dataclass
class Observation:
    t: float
    firing: tuple[str, ...] = ()
    pending: tuple[str, ...] = ()
    steady: bool | None = None  # probed only after the faults ended
    error: str = ""


@dataclass
class ExperimentResult:
    """What one run showed; :meth:`summary` is its entry in ``report.json``."""

    name: str
    fault: str
    passed: bool = False
    aborted: str = ""
    started_at: float = 0.0  # Unix time of the method's start
    alerts: list[AlertOutcome] = field(default_factory=list)
    alerts_fired: list[str] = field(default_factory=list)
    invariants: dict[str, bool] = field(default_factory=dict)
    invariant_details: dict[str, str] = field(default_factory=dict)
    faults: list[dict[str, Any]] = field(default_factory=list)
    time_to_detect_s: float | None = None
    time_to_recover_s: float | None = None
    findings: list[str] = field(default_factory=list)
    observations: list[Observation] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        still = {o.alert for o in self.alerts if o.resolved_at is None}
        return {
            "name": self.name,
            "fault": self.fault,
            "passed": self.passed,
            "alerts_expected": [o.alert for o in self.alerts],
            "alerts_fired": self.alerts_fired,
            "alerts_resolved": [a for a in self.alerts_fired if a not in still],
            "invariants": self.invariants,
            "time_to_detect_s": self.time_to_detect_s,
            "time_to_recover_s": self.time_to_recover_s,
            "aborted": self.aborted,
            "findings": self.findings,
            "faults": self.faults,
            "alerts": [vars(o) for o in self.alerts],
            "invariant_details": self.invariant_details,
        }


def build_fault(spec: FaultSpec, proxies: dict[str, FaultProxy]) -> Fault:
    """The fault a method entry describes."""
    source = PidSource(spec.pid, spec.pidfile, spec.pid_command)
    if spec.kind == "kill":
        return KillProcess(spec.target, source)
    if spec.kind == "pause":
        return PauseProcess(spec.target, source, spec.duration)
    if spec.kind in NETWORK_KINDS:
        proxy = proxies[spec.proxy]
        return NetworkFault(spec.kind, spec.target, proxy, spec.duration, spec.latency,
                            spec.jitter)  # fmt: skip
    if spec.ready is None:
        raise ConfigError(f"{spec.name}: a server-restart fault needs ready = 'host:port'")
    return RestartServer(spec.target, source, spec.duration, ready=spec.ready,
                         restart=spec.restart, ready_timeout=spec.ready_timeout,
                         argv=None if spec.argv is None else list(spec.argv))  # fmt: skip


def _matches(expected: AlertExpectation, alert: AlertState) -> bool:
    return alert.name == expected.alert and all(
        alert.labels.get(k) == v for k, v in expected.labels.items()
    )


class _Run:
    """One experiment's run; :func:`run_experiment` is the entry point."""

    def __init__(
        self, exp: Experiment, prometheus: str, alertmanager: str, recorder: FaultRecorder,
        say: Callable[[str], None],
    ) -> None:  # fmt: skip
        self.exp, self.prometheus, self.alertmanager = exp, prometheus, alertmanager
        self.recorder, self.say = recorder, say
        self.result = ExperimentResult(exp.title, exp.fault)
        self.result.alerts = [AlertOutcome(a.alert) for a in exp.alerts]
        self.stop = threading.Event()

    def probe_all(self, probes: tuple[Probe, ...]) -> tuple[bool, str]:
        failed = []
        for probe in probes:
            outcome = evaluate(probe, self.prometheus)
            if not outcome.ok:
                failed.append(f"{probe.name}: {outcome.detail}")
        return not failed, "; ".join(failed)

    def alerts_now(self) -> list[AlertState]:
        if not (self.prometheus or self.alertmanager):
            return []
        return read_alerts(self.prometheus, self.alertmanager)

    def steady_before(self) -> bool:
        deadline = time.monotonic() + self.exp.settings.steady_within
        while True:
            ok, detail = self.probe_all(self.exp.steady_state)
            if ok:
                break
            if time.monotonic() >= deadline or self.stop.is_set():
                self.result.aborted = (f"steady state not met before the method ({detail}); "
                                       "nothing was injected")  # fmt: skip
                return False
            time.sleep(self.exp.settings.poll)  # pacing the probes
        try:
            alerts = self.alerts_now()
        except ProbeError as exc:
            self.result.aborted = f"alerts cannot be read ({exc}); nothing was injected"
            return False
        already = sorted({e.alert for e in self.exp.alerts for a in alerts
                          if _matches(e, a) and a.state == "firing"})  # fmt: skip
        if already:
            self.result.aborted = (f"expected alerts already firing before the method: "
                                   f"{', '.join(already)}; nothing was injected")  # fmt: skip
            return False
        return True

    def method(self, proxies: dict[str, FaultProxy]) -> None:
        exp, result = self.exp, self.result
        start = time.monotonic()
        result.started_at = time.time()
        faults = [(spec, build_fault(spec, proxies), FaultTimes()) for spec in exp.method]
        threads = [
            threading.Thread(
                target=run_fault, args=(fault, self.recorder),
                kwargs={"after": spec.after, "start": start, "stop": self.stop, "times": times},
                name=f"chaos-{spec.name}", daemon=True,
            )
            for spec, fault, times in faults
        ]  # fmt: skip
        for thread in threads:
            thread.start()
        during = tuple(p for p in exp.invariants if p.when == "during")
        for probe in during:
            result.invariants[probe.name] = True
        fired: set[str] = set()
        last_end: float | None = None
        recovered_at: float | None = None
        grace = max([exp.settings.recover_within, *(a.resolve_within for a in exp.alerts)])

        def active() -> bool:
            return any(t.injected is not None and t.ended is None for _, _, t in faults)

        try:
            while True:
                now = time.monotonic() - start
                seen = Observation(now)
                try:
                    alerts = self.alerts_now()
                except ProbeError as exc:
                    alerts, seen.error = [], str(exc)
                seen.firing = tuple(sorted({a.name for a in alerts if a.state == "firing"}))
                seen.pending = tuple(sorted({a.name for a in alerts if a.state == "pending"}))
                fired.update(seen.firing)
                for expected, outcome in zip(exp.alerts, result.alerts, strict=True):
                    firing = any(_matches(expected, a) and a.state == "firing" for a in alerts)
                    if firing:
                        outcome.fired_at = outcome.fired_at if outcome.fired_at is not None \
                            else now  # fmt: skip
                        outcome.resolved_at = None
                    elif outcome.fired_at is not None and outcome.resolved_at is None \
                            and not seen.error:  # fmt: skip
                        outcome.resolved_at = now
                if active():
                    for probe in during:
                        checked = evaluate(probe, self.prometheus)
                        # a probe the fault's end overtook saw the healed system: no verdict
                        if not checked.ok and active():
                            result.invariants[probe.name] = False
                            result.invariant_details[probe.name] = (
                                f"at {now:.1f} s: {checked.detail}"
                            )
                if not any(thread.is_alive() for thread in threads):
                    ends = [t.ended for _, _, t in faults if t.ended is not None]
                    last_end = max(ends) if ends else now
                    if recovered_at is None:
                        ok, _ = self.probe_all(exp.steady_state)
                        seen.steady = ok
                        if ok:
                            recovered_at = time.monotonic() - start
                    settled = all(o.fired_at is not None and o.resolved_at is not None
                                  for o in result.alerts)  # fmt: skip
                    if (recovered_at is not None and settled) or now - last_end > grace:
                        result.observations.append(seen)
                        break
                result.observations.append(seen)
                time.sleep(exp.settings.poll)  # pacing the observations
        finally:
            self.stop.set()
            for thread in threads:
                thread.join()
        self.score(faults, fired, last_end, recovered_at)

    def score(
        self, faults: list[tuple[FaultSpec, Fault, FaultTimes]], fired: set[str],
        last_end: float | None, recovered_at: float | None,
    ) -> None:  # fmt: skip
        exp, result = self.exp, self.result
        result.alerts_fired = sorted(fired)
        result.faults = [
            {"name": spec.name, "kind": spec.kind, "target": spec.target,
             "injected_s": _round(t.injected), "ended_s": _round(t.ended), "error": t.error}
            for spec, _, t in faults
        ]  # fmt: skip
        injected = [t.injected for _, _, t in faults if t.injected is not None]
        first = min(injected) if injected else 0.0
        last_end = last_end if last_end is not None else first
        detect = []
        for expected, outcome in zip(exp.alerts, result.alerts, strict=True):
            outcome.passed = (
                outcome.fired_at is not None
                and outcome.fired_at - first <= expected.fire_within
                and outcome.resolved_at is not None
                and outcome.resolved_at - last_end <= expected.resolve_within
            )
            if outcome.fired_at is not None:
                detect.append(outcome.fired_at - first)
            for key in ("fired_at", "resolved_at"):
                setattr(outcome, key, _round(getattr(outcome, key)))
        result.time_to_detect_s = _round(min(detect)) if detect else None
        if recovered_at is not None:
            result.time_to_recover_s = _round(max(0.0, recovered_at - last_end))
        for probe in (p for p in exp.invariants if p.when == "after"):
            ok, detail = self.invariant_after(probe)
            result.invariants[probe.name] = ok
            if not ok:
                result.invariant_details[probe.name] = detail
        if not exp.alerts:
            result.findings.append(f"no alert is expected to catch {exp.fault}")
        unexpected = sorted(fired - {a.alert for a in exp.alerts})
        if unexpected:
            result.findings.append(f"also fired: {', '.join(unexpected)}")
        for outcome in result.alerts:
            if not outcome.passed:
                if outcome.fired_at is None:
                    why = "never fired"
                elif outcome.resolved_at is None:
                    why = "did not resolve"
                else:
                    why = "fired or resolved outside its window"
                result.findings.append(f"{outcome.alert}: {why}")
        recovered = not exp.steady_state or (
            result.time_to_recover_s is not None
            and result.time_to_recover_s <= exp.settings.recover_within
        )
        if not recovered:
            result.findings.append("steady state not back within settings.recover_within")
        errors = [f["error"] for f in result.faults if f["error"]]
        result.findings.extend(errors)
        result.passed = (
            recovered and not errors and all(o.passed for o in result.alerts)
            and all(result.invariants.values())
        )  # fmt: skip

    def invariant_after(self, probe: Probe) -> tuple[bool, str]:
        deadline = time.monotonic() + probe.within
        while True:
            outcome = evaluate(probe, self.prometheus)
            if outcome.ok or time.monotonic() >= deadline:
                return outcome.ok, outcome.detail
            time.sleep(self.exp.settings.poll)  # pacing the probe

    def rollbacks(self) -> None:
        for rollback in self.exp.rollbacks:
            try:
                done = subprocess.run(  # noqa: S602 - the experiment's own command
                    rollback.command, shell=True, timeout=rollback.timeout, capture_output=True,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                self.result.findings.append(f"rollback {rollback.name}: timed out")
                continue
            if done.returncode != 0:
                self.result.findings.append(
                    f"rollback {rollback.name}: exit {done.returncode}"
                )


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def run_experiment(
    exp: Experiment, *, prometheus: str = "", alertmanager: str = "",
    recorder: FaultRecorder | None = None, say: Callable[[str], None] = lambda _: None,
    proxies: Mapping[str, FaultProxy] | None = None,
) -> ExperimentResult:  # fmt: skip
    """Run ``exp`` (see the module docstring); URLs given here win over its settings.

    Args:
        proxies: fault proxies already running, by the name of a ``[[proxies]]`` entry:
            used instead of starting that entry's proxy, and left running (an app that
            must connect through the link before the experiment starts, as in a game day).

    Raises:
        ConfigError: the experiment needs Prometheus (alerts, PromQL probes) and has none.
    """
    prometheus = (prometheus or exp.settings.prometheus).rstrip("/")
    alertmanager = (alertmanager or exp.settings.alertmanager).rstrip("/")
    promql = [p.name for p in (*exp.steady_state, *exp.invariants) if p.kind == "promql"]
    if (promql and not prometheus) or (exp.alerts and not (prometheus or alertmanager)):
        raise ConfigError(f"{exp.source}: expected alerts and PromQL probes need Prometheus: "
                          "set settings.prometheus or pass --prometheus URL")  # fmt: skip
    run = _Run(exp, prometheus, alertmanager, recorder or FaultRecorder(), say)
    given = dict(proxies or {})
    owned: dict[str, FaultProxy] = {}
    try:
        for spec in exp.proxies:
            if spec.name not in given:
                owned[spec.name] = FaultProxy(*spec.upstream, listen_port=spec.listen).start()
        say(f"{exp.title}: steady state")
        if run.steady_before():
            say(f"{exp.title}: method ({exp.fault})")
            run.method({**given, **owned})
        else:
            say(f"{exp.title}: aborted: {run.result.aborted}")
    finally:
        run.stop.set()
        run.rollbacks()
        for proxy in given.values():
            proxy.clear()  # healed, whatever happened
        for proxy in owned.values():
            proxy.close()
    say(f"{exp.title}: {'passed' if run.result.passed else 'FAILED'}")
    return run.result
