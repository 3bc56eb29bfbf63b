"""The cost of one Prometheus scrape of GET /metrics at 100,000 jobs.

    python -m bench.bench_metrics [--jobs 100000] [--repeats 20] [--backends sqlite,postgresql]

The real endpoint, in process (`create_app`, Flask's test client), on a migrated database filled
with bench_queries' plausible jobs (80% succeeded, 5% each diverged, failed, running, queued) and
a real Redis. Each scrape runs every query /metrics makes (jobs by status and queue, the oldest
queued job per queue, steps and retries, busy workers and their heartbeats, expired leases) and
reads the queue lengths and the reconciler's record from Redis. In the same run, for scale:
`GET /api/v1/jobs?limit=50` (the dashboard's poll) and `GET /openapi.json`.
"""

from __future__ import annotations

import argparse

from bench.bench_queries import fill, timed
from bench.in_process import (
    app_in_process,
    each_database,
    parse_with_backends,
    redis_in_temporary_dir,
)
from bench.report import machine, publish, table

HEADERS = ["backend", "request", "median ms", "best ms"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=20)
    args = parse_with_backends(parser)
    started = machine()
    rows = []
    with redis_in_temporary_dir("trainq-metrics-") as (tmp, server):
        for backend, url in each_database(args.backends, tmp, "metrics"):
            fill(url, argparse.Namespace(jobs=args.jobs, sweeps=100, compared=1, steps=256))
            with app_in_process(url, server.url) as app:
                client = app.test_client()
                for label, path in (
                    ("GET /metrics", "/metrics"),
                    ("GET /api/v1/jobs?limit=50", "/api/v1/jobs?limit=50"),
                    ("GET /openapi.json", "/openapi.json"),
                ):
                    best_median, best, response = timed(client, path, args.repeats)
                    if path == "/metrics":
                        assert b"trainq_jobs{" in response.get_data()
                    rows.append([backend, label, f"**{best_median:.1f}**", f"{best:.1f}"])
    body = (
        f"{args.jobs:,} jobs, {args.repeats} timed requests each after one warm-up, in process.\n"
        + table(HEADERS, rows)
    )
    publish(f"Cost of GET /metrics at {args.jobs:,} jobs", started, body, record=not args.no_record)


if __name__ == "__main__":
    main()
