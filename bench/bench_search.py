"""Adaptive search, side by side in one run: trainq's search sweeps against Optuna and Ray Tune.

    python -m bench.bench_search [--size default|small|both] [--seeds 10] [--trials 100]
                                 [--report-every 10] [--contenders trainq-tpe-asha,...]
                                 [--json PATH] [--no-record]

The command bench/RESULTS.md names; the benchmark itself is the `bench.search` package.
"""

from __future__ import annotations

from bench.search.run import main

if __name__ == "__main__":
    main()
