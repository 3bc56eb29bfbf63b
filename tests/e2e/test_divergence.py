"""Sweeps that diverge on purpose (sgd and momentum at a high lr), on real workers, with and
without ASHA pruning: a diverged run ranks below every run that did not diverge, a level or pair
whose runs all diverged is marked and never a best, and the CLI and the page say 'diverged'."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from service.cli import main
from service.models import Job
from tests.conftest import Stack
from tests.e2e.test_sweeps import SMALL, wait_for_sweep
from tests.support.factors_by_hand import assert_factors_match, worst_seen

# At these dimensions (init normal, seed 1 or 2) sgd diverges by step 3 at lr 1e-2 and above,
# momentum by step 11 at lr 1e-3 and above; adam trains at every lr here.
BASE = {**SMALL, "D_out": 4}


def sweep_jobs(stack: Stack, sweep_id: int) -> list[Job]:
    with stack.sessions() as session:
        return list(session.scalars(sa.select(Job).where(Job.sweep_id == sweep_id)))


def test_a_grid_where_momentum_always_diverges_names_no_best_lr_for_it(
    stack: Stack, live_url: str, tmp_path: Path
) -> None:
    # Given a grid in which momentum diverges at both lr and sgd at the higher one.
    path = tmp_path / "diverging.yaml"
    path.write_text(
        "name: diverging\n"
        "base: {stage: optim, init: normal, iterations: 50, N: 16, D_in: 32, H: 16, D_out: 4}\n"
        "grid:\n"
        "  optimizer: [sgd, momentum, adam]\n"
        "  lr: [1e-3, 1e-2]\n"
        "seeds: [1, 2]\n"
    )
    # When `trainq sweep` runs it on the live service to the end.
    result = CliRunner().invoke(
        main, ["sweep", str(path), "--poll", "0.2", "--top", "12"], env={"TRAINQ_URL": live_url}
    )
    assert result.exit_code == 0, result.output
    sweep_id = int(result.output.split()[1])
    jobs = sweep_jobs(stack, sweep_id)
    diverged = {(j.optimizer, j.lr) for j in jobs if j.status == "diverged"}
    assert diverged == {("momentum", 1e-3), ("momentum", 1e-2), ("sgd", 1e-2)}, result.output
    # Then the CLI names no best lr for momentum, marks its level, and ranks it last.
    out = result.output
    assert "best lr for momentum/normal: none (every lr diverged)" in out
    assert re.search(r"^optimizer\s+\S+\s+momentum\s+4\s+diverged\s+-", out, re.M), out
    assert "best lr for sgd/normal: 0.001 " in out
    board = [line.split() for line in out.splitlines() if line.split()[2:3] == ["diverged"]]
    assert [row[-3] for row in board] == ["diverged"] * 6, out
    # And the API says the same.
    table = stack.client.get(f"/api/v1/sweeps/{sweep_id}/factors").get_json()
    assert table["factors"]["optimizer"]["levels"]["momentum"]["all_diverged"] is True
    assert table["factors"]["optimizer"]["levels"]["sgd"]["all_diverged"] is False
    best_lr = {entry["optimizer"]: entry for entry in table["best_lr"]}
    assert (best_lr["momentum"]["lr"], best_lr["momentum"]["all_diverged"]) == (None, True)
    assert best_lr["sgd"]["lr"] == 1e-3
    assert table["best_config"]["config"]["optimizer"] != "momentum"
    # A diverged run scores above every loss the sweep saw: every start and every final.
    with stack.sessions() as session:
        worst = worst_seen(session, {j.id: j for j in jobs})
        assert table["diverged_value"] == pytest.approx(worst + 1)
        assert_factors_match(session, sweep_id, table)
    for job in jobs:
        assert table["diverged_value"] > math.log10(stack.losses(job.id)["losses"][0])
    # The sweep page's heatmap writes the momentum cells "diverged", not a number.
    page = stack.client.get(f"/sweeps/{sweep_id}").get_data(as_text=True)
    cells = re.findall(r'<td class="num heat heat-diverged"[^>]*>([^<]*)</td>', page)
    assert cells == ["diverged"] * 3


def test_in_an_asha_sweep_diverged_runs_rank_below_the_pruned_ones(stack: Stack) -> None:
    # Given an ASHA grid whose fast adam runs (the first two, run first) finish low; the slow
    # ones, adam's and sgd's, are pruned at the first rung with losses near their start (only
    # the best quarter goes on: they are never among it); sgd diverges at the high lr.
    body = {
        "name": "asha-diverging",
        "base": {**BASE, "iterations": 200},
        "grid": {"optimizer": ["adam", "sgd"], "lr": [1e-1, 3e-2, 1e-5, 1e-6]},
        "seeds": [1],
        "early_stop": {"rule": "asha", "grace": 8, "reduction": 4},
        "fused": False,
    }
    sweep_id = stack.submit_sweep(body)
    sweep = wait_for_sweep(stack, sweep_id)
    counts = sweep["counts"]
    assert counts["diverged"] == 2, counts
    assert counts["pruned"] >= 4, counts
    jobs = sweep_jobs(stack, sweep_id)
    pruned = [j for j in jobs if j.status == "pruned"]
    table = stack.client.get(f"/api/v1/sweeps/{sweep_id}/factors").get_json()
    # Then a diverged run scores above every pruned loss at its rung and every initial loss,
    # not one decade above the (low) finished runs.
    assert table["pruned"] == len(pruned)
    for job in pruned:
        assert job.pruned_loss is not None
        assert table["diverged_value"] > math.log10(job.pruned_loss) + 0.5
    finals = [j.final_loss for j in jobs if j.status == "succeeded"]
    assert table["diverged_value"] > math.log10(max(finals)) + 1
    with stack.sessions() as session:
        worst = worst_seen(session, {j.id: j for j in jobs})
        assert table["diverged_value"] == pytest.approx(worst + 1)
        assert_factors_match(session, sweep_id, table)
    # sgd's slow runs were pruned (left out), so every scored sgd run diverged: its level is
    # marked, it is no best, and it has no best lr.
    sgd = table["factors"]["optimizer"]["levels"]["sgd"]
    assert (sgd["all_diverged"], sgd["diverged"]) == (True, 2), table
    assert sgd["mean"] > table["factors"]["optimizer"]["levels"]["adam"]["mean"]
    assert table["best_config"]["config"]["optimizer"] == "adam"
    best_lr = {entry["optimizer"]: entry["lr"] for entry in table["best_lr"]}
    assert best_lr["sgd"] is None
    assert best_lr["adam"] in (1e-1, 3e-2)
    # And the leaderboard ranks both diverged runs after every run that did not diverge.
    board = stack.client.get(f"/api/v1/sweeps/{sweep_id}/results").get_json()["results"]
    statuses = [row["status"] for row in board]
    assert statuses[-2:] == ["diverged", "diverged"], statuses
