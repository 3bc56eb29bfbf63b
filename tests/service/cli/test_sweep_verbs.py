"""How `trainq sweep` prints a factor table and a leaderboard (pure output, no server needed)."""

from __future__ import annotations

import json

import pytest

from service.cli.sweep_verbs import print_factors, print_leaderboard
from service.sweeps.factors import factor_table


def test_numeric_levels_print_in_numeric_order(capsys: pytest.CaptureFixture[str]) -> None:
    # As the API returns it: JSON object keys sorted as strings ("0.0001" < "0.01" < "1e-06").
    level = {"n": 2, "mean": -1.0, "std": 0.5}
    table = {
        "used": 6,
        "diverged": 0,
        "diverged_value": None,
        "excluded": {},
        "main_effects": [{"factor": "lr", "share": 0.9}, {"factor": "optimizer", "share": 0.1}],
        "factors": {
            "lr": {
                "levels": {
                    "0.0001": {"value": 1e-4, **level},
                    "0.01": {"value": 1e-2, **level},
                    "1e-06": {"value": 1e-6, **level},
                }
            },
            "optimizer": {
                "levels": {"adam": {"value": "adam", **level}, "sgd": {"value": "sgd", **level}}
            },
        },
        "best_config": None,
        "best_lr": [],
    }
    print_factors(table, ["lr", "optimizer"])
    lines = capsys.readouterr().out.splitlines()
    lr_levels = [line.split()[2] for line in lines if line.startswith("lr ")]
    assert lr_levels == ["1e-06", "0.0001", "0.01"]
    assert [line.split()[2] for line in lines if line.startswith("optimizer ")] == ["adam", "sgd"]


def test_decade_bins_print_in_order_and_interactions_are_shown(
    capsys: pytest.CaptureFixture[str],
) -> None:
    level = {"n": 3, "mean": 0.0, "std": None}
    bins = {
        "1e-2..1e-1": {"value": 1e-2, "low": 1e-2, "high": 1e-1, **level},
        "1e-5..1e-4": {"value": 1e-5, "low": 1e-5, "high": 1e-4, **level},
    }
    table = {
        "used": 6,
        "diverged": 0,
        "diverged_value": None,
        "excluded": {},
        "main_effects": [{"factor": "lr", "share": 0.5}],
        "factors": {"lr": {"levels": bins, "binned": "decade"}},
        "interactions": [{"name": "optimizer x lr", "share": 0.25}],
        "best_config": None,
        "best_lr": [],
    }
    print_factors(table, ["lr"])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[2] for line in lines if line.startswith("lr ")] == [
        "1e-5..1e-4",
        "1e-2..1e-1",
    ]
    assert "interaction optimizer x lr: share 0.25" in lines


def test_leaderboard_says_a_shared_setting_once_and_shortens_long_seeds(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given the top rows of a sweep over optimizer and lr in which they all used adam
    row = {"status": "succeeded", "optimizer": "adam", "min_loss": 0.5, "min_loss_step": 9}
    board = {
        "varied": ["optimizer", "lr", "seed"],
        "total": 8,
        "results": [
            {"rank": 1, "id": 7, "lr": 1e-3, "seed": 2598670931668588018, "final_loss": 0.5, **row},
            {"rank": 2, "id": 3, "lr": 1e-2, "seed": 1182736450912837465, "final_loss": 0.7, **row},
        ],
    }
    print_leaderboard(board)
    lines = capsys.readouterr().out.splitlines()
    header = next(line for line in lines if line.startswith("rank"))
    # Then the shared optimizer is a line below the table, not a column
    assert header.split() == [
        "rank", "id", "status", "lr", "seed", "final_loss", "min_loss", "min_loss_step"
    ]  # fmt: skip
    assert "every row: optimizer=adam" in lines
    # and 19-digit seeds are cut to their ends, so the table stays narrow
    assert "2598..018" in lines[3]
    assert "2598670931668588018" not in "".join(lines)
    assert max(len(line) for line in lines) < 80


def test_levels_and_pairs_whose_runs_all_diverged_print_diverged(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a grid where momentum diverged at every lr, as the API returns its table.
    rows = [
        {"status": "succeeded", "final_loss": 10.0, "optimizer": "sgd", "lr": 1e-4},
        {"status": "diverged", "final_loss": 1e20, "optimizer": "sgd", "lr": 1e-3},
        {"status": "diverged", "final_loss": 1e20, "optimizer": "momentum", "lr": 1e-4},
        {"status": "diverged", "final_loss": 1e20, "optimizer": "momentum", "lr": 1e-3},
    ]
    rows = [{**row, "init": "normal", "initial_loss": 1e3} for row in rows]
    table = json.loads(json.dumps(factor_table(rows, ["optimizer", "lr"])))
    print_factors(table, ["optimizer", "lr"])
    lines = capsys.readouterr().out.splitlines()
    assert "3 diverged (scored 4: one decade above the worst loss seen)" in lines[1]
    momentum = next(line for line in lines if line.startswith("optimizer") and "momentum" in line)
    assert momentum.split()[3:] == ["2", "diverged", "-"]
    assert "best: optimizer=sgd lr=0.0001 mean 1 over 1 run(s)" in lines
    assert "best lr for momentum/normal: none (every lr diverged)" in lines
    assert "best lr for sgd/normal: 0.0001 (mean 1)" in lines


def test_a_sweep_whose_every_run_diverged_has_no_best(capsys: pytest.CaptureFixture[str]) -> None:
    rows = [
        {"status": "diverged", "final_loss": None, "optimizer": "sgd", "init": "normal", "lr": lr}
        for lr in (1e-2, 1e-1)
    ]
    print_factors(json.loads(json.dumps(factor_table(rows, ["lr"]))), ["lr"])
    lines = capsys.readouterr().out.splitlines()
    assert "best: none (every configuration diverged)" in lines
    assert "best lr for sgd/normal: none (every lr diverged)" in lines


def test_the_leaderboard_prints_diverged_for_a_diverged_runs_final_loss(
    capsys: pytest.CaptureFixture[str],
) -> None:
    board = {
        "varied": ["lr"],
        "total": 2,
        "results": [
            {"rank": 1, "id": 1, "status": "succeeded", "lr": 1e-4, "final_loss": 0.5},
            {"rank": 2, "id": 2, "status": "diverged", "lr": 1.0, "final_loss": 3.5e25},
        ],
    }
    print_leaderboard(board)
    lines = capsys.readouterr().out.splitlines()
    # (no row has a seed: the column is left out)
    assert lines[-1].split()[:5] == ["2", "2", "diverged", "1", "diverged"]
    assert "3.5e+25" not in lines[-1]
