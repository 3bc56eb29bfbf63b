"""How `trainq sweep` prints a factor table and a leaderboard (pure output, no server needed)."""

from __future__ import annotations

import pytest

from service.cli.sweep_verbs import print_factors, print_leaderboard


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
