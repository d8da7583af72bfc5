"""Prometheus recording rules and alerts, written as YAML by hand (deterministic, stdlib).

Recording rules come in two levels: per-instance rates of each :class:`~.promql.Counter`
(``job_instance_<entity>:<name>:rate<window>``, read by the dashboards with their job and
instance variables) and per-job ratios built from them by the ratio functions of
:mod:`.promql` (read by the alerts). Prometheus evaluates the rules of a group in order, so
a ratio reads the rates recorded just before it at the same evaluation time.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from . import config as c
from . import promql as q
from .promql import Counter, Raw, Recorded

RECORDED = Recorded(c.RULE_WINDOW)


@dataclass(frozen=True)
class Rule:
    name: str  # the series recorded, or the alert's name
    expr: str
    comment: str = ""
    # alerts only
    for_: str = ""
    severity: str = ""
    summary: str = ""
    description: str = ""

    @property
    def is_alert(self) -> bool:
        return bool(self.severity)


def alert(
    name: str, expr: str, for_: str, severity: str, summary: str, description: str,
    comment: str = "",
) -> Rule:  # fmt: skip
    return Rule(name, expr, comment, for_, severity, summary, description)


def counter_rate(counter: Counter, window: str) -> Rule:
    """The per-instance rate of ``counter``, 0 rather than absent when it has a fill."""
    by = ("job", "instance", *counter.keep)
    expr = Raw(window).rate(counter, by)
    if counter.fill is not None:
        expr = f"{expr} or {Raw(window).rate(counter.fill, by)} * 0"
    return Rule(counter.record(window), expr)


# ---------------------------------------------------------------------------- recording rules

HTTP_ERROR_RATIO = {w: f"job:interlock_http_errors:ratio_rate{w}" for w in c.SLO_WINDOWS}
LOCK_ACQUIRE_RATE = "job_lock:interlock_lock_acquire:rate5m"
LOCK_TIMEOUT_RATIO = "job_lock:interlock_lock_acquire_timeouts:ratio_rate5m"
LOCK_CONTENTION = "job_lock:interlock_lock_contention:ratio_rate5m"
LOCK_WAIT_P99 = "job_lock:interlock_lock_acquire_seconds:p99_rate5m"
TXN_RATE = "job_txn:interlock_txn:rate5m"
TXN_ABORT_RATIO = "job_txn:interlock_txn_aborts_non_client:ratio_rate5m"
CACHE_LOOKUP_RATE = "job_cache:interlock_cache_requests:rate5m"
CACHE_HIT_RATIO = "job_cache:interlock_cache_hits:ratio_rate5m"


def recording_groups() -> list[tuple[str, list[Rule]]]:
    w = c.RULE_WINDOW
    http = [counter_rate(k, window) for window in c.SLO_WINDOWS
            for k in (q.HTTP_REQUESTS, q.HTTP_ERRORS)]  # fmt: skip
    http += [
        Rule(HTTP_ERROR_RATIO[window], q.http_error_ratio(Recorded(window), ["job"]),
             "Share of 5xx answers over the SLO windows of the burn-rate alerts."
             if window == c.SLO_WINDOWS[0] else "")
        for window in c.SLO_WINDOWS
    ]  # fmt: skip
    locks = [counter_rate(k, w) for k in (q.LOCK_ACQUIRES, q.LOCK_CONTENDED, q.LOCK_TIMEOUTS)]
    locks += [
        Rule(LOCK_ACQUIRE_RATE, RECORDED.rate(q.LOCK_ACQUIRES, ["job", "lock"])),
        Rule(LOCK_TIMEOUT_RATIO, q.lock_timeout_ratio(RECORDED, ["job", "lock"])),
        Rule(LOCK_CONTENTION, q.lock_contention(RECORDED, ["job", "lock"]),
             "Contention: share of acquisitions that found the lock held and had to wait."),
        Rule(LOCK_WAIT_P99,
             Raw(w).quantile(0.99, "interlock_lock_acquire_seconds", ["job", "lock"],
                             'result="acquired"'),
             "p99 wait of successful acquisitions; timeouts have their own alert."),
    ]  # fmt: skip
    txn = [counter_rate(k, w) for k in (q.TXN_FINISHED, q.TXN_ABORTS)]
    txn += [
        Rule(TXN_RATE, RECORDED.rate(q.TXN_FINISHED, ["job", "txn"])),
        Rule(TXN_ABORT_RATIO,
             q.txn_abort_ratio(RECORDED, ["job", "txn"], reasons='reason!="client"'),
             "Aborts the system caused (vote_no, timeout, error, durability); client aborts "
             "are application logic (an exception in the transaction body) and are left out."),
    ]  # fmt: skip
    cache = [counter_rate(k, w) for k in (q.CACHE_LOOKUPS, q.CACHE_HITS)]
    cache += [
        Rule(CACHE_LOOKUP_RATE, RECORDED.rate(q.CACHE_LOOKUPS, ["job", "cache"]),
             "Lookups that could have been hits: every result except bypass."),
        Rule(CACHE_HIT_RATIO, q.cache_hit_ratio(RECORDED, ["job", "cache"]),
             "Hit = answered without running the loader in this request."),
    ]  # fmt: skip
    return [
        ("interlock.http", http),
        ("interlock.locks", locks),
        ("interlock.txn", txn),
        ("interlock.cache", cache),
    ]


# ---------------------------------------------------------------------------- alerts


def pct(value: float) -> str:
    return f"{value:.0%}"


def burn_alert(
    name: str, burn: tuple[str, str, float], for_: str, severity: str, comment: str = ""
) -> Rule:
    long, short, factor = burn
    limit = f"({factor} * {c.ERROR_BUDGET})"
    spent = {"1h": ("2%", "the hour"), "6h": ("5%", "6 hours")}[long]
    hours = {"1h": "the last hour", "6h": "the last 6 hours"}[long]
    minutes = {"5m": "the last 5 minutes", "30m": "the last 30 minutes"}[short]
    return alert(
        name,
        f"{HTTP_ERROR_RATIO[long]} > {limit}\n"
        f"  and on (job) {HTTP_ERROR_RATIO[short]} > {limit}",
        for_,
        severity,
        f"{{{{ $labels.job }}}}: error budget burning {int(factor)}x too fast",
        f"{{{{ $value | humanizePercentage }}}} of requests to job {{{{ $labels.job }}}} "
        f"answered 5xx over {hours} (and over {minutes}), more than {factor:g} times the "
        f"{c.ERROR_BUDGET:.1%} budget of the {c.SLO_AVAILABILITY:.1%} SLO: {spent[0]} of the "
        f"30-day budget is gone within {spent[1]}.",
        comment,
    )


def alerts() -> list[Rule]:
    lost = "interlock_lock_lost_total"
    return [
        alert(
            "InterlockTargetDown", f'up{{job="{c.JOB}"}} == 0', "2m", "critical",
            "interlock target {{ $labels.instance }} is down",
            "Prometheus could not scrape {{ $labels.instance }} (job {{ $labels.job }}) for "
            "2 minutes: the app is down or /metrics is unreachable, and every other interlock "
            "alert for it is blind.",
        ),
        alert(
            "InterlockLockTimeoutRatioHigh",
            f"{LOCK_TIMEOUT_RATIO} > {c.LOCK_TIMEOUT_RATIO}\n"
            f"  and on (job, lock) {LOCK_ACQUIRE_RATE} > {c.LOCK_MIN_ACQUIRE_RATE}",
            "10m", "warning",
            "Lock {{ $labels.lock }}: {{ $value | humanizePercentage }} of acquisitions time out",
            "{{ $value | humanizePercentage }} of the acquisitions of lock {{ $labels.lock }} "
            "(job {{ $labels.job }}) timed out over 5 minutes, above "
            f"{pct(c.LOCK_TIMEOUT_RATIO)} for 10 minutes. "
            "Callers get LockTimeout (HTTP 423 under a lock rule).",
        ),
        alert(
            "InterlockLockWaitP99High", f"{LOCK_WAIT_P99} > {c.LOCK_WAIT_P99_SECONDS}",
            "10m", "warning",
            "Lock {{ $labels.lock }}: p99 wait is {{ $value | humanizeDuration }}",
            "The 99th percentile of the time to acquire lock {{ $labels.lock }} (job "
            "{{ $labels.job }}) is {{ $value | humanizeDuration }}, above "
            f"{c.LOCK_WAIT_P99_SECONDS}s for 10 minutes.",
        ),
        alert(
            "InterlockLockLost",
            f"sum by (job, lock, reason) (increase({lost}[5m])) > 0\n"
            "  or\n"
            "sum by (job, lock, reason) (\n"
            f"    ({lost} unless {lost} offset 5m)\n"
            "  and on (job, instance)\n"
            "    (up offset 5m)\n"
            ") > 0",
            "", "critical",
            "Lock {{ $labels.lock }}: leases lost ({{ $labels.reason }})",
            "Leases of lock {{ $labels.lock }} (job {{ $labels.job }}) were lost while held, "
            "reason {{ $labels.reason }}, in the last 5 minutes. Work guarded by them may have "
            "run concurrently; fenced writes rejected the stale holder.",
            "A lost lease means two holders may have run at once: page on the first one.\n"
            "increase() needs two samples, so it misses the very first loss of a label set\n"
            "(the series appears already at 1). The second branch catches a series that\n"
            "appeared within 5 minutes on a target that was already scraped 5 minutes ago\n"
            "(so a fresh Prometheus does not page for losses of the distant past).",
        ),
        alert(
            "InterlockTxnAbortRateHigh",
            f"{TXN_ABORT_RATIO} > {c.TXN_ABORT_RATIO}\n"
            f"  and on (job, txn) {TXN_RATE} > {c.TXN_MIN_RATE}",
            "10m", "warning",
            "Transaction {{ $labels.txn }}: {{ $value | humanizePercentage }} aborted",
            "{{ $value | humanizePercentage }} of transactions {{ $labels.txn }} (job "
            "{{ $labels.job }}) aborted for vote_no, timeout, error or durability over 5 "
            f"minutes, above {pct(c.TXN_ABORT_RATIO)} for 10 minutes (client aborts are not "
            "counted).",
        ),
        alert(
            "InterlockTxnInDoubt", "max by (job, txn) (interlock_txn_in_doubt) > 0",
            "5m", "warning",
            "Transaction {{ $labels.txn }}: {{ $value }} in doubt",
            "{{ $value }} transactions {{ $labels.txn }} (job {{ $labels.job }}) have been "
            "prepared but undecided for 5 minutes; recovery has not resolved them. Prepared "
            "branches hold database locks until they are resolved.",
        ),
        alert(
            "InterlockTxnInDoubtTooOld",
            f"max by (job) (interlock_txn_oldest_in_doubt_seconds) > {c.TXN_IN_DOUBT_MAX_AGE}",
            "1m", "critical",
            "An in-doubt transaction is {{ $value | humanizeDuration }} old",
            "The oldest in-doubt transaction of job {{ $labels.job }} is "
            "{{ $value | humanizeDuration }} old (over "
            f"{c.TXN_IN_DOUBT_MAX_AGE // 60} minutes). Its prepared branches keep rows locked "
            "in PostgreSQL/MariaDB and block vacuum; resolve it now.",
        ),
        alert(
            "InterlockCacheHitRatioLow",
            f"{CACHE_HIT_RATIO} < {c.CACHE_HIT_RATIO_MIN}\n"
            f"  and on (job, cache) {CACHE_LOOKUP_RATE} > {c.CACHE_MIN_LOOKUP_RATE}",
            "15m", "warning",
            "Cache {{ $labels.cache }}: hit ratio {{ $value | humanizePercentage }}",
            "Cache {{ $labels.cache }} (job {{ $labels.job }}) answered only "
            "{{ $value | humanizePercentage }} of lookups without running its loader, below "
            f"{pct(c.CACHE_HIT_RATIO_MIN)} for 15 minutes while serving more than "
            f"{c.CACHE_MIN_LOOKUP_RATE} lookup/s.",
        ),
        alert(
            "InterlockCacheDegraded", "max by (job, cache) (interlock_cache_degraded) > 0",
            "2m", "warning",
            "Cache {{ $labels.cache }} is degraded (failing open)",
            "Cache {{ $labels.cache }} (job {{ $labels.job }}) has failed open for 2 minutes: "
            "its backend is unreachable, every lookup runs the loader and load on the origin "
            "rises.",
        ),
        alert(
            "InterlockLogRecordsDropped",
            "sum by (job, sink) (rate(interlock_log_records_dropped_total[5m])) > 0",
            "5m", "warning",
            "Log sink {{ $labels.sink }} drops records",
            "Log sink {{ $labels.sink }} (job {{ $labels.job }}) has dropped "
            '{{ $value | printf "%.2g" }} records/s for 5 minutes (queue full or sink down); '
            "those log lines are lost.",
        ),
        alert(
            "InterlockLabelOverflow",
            "sum by (job, metric) (increase(interlock_label_overflow_total[15m])) > 0",
            "5m", "warning",
            "Metric {{ $labels.metric }} folds label values into __overflow__",
            "Metric {{ $labels.metric }} (job {{ $labels.job }}) hit the cap on distinct label "
            "values; new values are folded into __overflow__ and lose their own series.",
        ),
        burn_alert(
            "InterlockErrorBudgetBurnFast", c.BURN_FAST, "2m", "critical",
            f"Multi-window, multi-burn-rate alerts on a {c.SLO_AVAILABILITY:.1%} availability "
            f"SLO (error budget\n{c.ERROR_BUDGET:.1%} of requests answering 5xx), after the "
            "Google SRE workbook: 14.4x burns 2% of\na 30-day budget in 1 hour, 6x burns 5% "
            "in 6 hours. The short window makes the\nalert stop soon after the burn stops.",
        ),
        burn_alert("InterlockErrorBudgetBurnSlow", c.BURN_SLOW, "15m", "warning"),
    ]  # fmt: skip


# ---------------------------------------------------------------------------- YAML

RECORDING_HEADER = """\
# GENERATED by `python -m scripts.mixin` from scripts/mixin/ (edit there, not here).
# Recording rules shared by the alerts (rules/alerts.yml) and the dashboards. Names follow
# level:metric:operations. Every input is a metric of the catalogue in docs/metrics.md.
# job_instance_<entity>:...:rate5m are per-instance rates (the dashboards filter them by
# $job and $instance); job_<entity>:...:ratio_* are per-job ratios built from them (the
# alerts read those). A rate or ratio with a `... * 0` fallback is 0, not absent, when the
# counter it filters has no matching series (a job without 5xx, a cache that only misses).
"""

ALERTS_HEADER = """\
# GENERATED by `python -m scripts.mixin` from scripts/mixin/ (edit there, not here).
# interlock alerting rules. Every alert has labels.severity (critical pages, warning goes
# to a ticket or chat) and annotations summary, description and runbook_url; the runbook
# anchor is the alert name lower-cased (docs/runbooks.md has one section per alert).
# Unit tests: prometheus/alerts_test.yml (`promtool test rules`).
"""

_BINARY = (" and ", " or ", " unless ", " / ")


def _top_level_breaks(expr: str) -> Iterator[int]:
    """Offsets of the binary operators of ``expr`` outside brackets and strings."""
    depth = 0
    quote = ""
    for i, ch in enumerate(expr):
        if quote:
            if ch == quote and expr[i - 1] != "\\":
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif depth == 0 and any(expr.startswith(op, i) for op in _BINARY):
            yield i


def _closing(expr: str) -> int:
    """Offset of the bracket closing the one ``expr`` starts with."""
    depth = 0
    for i, ch in enumerate(expr):
        depth += (ch in "([{") - (ch in ")]}")
        if depth == 0:
            return i
    raise ValueError(f"unbalanced: {expr}")


def expr_lines(expr: str, width: int = 84) -> list[str]:
    """``expr`` as lines: kept as written when it has newlines, else broken before each
    top-level binary operator and inside a bracketed operand while it is too long."""
    if "\n" in expr:
        return expr.split("\n")
    if len(expr) <= width:
        return [expr]
    breaks = list(_top_level_breaks(expr))
    if breaks:
        starts = [0, *(i + 1 for i in breaks)]
        pieces = [expr[a:b].strip() for a, b in zip(starts, [*breaks, len(expr)], strict=True)]
        lines = expr_lines(pieces[0], width)
        for piece in pieces[1:]:
            lines += [f"  {line}" for line in expr_lines(piece, width - 2)]
        return lines
    if expr.startswith("(") and _closing(expr) == len(expr) - 1:
        return ["(", *(f"  {line}" for line in expr_lines(expr[1:-1], width - 2)), ")"]
    return [expr]


def _words(text: str) -> list[str]:
    """Words of ``text``, a Go template action ``{{ ... }}`` counting as one."""
    words: list[str] = []
    for word in text.split(" "):
        if words and words[-1].count("{{") > words[-1].count("}}"):
            words[-1] += " " + word
        else:
            words.append(word)
    return words


def wrap(text: str, indent: str, width: int = 92) -> list[str]:
    assert text == text.strip(), text
    assert "  " not in text, text
    assert "\n" not in text, text
    lines: list[str] = []
    line = ""
    for word in _words(text):
        if line and len(indent) + len(line) + 1 + len(word) > width:
            lines.append(indent + line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return [*lines, indent + line]


def _plain_ok(text: str) -> bool:
    return (
        text == text.strip()
        and ": " not in text
        and " #" not in text
        and text[:1] not in "!&*[]{}|>'\"%@`#,?:-"
    )


def render_rule(rule: Rule) -> list[str]:
    out = [
        line for part in rule.comment.split("\n") if rule.comment
        for line in wrap(part, "      # ")
    ]  # fmt: skip
    key = "alert" if rule.is_alert else "record"
    out.append(f"      - {key}: {rule.name}")
    lines = expr_lines(rule.expr)
    if len(lines) == 1 and _plain_ok(lines[0]):
        out.append(f"        expr: {lines[0]}")
    else:
        out += ["        expr: |", *(f"          {line}" for line in lines)]
    if rule.is_alert:
        if rule.for_:
            out.append(f"        for: {rule.for_}")
        out += [
            "        labels:",
            f"          severity: {rule.severity}",
            "        annotations:",
            f"          summary: {json.dumps(rule.summary, ensure_ascii=False)}",
            "          description: >-",
            *wrap(rule.description, " " * 12),
            f"          runbook_url: docs/runbooks.md#{rule.name.lower()}",
        ]
    return out


def render_groups(header: str, groups: Sequence[tuple[str, Sequence[Rule]]]) -> str:
    out = [header.rstrip("\n"), "groups:"]
    for index, (name, group) in enumerate(groups):
        if index:
            out.append("")
        out += [f"  - name: {name}", "    rules:"]
        for number, rule in enumerate(group):
            if number and rule.is_alert:
                out.append("")
            out += render_rule(rule)
    return "\n".join(out) + "\n"


def rule_files() -> dict[str, str]:
    """File name under prometheus/rules/ -> its YAML."""
    return {
        "recording.yml": render_groups(RECORDING_HEADER, recording_groups()),
        "alerts.yml": render_groups(ALERTS_HEADER, [("interlock.alerts", alerts())]),
    }
