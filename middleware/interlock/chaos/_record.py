"""Every injected fault is counted and logged: the one place that does both.

``interlock_chaos_injected_total{kind,target}`` rises by one per injection (``kind`` is one
of :data:`~interlock.chaos.FAULT_KINDS`, ``target`` the name the experiment gives the thing
disturbed, so both stay bounded), and two event lines on the ``interlock.chaos`` logger mark
the start and the end: ``event.action`` ``chaos-injected`` (warning) and ``chaos-ended``
(info), with ``interlock.chaos.kind``, ``.target`` and ``.duration`` (docs/logging.md).
"""

from __future__ import annotations

import logging

from interlock.metrics import Metrics

logger = logging.getLogger("interlock.chaos")


class FaultRecorder:
    """Counts each injection in ``metrics`` and logs its start and end.

    Args:
        metrics: where ``interlock_chaos_injected_total`` lives; ``None`` builds metrics
            registered nowhere (the log lines are still written).
    """

    def __init__(self, metrics: Metrics | None = None) -> None:
        self.metrics = metrics if metrics is not None else Metrics(None)

    def injected(self, kind: str, target: str, duration: float, detail: str = "") -> None:
        """A fault of ``kind`` on ``target`` starts, planned to last ``duration`` seconds."""
        self.metrics.chaos_injected.labels(kind=kind, target=target).inc()
        logger.warning(
            "chaos: %s injected on %s for %.3g s%s",
            kind, target, duration, f" ({detail})" if detail else "",
            extra={
                "event.action": "chaos-injected",
                "interlock.chaos.kind": kind,
                "interlock.chaos.target": target,
                "interlock.chaos.duration": float(duration),
            },
        )  # fmt: skip

    def ended(self, kind: str, target: str, elapsed: float, detail: str = "") -> None:
        """The fault is over (healed, resumed, restarted) after ``elapsed`` seconds."""
        logger.info(
            "chaos: %s on %s ended after %.3g s%s",
            kind, target, elapsed, f" ({detail})" if detail else "",
            extra={
                "event.action": "chaos-ended",
                "interlock.chaos.kind": kind,
                "interlock.chaos.target": target,
                "interlock.chaos.duration": float(elapsed),
            },
        )  # fmt: skip
