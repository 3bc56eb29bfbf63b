"""/api/v1 compare: jobs' histories on one axis with summaries and pair differences, and the
curves drawn: compared jobs overlaid, or one job alone."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from flask import Blueprint, Response, jsonify

from service.api import curve_reads
from service.api.apidoc import documented, int_param, path_id, str_param
from service.api.curve_reads import (
    JOBS_PARAM,
    MIME,
    POINTS_PARAM,
    SIZE_PARAMS,
    csv_response,
    job_ids_arg,
    load_jobs,
    plotted_grid,
    points_arg,
    read_axis,
    size_arg,
)
from service.api.extensions import db_session
from service.api.params import choice_arg, int_arg
from service.api.schemas import CompareOut
from service.jobs import job_to_dict
from service.loss_store import finite_or_none
from service.models import Job
from service.results.compare import pair_count, pairwise_max_rel_diff, shared_axis, summarize
from service.results.histories import History, HistoryGrid, grid_on, read_histories, stored_spans
from service.results.plots import Curve, curves_figure, render

bp = Blueprint("compare", __name__)


def _cells(values: np.ndarray) -> list[float | None]:
    return [finite_or_none(v) for v in values]


def _curves(jobs: Sequence[Job], grid: HistoryGrid, columns: np.ndarray) -> list[Curve]:
    return [
        Curve(job_to_dict(job), grid.steps[columns], grid.losses[i, columns])
        for i, job in enumerate(jobs)
    ]


def _summarized(histories: Iterator[History], into: list[dict]) -> Iterator[History]:
    """The histories passed on, each one's summary (over every stored step) appended to `into`."""
    for job_id, steps, losses in histories:
        into.append({"job_id": job_id, **summarize(steps, losses)})
        yield job_id, steps, losses


@bp.get("/compare")
@documented(
    "Histories on one step axis, a summary per job (over every stored step) and the largest"
    f" difference of each pair (over every stored step while jobs x steps is at most"
    f" {curve_reads.MAX_CELLS}, else over an even stride of them)",
    tag="results",
    params=(
        JOBS_PARAM,
        POINTS_PARAM,
        int_param(
            "pairs_offset", "first pair to return (pairs run a<b in request order)", minimum=0
        ),
        int_param(
            "pairs_limit",
            "pairs per response (default 2000; 0: none computed)",
            minimum=0,
            maximum=100_000,
        ),
        str_param("format", "json, or csv (a table, see `table`)", ("json", "csv")),
        str_param(
            "table", "for format=csv: summary (default) or histories", ("summary", "histories")
        ),
    ),
    responses={200: {"application/json": CompareOut, "text/csv": None}},
    errors=(404, 422),
)
def compare() -> Response:
    """Compare up to 1,000 jobs."""
    ids = job_ids_arg()
    points = points_arg(len(ids))
    pairs_offset = int_arg("pairs_offset", 0, low=0) or 0
    pairs_limit = int_arg("pairs_limit", 2000, low=0, high=100_000) or 0
    fmt = choice_arg("format", ("json", "csv"), "json")
    table = choice_arg("table", ("summary", "histories"), "summary")
    jobs = load_jobs(ids)
    session = db_session()
    spans = stored_spans(session, ids)
    # Pairs compare every stored step when jobs x steps fits MAX_CELLS, else an even stride.
    axis = read_axis(ids, spans, points, curve_reads.MAX_CELLS // len(ids))
    summaries: list[dict] = []
    grid = grid_on(ids, axis, _summarized(read_histories(session, ids, spans), summaries))
    columns = shared_axis(grid, points)
    if fmt == "csv":
        return csv_response(_compare_csv(table, summaries, grid, columns), "compare.csv")
    total = pair_count(len(ids))
    pairs = list(pairwise_max_rel_diff(grid, pairs_offset, pairs_limit)) if pairs_limit else []
    following = pairs_offset + len(pairs)
    return jsonify(
        {
            "jobs": [job_to_dict(job) for job in jobs],
            "points": len(columns),
            "steps": grid.steps[columns].tolist(),
            "histories": [
                {"job_id": job_id, "losses": _cells(grid.losses[i, columns])}
                for i, job_id in enumerate(ids)
            ],
            "summaries": summaries,
            "pairs": pairs,
            "pairs_total": total,
            "pairs_offset": pairs_offset,
            "next_pairs_offset": following if following < total and pairs else None,
        }
    )


def _compare_csv(
    table: str | None, summaries: list[dict], grid: HistoryGrid, columns: np.ndarray
) -> Iterator[str]:
    if table == "histories":
        yield "step," + ",".join(f"job_{i}" for i in grid.job_ids) + "\n"
        for k in columns:
            cells = [repr(float(v)) if np.isfinite(v) else "" for v in grid.losses[:, k]]
            yield f"{int(grid.steps[k])}," + ",".join(cells) + "\n"
        return
    fields = list(summaries[0])
    yield ",".join(fields) + "\n"
    for row in summaries:
        yield ",".join("" if row[f] is None else repr(row[f]) for f in fields) + "\n"


@bp.get("/compare/plot.png", defaults={"fmt": "png"})
@bp.get("/compare/plot.svg", defaults={"fmt": "svg"})
@documented(
    "The jobs' loss curves overlaid on a log scale, the legend naming what differs",
    tag="plots",
    params=(JOBS_PARAM, POINTS_PARAM, *SIZE_PARAMS),
    responses={200: {"image/png": None, "image/svg+xml": None}},
    errors=(404, 422),
)
def compare_plot(fmt: str) -> Response:
    """Overlay the jobs' curves."""
    ids = job_ids_arg()
    points = points_arg(len(ids))
    size = size_arg((900, 550))
    jobs = load_jobs(ids)
    figure = curves_figure(_curves(jobs, *plotted_grid(ids, points)), *size)
    return Response(render(figure, fmt), mimetype=MIME[fmt])


@bp.get("/jobs/<int:job_id>/plot.png")
@documented(
    "The job's loss curve on a log scale",
    tag="plots",
    params=(path_id("job_id", "job"), POINTS_PARAM, *SIZE_PARAMS),
    responses={200: {"image/png": None}},
    errors=(404, 422),
)
def job_plot(job_id: int) -> Response:
    """One job's curve."""
    points = points_arg(1)
    size = size_arg((800, 500))
    jobs = load_jobs([job_id])
    figure = curves_figure(_curves(jobs, *plotted_grid([job_id], points)), *size)
    return Response(render(figure, "png"), mimetype="image/png")
