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


def test_two_way_interaction_by_hand_on_a_2x2_with_replicates() -> None:
    # Given a 2 x 2 of optimizer x lr, two seeds per cell, log10 losses (y) written as exponents:
    #   cell            ys        cell mean
    #   sgd,  0.01      0,  2     1
    #   sgd,  0.1      -1, -1    -1
    #   adam, 0.01     -3, -3    -3
    #   adam, 0.1      -2,  0    -1
    rows = [
        job("succeeded", 10.0**y, optimizer=opt, lr=lr, seed=s)
        for opt, lr, ys in (
            ("sgd", 0.01, (0, 2)),
            ("sgd", 0.1, (-1, -1)),
            ("adam", 0.01, (-3, -3)),
            ("adam", 0.1, (-2, 0)),
        )
        for s, y in enumerate(ys)
    ]
    table = factor_table(rows, ["optimizer", "lr"])
    # Grand mean m = -8 / 8 = -1. SS_total = sum (y + 1)^2 = 1 + 9 + 0 + 0 + 4 + 4 + 1 + 1 = 20.
    assert table["total_ss"] == pytest.approx(20.0)
    # Optimizer means: sgd 0, adam -2 -> SS_A = 4 * 1^2 + 4 * 1^2 = 8.
    # lr means: 0.01 -> (1 - 3) / 2 = -1, 0.1 -> -1 -> SS_B = 0: lr alone explains nothing.
    assert table["factors"]["optimizer"]["between_ss"] == pytest.approx(8.0)
    assert table["factors"]["lr"]["between_ss"] == pytest.approx(0.0)
    # SS_cells = 2 * (1 + 1)^2 + 2 * 0^2 + 2 * (-3 + 1)^2 + 2 * 0^2 = 16; SS_AB = 16 - 8 - 0 = 8.
    (inter,) = table["interactions"]
    assert inter["factors"] == ["optimizer", "lr"]
    assert inter["cells_ss"] == pytest.approx(16.0)
    assert inter["ss"] == pytest.approx(8.0)
    assert inter["share"] == pytest.approx(8.0 / 20.0)
    assert table["factors"]["optimizer"]["share"] == pytest.approx(8.0 / 20.0)
    # The cells, row-major in level order (optimizer as text, lr by value).
    assert inter["rows"] == ["adam", "sgd"]
    assert inter["columns"] == ["0.01", "0.1"]
    assert [(c["row"], c["column"], c["n"], c["mean"]) for c in inter["cells"]] == [
        ("adam", "0.01", 2, pytest.approx(-3.0)),
        ("adam", "0.1", 2, pytest.approx(-1.0)),
        ("sgd", "0.01", 2, pytest.approx(1.0)),
        ("sgd", "0.1", 2, pytest.approx(-1.0)),
    ]


def test_interactions_cover_the_varied_pairs_only() -> None:
    rows = [
        job("succeeded", 10.0 ** (i + 2 * j + k), optimizer=o, init=n, lr=lr, seed=1)
        for i, o in enumerate(("sgd", "adam"))
        for j, n in enumerate(("normal", "xavier_uniform"))
        for k, lr in enumerate((1e-3, 1e-2))
    ]
    three = factor_table(rows, ["optimizer", "init", "lr"])
    assert [i["name"] for i in three["interactions"]] == [
        "optimizer x lr",
        "optimizer x init",
        "init x lr",
    ]
    # Additive outcomes (y = i + 2j + k): every interaction is zero, the main effects are all.
    assert all(i["ss"] == pytest.approx(0.0, abs=1e-12) for i in three["interactions"])
    assert sum(f["share"] for f in three["factors"].values()) == pytest.approx(1.0)
    assert factor_table(rows, ["optimizer", "seed"])["interactions"] == []


def test_a_searched_lr_is_binned_by_decade_for_effects_and_interactions() -> None:
    # Nine distinct lr (over MAX_LEVELS = 8), 1e-3 exactly on a decade's lower edge.
    lrs = [2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 3e-3, 7e-3, 5e-2]
    rows = [
        job("succeeded", 10.0 ** (n % 3), optimizer=("sgd", "adam")[n % 2], lr=lr, seed=1)
        for n, lr in enumerate(lrs)
    ]
    table = factor_table(rows, ["optimizer", "lr"])
    lr = table["factors"]["lr"]
    assert lr["binned"] == "decade"
    assert lr["distinct"] == 9
    assert lr["order"] == ["1e-5..1e-4", "1e-4..1e-3", "1e-3..1e-2", "1e-2..1e-1"]
    assert [lr["levels"][k]["n"] for k in lr["order"]] == [2, 3, 3, 1]
    third = lr["levels"]["1e-3..1e-2"]
    assert (third["low"], third["high"], third["value"]) == (
        pytest.approx(1e-3),
        pytest.approx(1e-2),
        pytest.approx(1e-3),
    )
    # ys by n % 3: 0 1 2 | 0 1 2 | 0 1 2; bin 1e-4..1e-3 holds n = 2, 3, 4 -> ys 2, 0, 1.
    assert lr["levels"]["1e-4..1e-3"]["mean"] == pytest.approx(1.0)
    (inter,) = table["interactions"]
    assert inter["columns"] == lr["order"]
    assert {c["column"] for c in inter["cells"]} <= set(lr["order"])
    assert sum(c["n"] for c in inter["cells"]) == 9
    # Eight distinct values stay levels of their own.
    kept = factor_table(rows[:8], ["lr"])["factors"]["lr"]
    assert kept["binned"] is None
    assert kept["order"][:3] == ["2e-05", "5e-05", "0.0001"]


def test_a_diverged_run_ranks_below_pruned_and_initial_losses_in_a_pruned_search() -> None:
    # Given an ASHA search: two trials finished very low, the poor ones pruned at a rung with
    # losses far above those, and sgd's other trials diverged; every job started near 1e7.
    rows = [
        job("succeeded", 1e-9, optimizer="adam", lr=1e-3, initial_loss=2e7),
        job("succeeded", 1e-8, optimizer="sgd", lr=1e-6, initial_loss=3e7),
        job("pruned", 5e3, optimizer="adam", lr=1e-6, pruned_loss=4e5, initial_loss=2e7),
        job("diverged", 1e25, optimizer="sgd", lr=1e-2, initial_loss=5e7),
        job("diverged", 1e26, optimizer="sgd", lr=1e-1, initial_loss=1e6),
    ]
    table = factor_table(rows, ["optimizer", "lr"])
    # Then the diverged runs score one decade above the worst loss seen (an initial 5e7), not
    # one above the worst finished trial (1e-8), nor above the pruned loss at its rung.
    assert table["diverged_value"] == pytest.approx(math.log10(5e7) + 1)
    assert table["diverged_value"] > math.log10(4e5)
    sgd = table["factors"]["optimizer"]["levels"]["sgd"]
    assert sgd["mean"] == pytest.approx((-8 + 2 * (math.log10(5e7) + 1)) / 3)
    assert (sgd["diverged"], sgd["all_diverged"]) == (2, False)
    assert table["factors"]["optimizer"]["levels"]["adam"]["mean"] == pytest.approx(-9.0)
    # The pruned trial is still left out of the statistics.
    assert table["pruned"] == 1
    assert table["used"] == 4


def test_the_pruned_loss_bounds_the_diverged_score_without_initial_losses() -> None:
    rows = [
        job("succeeded", 1e-9, optimizer="adam", lr=1e-3),
        job("pruned", 1e3, optimizer="adam", lr=1e-6, pruned_loss=1e2),
        job("diverged", None, optimizer="sgd", lr=1e-2),
    ]
    assert factor_table(rows, ["lr"])["diverged_value"] == pytest.approx(3.0)


def test_levels_cells_and_pairs_whose_runs_all_diverged_are_marked_and_never_best() -> None:
    # Given a grid where momentum diverged at every lr and sgd at the high one only.
    rows = [
        job("succeeded", 10.0, optimizer="sgd", lr=1e-4, seed=1, initial_loss=1e3),
        job("diverged", None, optimizer="sgd", lr=1e-3, seed=1, initial_loss=1e3),
        *(
            job("diverged", None, optimizer="momentum", lr=lr, seed=1, initial_loss=1e3)
            for lr in (1e-4, 1e-3)
        ),
    ]
    table = factor_table(rows, ["optimizer", "lr"])
    levels = table["factors"]["optimizer"]["levels"]
    assert (levels["momentum"]["all_diverged"], levels["momentum"]["diverged"]) == (True, 2)
    assert levels["sgd"]["all_diverged"] is False
    lrs = table["factors"]["lr"]["levels"]
    assert lrs["0.001"]["all_diverged"] is True
    assert lrs["0.0001"]["all_diverged"] is False
    (pair,) = table["interactions"]
    marked = {(c["row"], c["column"]): c["all_diverged"] for c in pair["cells"]}
    assert marked == {
        ("momentum", "0.0001"): True,
        ("momentum", "0.001"): True,
        ("sgd", "0.0001"): False,
        ("sgd", "0.001"): True,
    }
    assert table["best_config"]["config"] == {"optimizer": "sgd", "lr": 1e-4}
    best_lr = {b["optimizer"]: b for b in table["best_lr"]}
    assert best_lr["sgd"]["lr"] == 1e-4
    assert best_lr["sgd"]["all_diverged"] is False
    assert best_lr["momentum"]["lr"] is None
    assert best_lr["momentum"]["all_diverged"] is True
    assert best_lr["momentum"]["mean"] is None
    assert best_lr["momentum"]["n"] == 2


def test_no_best_config_when_every_run_diverged() -> None:
    rows = [job("diverged", None, optimizer="sgd", lr=lr, seed=1) for lr in (1e-2, 1e-1)]
    table = factor_table(rows, ["lr"])
    assert table["best_config"] is None
    assert all(level["all_diverged"] for level in table["factors"]["lr"]["levels"].values())
    assert table["best_lr"] == [
        {
            "optimizer": "sgd",
            "init": "normal",
            "lr": None,
            "n": 2,
            "mean": None,
            "std": None,
            "min": None,
            "max": None,
            "diverged": 2,
            "all_diverged": True,
        }
    ]
