"""Run every benchmark (or the named ones): ``python -m benchmarks [store ingest service copy]``.

Each ``benchmarks/bench_<name>.py`` is run as its own process (so one cannot warm or slow the
next) and prints its own table of figures and ratios against the raw driver in the same run.
Set ORCHESTRATOR_TEST_PG_URL to point the PostgreSQL parts at a server (default: local test db).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent


def main(argv: list[str]) -> int:
    available = sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))
    names = argv or available
    unknown = [n for n in names if n not in available]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; available: {available}", file=sys.stderr)
        return 2
    status = 0
    for name in names:
        print(f"\n=== benchmarks/bench_{name}.py ===", flush=True)
        result = subprocess.run([sys.executable, "-m", f"benchmarks.bench_{name}"], cwd=HERE.parent)
        status = status or result.returncode
    return status


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
