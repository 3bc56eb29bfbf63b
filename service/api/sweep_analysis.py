"""/api/v1 a sweep's analysis: its leaderboard, its factors, the best so far (JSON and its
picture), and the plot of its curves by a factor."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from service.api.apidoc import documented, int_param, list_param, path_id, str_param
from service.api.curve_reads import MAX_POINTS, MIME, SIZE_PARAMS, plotted_grid, size_arg
from service.api.extensions import db_session, row_or_404
from service.api.params import choice_arg, int_arg, list_arg, page_fields
from service.api.sweep_schemas import BestSoFar, SweepFactors, SweepResults
from service.models import JobStatus, Sweep
from service.results.curve_labels import LABEL_FIELDS
from service.results.export import sweep_rows
from service.results.plots import Curve, render
from service.results.sweep_plots import best_so_far_figure, sweep_figure
from service.sweeps.best_so_far import best_so_far, best_so_far_body, ended_rows
from service.sweeps.factors import factor_table
from service.sweeps.leaderboard import (
    DEFAULT_SORT,
    SORTS,
    factor_fields,
    factor_rows,
    leaderboard,
    with_initial_losses,
)
from service.sweeps.policy import SweepPolicy

bp = Blueprint("sweep_analysis", __name__)

STATUSES = tuple(s.value for s in JobStatus)
SORT_KEYS = tuple(SORTS) + tuple(f"-{s}" for s in SORTS)
SWEEP_ID = path_id("sweep_id", "sweep")
# Curves a sweep's picture draws at most (an even sample by id of a larger sweep).
MAX_CURVES = 500
FACTORS = tuple(f for f in LABEL_FIELDS if f not in ("name", "device", "tags"))


@bp.get("/sweeps/<int:sweep_id>/results")
@documented(
    "The leaderboard: one row per job",
    tag="sweeps",
    params=(
        SWEEP_ID,
        str_param("sort", "key, '-' for descending (default final_loss)", SORT_KEYS),
        list_param("status", "comma-separated: " + ", ".join(STATUSES), STATUSES),
        int_param("limit", "page size (default 100)", minimum=1, maximum=10_000),
        int_param("offset", "rows to skip", minimum=0),
    ),
    responses={200: SweepResults},
    errors=(404, 422),
)
def sweep_results(sweep_id: int) -> Response:
    """The leaderboard: one row per job; finished runs by loss first, diverged and failed last."""
    sweep = row_or_404(Sweep, sweep_id)
    sort = choice_arg("sort", SORT_KEYS, DEFAULT_SORT) or DEFAULT_SORT
    limit = int_arg("limit", 100, low=1, high=10_000) or 100
    offset = int_arg("offset", 0, low=0) or 0
    statuses = list_arg("status", STATUSES)
    results, total = leaderboard(
        db_session(),
        sweep_id,
        sweep.varied,
        sort=sort,
        statuses=statuses,
        limit=limit,
        offset=offset,
    )
    return jsonify(
        {
            "sweep_id": sweep_id,
            "sort": sort,
            "varied": sweep.varied,
            "results": results,
            **page_fields(total, limit, offset),
        }
    )


@bp.get("/sweeps/<int:sweep_id>/factors")
@documented(
    "Per factor and level, mean and spread of the final log10 loss; main effects and two-way"
    " interactions (optimizer x lr, optimizer x init, init x lr) with their cells; the best config",
    tag="sweeps",
    params=(SWEEP_ID,),
    responses={200: SweepFactors},
    errors=(404,),
)
def sweep_factors(sweep_id: int) -> Response:
    """Per factor and level: the final log10 loss over everything else; main effects; best."""
    sweep = row_or_404(Sweep, sweep_id)
    rows = factor_rows(db_session(), sweep_id, sweep.varied)
    table = factor_table(rows, factor_fields(sweep.varied))
    return jsonify({"sweep_id": sweep_id, "varied": sweep.varied, **table})


@bp.get("/sweeps/<int:sweep_id>/best-so-far")
@documented(
    "The best final loss found against the training steps spent: one point per ended job in"
    " order of finishing (pruned, diverged, failed and cancelled jobs' steps count as spent)",
    tag="sweeps",
    params=(SWEEP_ID,),
    responses={200: BestSoFar},
    errors=(404,),
)
def sweep_best_so_far(sweep_id: int) -> Response:
    """The search converging: best final loss against cumulative training steps."""
    row_or_404(Sweep, sweep_id)
    return jsonify(best_so_far_body(db_session(), sweep_id))


@bp.get("/sweeps/<int:sweep_id>/best-so-far.png", defaults={"fmt": "png"})
@bp.get("/sweeps/<int:sweep_id>/best-so-far.svg", defaults={"fmt": "svg"})
@documented(
    "The best final loss found against the training steps spent (pruned jobs' steps included),"
    " as GET /sweeps/{sweep_id}/best-so-far computes it",
    tag="plots",
    params=(SWEEP_ID, *SIZE_PARAMS),
    responses={200: {"image/png": None, "image/svg+xml": None}},
    errors=(404, 422),
)
def best_so_far_plot(sweep_id: int, fmt: str) -> Response:
    """The search converging, as a picture."""
    row_or_404(Sweep, sweep_id)
    size = size_arg((900, 500))
    points = best_so_far(ended_rows(db_session(), sweep_id))
    return Response(render(best_so_far_figure(sweep_id, points, size), fmt), mimetype=MIME[fmt])


@bp.get("/sweeps/<int:sweep_id>/plot.png")
@documented(
    f"The sweep's curves coloured by one factor (at most {MAX_CURVES}: an even sample by id of a"
    " larger sweep; pruned ones faded, the early-stopping rungs dotted), a panel of that"
    " factor's levels, and the optimizer x lr heatmap of mean log10"
    " final loss when the sweep varies both",
    tag="plots",
    params=(
        SWEEP_ID,
        str_param("by", "the factor (default: the sweep's first varied field)", FACTORS),
        int_param("points", "steps per curve (default 200)", minimum=2, maximum=MAX_POINTS),
        *SIZE_PARAMS,
    ),
    responses={200: {"image/png": None}},
    errors=(404, 422),
)
def sweep_plot(sweep_id: int) -> Response:
    """A sweep's curves, factor panel and heatmap."""
    sweep = row_or_404(Sweep, sweep_id)
    varied = [f for f in (sweep.varied or []) if f in FACTORS]
    by = choice_arg("by", FACTORS, varied[0] if varied else "optimizer") or "optimizer"
    points = int_arg("points", 200, low=2, high=MAX_POINTS) or 200
    factors = factor_fields(sweep.varied or [])
    # The heatmap takes a third panel when the sweep varies both of its factors.
    size = size_arg((1500 if {"optimizer", "lr"} <= set(factors) else 1200, 550))
    rows = with_initial_losses(db_session(), sweep_id, sweep_rows(db_session(), sweep_id))
    drawn = rows[:: -(-len(rows) // MAX_CURVES)] if rows else []
    grid, columns = plotted_grid([row["id"] for row in drawn], points)
    curves = [
        Curve(row, grid.steps[columns], grid.losses[i, columns]) for i, row in enumerate(drawn)
    ]
    figure = sweep_figure(
        sweep_id,
        curves,
        rows,
        by,
        size,
        factors=factors,
        rungs=SweepPolicy.of(sweep.request).rung_steps(
            max((row["iterations"] for row in rows), default=0)
        ),
    )
    return Response(render(figure, "png"), mimetype="image/png")
