"""The benchmarks' loop over backends: the shared flags and a migrated database per backend."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import sqlalchemy as sa

from bench.in_process import each_database, parse_with_backends


def test_the_backend_flags_come_after_the_benchmarks_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.argv", ["bench_x", "--jobs", "3", "--no-record"])
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=1)
    args = parse_with_backends(parser)
    assert (args.jobs, args.backends, args.no_record) == (3, "sqlite,postgresql", True)
    flags = [action.dest for action in parser._actions]
    assert flags[-2:] == ["backends", "no_record"]


def test_a_benchmark_that_writes_its_own_file_gets_no_no_record_flag(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("sys.argv", ["bench_x"])
    assert not hasattr(parse_with_backends(argparse.ArgumentParser(), record=False), "no_record")


def test_each_backend_gets_an_empty_migrated_database(tmp_path: Path) -> None:
    seen = []
    for backend, url in each_database("sqlite", tmp_path, "loop"):
        engine = sa.create_engine(url)
        with engine.connect() as connection:
            assert connection.scalar(sa.text("SELECT count(*) FROM jobs")) == 0
        engine.dispose()
        seen.append(backend)
    assert seen == ["sqlite"]
    assert (tmp_path / "loop.sqlite3").exists()
