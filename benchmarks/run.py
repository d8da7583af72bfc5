#!/usr/bin/env python3
"""Run every benchmark and record its figures in benchmarks/RESULTS.md.

Usage: .venv/bin/python benchmarks/run.py [locks] [handoff] [wakeup] [cache] [middleware] [txn]
                                         [mysql_async] [django_cache]
(no names: all of them). Each benchmark starts its own throwaway services; run them on a
quiet machine, one at a time, as this script does.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ALL = ["locks", "handoff", "wakeup", "cache", "middleware", "txn", "mysql_async", "django_cache"]


def main(argv: list[str]) -> int:
    chosen = argv or ALL
    unknown = sorted(set(chosen) - set(ALL))
    if unknown:
        print(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(ALL)}")
        return 2
    failed = []
    for name in chosen:
        print(f"== {name}", flush=True)
        result = subprocess.run([sys.executable, str(HERE / f"{name}.py"), "--write"], check=False)
        if result.returncode:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
