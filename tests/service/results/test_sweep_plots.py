"""The sweep's figures read back from matplotlib's own objects: faded pruned curves, rungs, the
heatmap's cells, levels in numeric order and the best-so-far line."""

from __future__ import annotations

import numpy as np
import pytest

from service.results.plots import Curve, render
from service.results.sweep_plots import PRUNED_ALPHA, best_so_far_figure, sweep_figure

LRS = (1e-3, 1e-4, 1e-5)  # given out of order: the figure must order them by value


def grid_jobs() -> tuple[list[Curve], list[dict]]:
    """sgd and adam over three lr; sgd at 1e-5 pruned at step 4. Final loss 10**y, y = i - j."""
    jobs, curves = [], []
    for i, optimizer in enumerate(("adam", "sgd")):
        for j, lr in enumerate(LRS):
            pruned = (optimizer, lr) == ("sgd", 1e-5)
            y = float(i - j)
            job = {
                "id": len(jobs) + 1,
                "status": "pruned" if pruned else "succeeded",
                "final_loss": 10.0**y,
                "optimizer": optimizer,
                "init": "normal",
                "lr": lr,
            }
            steps = np.arange(6 if pruned else 20)
            jobs.append(job)
            curves.append(Curve(job, steps, np.full(len(steps), 10.0**y)))
    return curves, jobs


def test_pruned_curves_are_faded_and_the_rungs_are_marked() -> None:
    curves, jobs = grid_jobs()
    figure = sweep_figure(
        7, curves, jobs, "lr", (1500, 500), factors=["optimizer", "lr"], rungs=[4, 8, 16]
    )
    axes = figure.axes[0]
    faded = [line for line in axes.lines if line.get_gid() == "pruned"]
    solid = [line for line in axes.lines if line.get_gid() == "curve"]
    assert (len(faded), len(solid)) == (1, 5)
    assert faded[0].get_alpha() == PRUNED_ALPHA
    assert all(line.get_alpha() > PRUNED_ALPHA for line in solid)
    rungs = [line.get_xdata()[0] for line in axes.lines if line.get_gid() == "rung"]
    assert rungs == [4, 8, 16]
    legend = [text.get_text() for text in axes.get_legend().get_texts()]
    # Levels in numeric order, then what the fading and the dotted lines mean.
    assert legend == ["lr=1e-05", "lr=0.0001", "lr=0.001", "pruned (faded)", "rungs at 4, 8, 16"]
    assert "1 pruned (faded)" in axes.get_title()
    panel = figure.axes[1]
    assert [t.get_text() for t in panel.get_xticklabels()] == [
        "1e-05\n(n=1)",
        "0.0001\n(n=2)",
        "0.001\n(n=2)",
    ]
    assert len(render(figure, "png")) > 1000


def test_the_heatmap_holds_each_cell_s_mean_log10_loss() -> None:
    curves, jobs = grid_jobs()
    figure = sweep_figure(7, curves, jobs, "optimizer", (1500, 500), factors=["optimizer", "lr"])
    heat = figure.axes[2]
    (image,) = heat.get_images()
    cells = image.get_array()
    # Rows adam, sgd; columns lr 1e-5, 1e-4, 1e-3; y = i - j with j the index in LRS
    # (1e-3 -> 0, 1e-4 -> 1, 1e-5 -> 2); the pruned sgd at 1e-5 is left out, as /factors does.
    assert [t.get_text() for t in heat.get_yticklabels()] == ["adam", "sgd"]
    assert [t.get_text() for t in heat.get_xticklabels()] == ["1e-05", "0.0001", "0.001"]
    assert cells[0].tolist() == [pytest.approx(-2.0), pytest.approx(-1.0), pytest.approx(0.0)]
    assert bool(cells.mask[1, 0])
    assert cells[1, 1:].tolist() == [pytest.approx(0.0), pytest.approx(1.0)]
    written = sorted(t.get_text() for t in heat.texts)
    assert written == sorted(["-2.00", "-1.00", "0.00", "0.00", "1.00"])
    assert "interaction" in heat.get_title()
    # Without lr varied there is no heatmap: curves and the level panel only.
    alone = sweep_figure(7, curves, jobs, "optimizer", (1200, 500), factors=["optimizer"])
    assert len(alone.axes) == 2


def test_best_so_far_figure_draws_the_steps_of_the_best() -> None:
    points = [
        {"spent": 10, "best": None, "final_loss": None},
        {"spent": 110, "best": 0.5, "final_loss": 0.5},
        {"spent": 130, "best": 0.5, "final_loss": None},
        {"spent": 230, "best": 0.2, "final_loss": 0.2},
    ]
    figure = best_so_far_figure(3, points, (800, 400))
    axes = figure.axes[0]
    (best,) = [line for line in axes.lines if line.get_gid() == "best"]
    assert best.get_xdata().tolist() == [110, 130, 230]
    assert best.get_ydata().tolist() == [0.5, 0.5, 0.2]
    assert best.get_drawstyle() == "steps-post"
    assert axes.get_yscale() == "log"
    assert "4 ended jobs" in axes.get_title()
    empty = best_so_far_figure(3, points[:1], (800, 400))
    assert [t.get_text() for t in empty.axes[0].texts] == ["no job has succeeded yet"]


def diverging_jobs() -> tuple[list[Curve], list[dict]]:
    """adam converging at two lr (losses 100 down to 1); sgd diverging at both, spiking to 1e27
    before its loss stops being a number."""
    jobs, curves = [], []
    for optimizer in ("adam", "sgd"):
        for lr in (1e-3, 1e-2):
            diverged = optimizer == "sgd"
            losses = (
                np.array([100.0, 1e9, 1e27, np.inf])
                if diverged
                else np.geomspace(100.0, 1.0 if lr == 1e-3 else 2.0, 20)
            )
            job = {
                "id": len(jobs) + 1,
                "status": "diverged" if diverged else "succeeded",
                "final_loss": 1e27 if diverged else float(losses[-1]),
                "diverged_at": 3 if diverged else None,
                "initial_loss": 100.0,
                "optimizer": optimizer,
                "init": "normal",
                "lr": lr,
            }
            jobs.append(job)
            curves.append(Curve(job, np.arange(len(losses)), losses))
    return curves, jobs


def test_divergence_spikes_do_not_stretch_the_loss_axis_and_are_marked() -> None:
    curves, jobs = diverging_jobs()
    figure = sweep_figure(7, curves, jobs, "lr", (1500, 500), factors=["optimizer", "lr"])
    axes = figure.axes[0]
    # The y axis spans the runs that did not diverge (1 to 100), not the spike to 1e27.
    low, high = axes.get_ylim()
    assert 0.5 < low <= 1.0
    assert 100.0 <= high < 200.0
    # Each diverged run has a mark on the top edge at the step it diverged.
    (marks,) = [line for line in axes.lines if line.get_gid() == "diverged"]
    assert list(marks.get_xdata()) == [3, 3]
    assert list(marks.get_ydata()) == [1.0, 1.0]
    legend = [text.get_text() for text in axes.get_legend().get_texts()]
    assert "diverged (2): marked on the top edge" in legend
    assert len(render(figure, "png")) > 1000


def test_levels_and_cells_whose_runs_all_diverged_say_so() -> None:
    curves, jobs = diverging_jobs()
    figure = sweep_figure(7, curves, jobs, "optimizer", (1500, 500), factors=["optimizer", "lr"])
    panel, heat = figure.axes[1], figure.axes[2]
    assert [t.get_text() for t in panel.get_xticklabels()] == [
        "adam\n(n=2)",
        "sgd\n(n=2, diverged)",
    ]
    assert [line.get_gid() for line in panel.lines].count("diverged") == 1
    # The sgd row's cells are written "diverged" and left out of the colours.
    cells = heat.get_images()[0].get_array()
    assert bool(cells.mask[1].all())
    assert not cells.mask[0].any()
    written = sorted(t.get_text() for t in heat.texts)
    assert written == sorted(["0.00", "0.30", "diverged", "diverged"])
