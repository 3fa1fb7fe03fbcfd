"""``python -m bench``: every benchmark, one ``name: value`` line per figure.

Each module in ``BENCHMARKS`` has ``run() -> dict[str, float]``. All run offline against the
simulator. Pass module names to run a subset: ``python -m bench ledger``.
"""

from __future__ import annotations

import importlib
import sys
import time

BENCHMARKS = [
    "bench.bench_rate_limit",
    "bench.bench_overhead",
    "bench.bench_ledger",
    "bench.bench_batch",
    "bench.bench_memory",
    "bench.bench_planner",
    "bench.bench_celery",
    "bench.bench_experiment",
    "bench.bench_review",
]


def main(argv: list[str]) -> int:
    selected = [m for m in BENCHMARKS if not argv or any(a in m for a in argv)]
    for name in selected:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            print(f"# {name}: not available ({exc})", flush=True)
            continue
        started = time.monotonic()
        figures = module.run()
        for key, value in figures.items():
            if isinstance(value, float):
                text = f"{value:.0f}" if abs(value) >= 1000 else f"{value:.4g}"
            else:
                text = str(value)
            print(f"{key}: {text}", flush=True)
        print(f"# {name} took {time.monotonic() - started:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
