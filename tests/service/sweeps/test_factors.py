"""The factor table as pure arithmetic, against sums written out by hand."""

from __future__ import annotations

import math

import pytest

from service.sweeps.factors import factor_table


def job(status: str, loss: float | None, **fields: object) -> dict:
    """A leaderboard row the factor table reads."""
    return {"status": status, "final_loss": loss, "init": "normal", **fields}


def test_levels_main_effects_and_best_config_by_hand() -> None:
    # Given a 2 x 2 design with two seeds, losses chosen as powers of ten.
    rows = [
        job("succeeded", 1e0, optimizer="sgd", lr=0.1, seed=1),
        job("succeeded", 1e1, optimizer="sgd", lr=0.1, seed=2),
        job("succeeded", 1e1, optimizer="sgd", lr=0.01, seed=1),
        job("succeeded", 1e1, optimizer="sgd", lr=0.01, seed=2),
        job("succeeded", 1e-2, optimizer="adam", lr=0.1, seed=1),
        job("succeeded", 1e-2, optimizer="adam", lr=0.1, seed=2),
        job("succeeded", 1e-4, optimizer="adam", lr=0.01, seed=1),
        job("succeeded", 1e-4, optimizer="adam", lr=0.01, seed=2),
    ]
    # When the table is computed over optimizer and lr.
    table = factor_table(rows, ["optimizer", "lr"])
    # Then every number matches the hand computation on log10 losses.
    ys = [0, 1, 1, 1, -2, -2, -4, -4]
    grand = sum(ys) / 8
    total = sum((y - grand) ** 2 for y in ys)
    assert table["grand_mean"] == pytest.approx(grand)
    assert table["total_ss"] == pytest.approx(total)
    sgd, adam = (
        table["factors"]["optimizer"]["levels"]["sgd"],
        table["factors"]["optimizer"]["levels"]["adam"],
    )
    assert (sgd["n"], sgd["mean"]) == (4, pytest.approx(0.75))
    assert sgd["std"] == pytest.approx(math.sqrt(sum((y - 0.75) ** 2 for y in [0, 1, 1, 1]) / 3))
    assert adam["mean"] == pytest.approx(-3.0)
    between_opt = 4 * (0.75 - grand) ** 2 + 4 * (-3 - grand) ** 2
    assert table["factors"]["optimizer"]["share"] == pytest.approx(between_opt / total)
    lr_levels = table["factors"]["lr"]["levels"]
    assert list(lr_levels) == ["0.01", "0.1"]
    assert lr_levels["0.1"]["value"] == 0.1
    assert lr_levels["0.1"]["mean"] == pytest.approx(-0.75)
    assert [e["factor"] for e in table["main_effects"]] == ["optimizer", "lr"]
    assert table["best_config"]["config"] == {"optimizer": "adam", "lr": 0.01}
    assert table["best_config"]["mean"] == pytest.approx(-4.0)
    assert {(b["optimizer"], b["lr"]) for b in table["best_lr"]} == {("adam", 0.01), ("sgd", 0.1)}
    assert table["diverged"] == 0
    assert table["used"] == 8


def test_diverged_jobs_score_one_decade_above_the_worst_and_others_are_excluded() -> None:
    rows = [
        job("succeeded", 1e3, lr=0.1, optimizer="sgd", seed=1),
        job("succeeded", 1e1, lr=0.01, optimizer="sgd", seed=1),
        job("diverged", 5.0, lr=1.0, optimizer="sgd", seed=1),
        job("failed", None, lr=1.0, optimizer="sgd", seed=2),
        job("cancelled", 7.0, lr=0.01, optimizer="sgd", seed=2),
        job("queued", None, lr=0.1, optimizer="sgd", seed=2),
    ]
    table = factor_table(rows, ["lr"])
    assert table["diverged"] == 1
    assert table["diverged_value"] == pytest.approx(4.0)
    assert table["excluded"] == {"failed": 1, "cancelled": 1, "queued": 1}
    assert table["used"] == 3
    assert table["factors"]["lr"]["levels"]["1.0"]["mean"] == pytest.approx(4.0)
    assert table["best_config"]["config"] == {"lr": 0.01}


def test_all_diverged_and_nothing_finished() -> None:
    table = factor_table([job("diverged", None, lr=1.0, optimizer="sgd", seed=1)], ["lr"])
    assert table["diverged_value"] == 0.0
    assert table["factors"]["lr"]["share"] is None
    empty = factor_table([job("running", None, lr=1.0, optimizer="sgd", seed=1)], ["lr"])
    assert empty["factors"] == {}
    assert empty["best_config"] is None
    assert empty["excluded"] == {"running": 1}
