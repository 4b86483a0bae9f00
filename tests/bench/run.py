"""`make bench`: every benchmark in turn; each prints its own figures."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = ["tests.bench.tracing_overhead", "tests.bench.wallet_throughput",
              "tests.bench.access_latency", "tests.bench.city"]


def main() -> int:
    for name in BENCHMARKS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError:
            print(f"{name}: not present, skipped")
            continue
        print(f"== {name}", flush=True)
        sys.argv = [name]
        module.main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
