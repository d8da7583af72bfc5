"""interlock's monitoring mixin: Grafana dashboards, Prometheus rules and Kibana objects.

Usage (from the repository root)::

    python -m scripts.mixin           # rewrite the checked-in files
    python -m scripts.mixin --check   # exit 1 when a checked-in file is stale (make lint)

One package, one source for every expression: :mod:`.config` holds the selectors, windows
and thresholds, :mod:`.promql` the PromQL helpers and each ratio (written once),
:mod:`.rules` the recording rules and alerts built from them, :mod:`.grafana` and
:mod:`.dashboards` the dashboards (which read the recorded series where one exists) and
:mod:`.kibana` the saved objects. It writes ``prometheus/rules/*.yml``,
``dashboards/grafana/interlock-*.json`` (provisioned by
``dashboards/provisioning/dashboards/interlock.yml``) and
``dashboards/kibana/interlock.ndjson`` (imported by the ``kibana-setup`` job of
docker-compose.yml). Standard library only; the output is deterministic, and
tests/observability checks that the checked-in files are current.

Metric names come from the catalogue in docs/metrics.md, log fields from docs/logging.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from . import dashboards, kibana, rules
from .config import GRAFANA_DIR, KIBANA_FILE, ROOT, RULES_DIR

__all__ = ["main", "render"]

DASHBOARDS = {
    "interlock-overview.json": dashboards.overview,
    "interlock-locks.json": dashboards.locks,
    "interlock-transactions.json": dashboards.transactions,
    "interlock-cache.json": dashboards.cache,
}


def render() -> dict[Path, str]:
    """Every generated file, path to content."""
    files = {
        GRAFANA_DIR / name: json.dumps(build(), indent=2, ensure_ascii=False) + "\n"
        for name, build in DASHBOARDS.items()
    }
    files[KIBANA_FILE] = kibana.render_ndjson(kibana.kibana_objects())
    files.update({RULES_DIR / name: text for name, text in rules.rule_files().items()})
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.mixin", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--check", action="store_true", help="fail if a file is out of date")
    args = parser.parse_args(argv)
    stale = []
    for path, text in render().items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        stale.append(path.relative_to(ROOT))
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    for path in stale:
        print(f"{'stale' if args.check else 'wrote'} {path}")
    if args.check and stale:
        print("run: python -m scripts.mixin")
    return 1 if args.check and stale else 0
