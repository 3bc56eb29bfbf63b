"""The search bench's command: its arguments, the old entry point, and the table of a tiny run."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pytest

import bench.bench_search
from bench.search.run import main, parse_args, render
from bench.search.scoring import Run, Trial, summary
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


def test_the_table_has_a_row_per_contender_with_seeds_reached() -> None:
    # Given one contender's three seeds, two of which reached 1% of the reference
    args = argparse.Namespace(seed_list=[0, 1, 2], trials=2, report_every=10)
    params = {"optimizer": "adam", "init": "normal", "lr": 1e-3}
    hit = [Trial(1.0, 500, "finished", 1.0, params), Trial(2.0, 20, "pruned", None, params)]
    miss = [Trial(1.5, 500, "finished", 3.0, params)]
    runs = [Run("trainq-random", seed, hit, 2.0) for seed in (0, 1)]
    runs.append(Run("trainq-random", 2, miss, 3.0))
    grid = {
        "jobs": 156,
        "wall": 9.0,
        "reference": 1.0,
        "best": params,
        "nominal_steps": 78_000,
        "steps": 78_000,
    }
    result = {
        "dims": {"N": 64, "D_in": 32, "H": 32, "D_out": 10},
        "grid": grid,
        "offline_seconds": 1.0,
        "contenders": {"trainq-random": summary(runs, 1.0, 78_000, lambda _: math.inf)},
    }
    # When the table is rendered
    text = render(result, args)
    # Then the row says the target was reached in 2 of 3 seeds and no pruned trial was regretted
    row = next(line for line in text.splitlines() if line.startswith("| trainq-random |"))
    assert "| 500 (500..500) [2/3] |" in row
    assert "| 0 / 2 |" in row
    assert "N, D_in, H, D_out = 64, 32, 32, 10; 3 search seeds [0, 1, 2], 2 trials each" in text
