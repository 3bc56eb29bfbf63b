"""The search bench's command: its arguments and the entry point bench/RESULTS.md names."""

from __future__ import annotations

from pathlib import Path

import pytest

import bench.bench_search
from bench.search.run import main, parse_args
from bench.search.space import DEFAULT_CONTENDERS


def test_the_defaults_are_every_contender_but_wide_over_ten_seeds() -> None:
    args = parse_args([])
    assert args.contenders == list(DEFAULT_CONTENDERS)
    assert "trainq-tpe-asha-wide" not in args.contenders
    assert (args.seed_list, args.trials, args.size, args.json) == (
        list(range(10)),
        100,
        "both",
        Path("bench_search.json"),
    )


def test_contenders_are_split_and_seeds_listed_from_the_first() -> None:
    args = parse_args(["--contenders", "trainq-random,optuna-tpe-sh", "--seeds", "2"])
    assert args.contenders == ["trainq-random", "optuna-tpe-sh"]
    assert parse_args(["--seeds", "3", "--first-seed", "5"]).seed_list == [5, 6, 7]


def test_an_unknown_contender_is_refused_with_the_known_ones(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse_args(["--contenders", "trainq-random,hyperopt"])
    assert exit_.value.code == 2
    error = capsys.readouterr().err
    assert "unknown contenders ['hyperopt']" in error
    assert "trainq-tpe-asha-wide" in error


def test_the_command_bench_results_names_runs_the_package() -> None:
    assert bench.bench_search.main is main


def test_the_help_line_is_the_benchmarks_first_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    assert "Adaptive search, side by side in one run" in capsys.readouterr().out
