"""In-process chaos rules: the spec grammar and the plan (see :mod:`interlock.chaos`)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from interlock.errors import ConfigError

KINDS = ("latency", "error")
_FORMAT = "kind:target:probability[:seconds], e.g. 'latency:lock_acquire:0.1:0.05,error:GET:0.01'"


@dataclass(frozen=True, slots=True)
class ChaosRule:
    """One fault: ``kind`` on ``target`` with ``probability``; ``seconds`` for latency."""

    kind: str
    target: str
    probability: float
    seconds: float = 0.0

    def matches(self, operation: str) -> bool:
        return self.target in ("*", operation)


def parse_chaos(spec: str) -> tuple[ChaosRule, ...]:
    """Parse a chaos spec (see the module docstring).

    Raises:
        ConfigError: naming the bad rule and the expected format.
    """
    rules = []
    for raw in filter(None, (part.strip() for part in spec.split(","))):
        fields = raw.split(":")
        if len(fields) not in (3, 4) or fields[0] not in KINDS or not fields[1]:
            raise ConfigError(f"chaos rule {raw!r} is invalid; write {_FORMAT}")
        try:
            probability = float(fields[2])
            seconds = float(fields[3]) if len(fields) == 4 else 0.0
        except ValueError:
            raise ConfigError(f"chaos rule {raw!r} has a non-numeric value; {_FORMAT}") from None
        if not 0.0 <= probability <= 1.0 or not 0.0 <= seconds <= 60.0:
            raise ConfigError(
                f"chaos rule {raw!r}: probability must be within 0-1 and seconds within 0-60"
            )
        if fields[0] == "latency" and seconds <= 0:
            raise ConfigError(f"chaos rule {raw!r}: a latency rule needs seconds > 0")
        rules.append(ChaosRule(fields[0], fields[1], probability, seconds))
    return tuple(rules)


class ChaosPlan:
    """Decides, per backend operation, which faults to inject (pure; no I/O).

    Args:
        rules: the parsed rules.
        random_value: source of uniform numbers in [0, 1) (injectable for tests).
    """

    def __init__(
        self, rules: tuple[ChaosRule, ...], random_value: Callable[[], float] = random.random
    ) -> None:
        self.rules = rules
        self._random = random_value

    def faults(self, operation: str) -> list[ChaosRule]:
        """The rules that fire for this call of ``operation`` (latency before errors)."""
        fired = [r for r in self.rules if r.matches(operation) and self._random() < r.probability]
        return sorted(fired, key=lambda rule: rule.kind != "latency")
