"""/api/v1 results: compare jobs, draw their curves, export jobs and sweeps."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import sqlalchemy as sa
from flask import Blueprint, Response, current_app, jsonify, request

from service.api import MAX_ID
from service.api.apidoc import Param, documented, int_param, path_id, str_param
from service.api.extensions import ApiError, db_session, invalid_parameter, not_found, row_or_404
from service.api.params import choice_arg, int_arg
from service.api.schemas import CompareOut, ExportOut
from service.jobs import job_to_dict
from service.loss_store import finite_or_none
from service.models import Job, Sweep
from service.results.compare import pair_count, pairwise_max_rel_diff, shared_axis, summarize
from service.results.curve_labels import LABEL_FIELDS
from service.results.export import (
    export_csv_histories,
    export_csv_jobs,
    export_json,
    job_histories,
    sweep_rows,
)
from service.results.histories import (
    History,
    HistoryGrid,
    grid_on,
    read_histories,
    step_axis,
    stored_spans,
    stride,
)
from service.results.plots import Curve, curves_figure, render
from service.results.sweep_plots import best_so_far_figure, sweep_figure
from service.sweeps.best_so_far import best_so_far, ended_rows
from service.sweeps.leaderboard import factor_fields
from service.sweeps.policy import SweepPolicy
from service.sweeps.store import sweep_fields

bp = Blueprint("results", __name__)

MAX_JOBS = 1000
MAX_POINTS = 10_000
# Jobs x steps a compare may return at once; beyond it, ask for fewer points.
MAX_CELLS = 2_000_000
MAX_PIXELS = 3000
# Curves a sweep's picture draws at most (an even sample by id of a larger sweep).
MAX_CURVES = 500
# Steps read per point drawn, for the largest-triangle choice to pick from.
PLOT_CANDIDATES = 8
MIME = {"png": "image/png", "svg": "image/svg+xml"}
JOBS_PARAM = Param(
    "jobs",
    {"type": "string", "pattern": r"^\d+(,\d+)*$"},
    f"comma-separated job ids, 1 to {MAX_JOBS}",
    required=True,
)
POINTS_PARAM = int_param(
    "points",
    "steps on the shared axis (0: every step); default 1000, or 200 above 50 jobs",
    minimum=0,
    maximum=MAX_POINTS,
)
SIZE_PARAMS = (
    int_param("width", "pixels", minimum=200, maximum=MAX_PIXELS),
    int_param("height", "pixels", minimum=150, maximum=MAX_PIXELS),
)
FACTORS = tuple(f for f in LABEL_FIELDS if f not in ("name", "device", "tags"))


def job_ids_arg() -> list[int]:
    """The `jobs` parameter: distinct ids in the order given, 1 to MAX_JOBS of them."""
    raw = request.args.get("jobs", "")
    try:
        ids = [int(part) for part in raw.split(",") if part.strip()]
    except ValueError:
        raise invalid_parameter("jobs", "comma-separated job ids") from None
    ids = list(dict.fromkeys(ids))
    if not ids:
        raise invalid_parameter("jobs", "give at least one job id")
    if len(ids) > MAX_JOBS:
        raise invalid_parameter("jobs", f"at most {MAX_JOBS} at once")
    return ids


def load_jobs(ids: Sequence[int]) -> list[Job]:
    """The jobs in the order asked; 404 naming every id that does not exist."""
    session = db_session()
    found: dict[int, Job] = {}
    for start in range(0, len(ids), 500):
        # An id past the column's range names no job (and must not reach the database).
        chunk = [i for i in ids[start : start + 500] if 0 < i <= MAX_ID]
        found.update(
            (job.id, job) for job in session.scalars(sa.select(Job).where(Job.id.in_(chunk)))
        )
    missing = [i for i in ids if i not in found]
    if missing:
        shown = ", ".join(map(str, missing[:20])) + (" ..." if len(missing) > 20 else "")
        raise not_found("job", shown, "jobs", missing=missing)
    return [found[i] for i in ids]


def size_arg(default: tuple[int, int]) -> tuple[int, int]:
    """?width=&height= in pixels, capped."""
    width = int_arg("width", default[0], low=200, high=MAX_PIXELS)
    height = int_arg("height", default[1], low=150, high=MAX_PIXELS)
    return width or default[0], height or default[1]


def _points(jobs: int) -> int:
    default = 200 if jobs > 50 else 1000
    return int_arg("points", default, low=0, high=MAX_POINTS) or 0


def _cells(values: np.ndarray) -> list[float | None]:
    return [finite_or_none(v) for v in values]


def _curves(jobs: Sequence[Job], grid: HistoryGrid, columns: np.ndarray) -> list[Curve]:
    return [
        Curve(job_to_dict(job), grid.steps[columns], grid.losses[i, columns])
        for i, job in enumerate(jobs)
    ]


def read_axis(ids: Sequence[int], spans: dict, points: int, columns: int) -> np.ndarray:
    """The steps to read the jobs at: every stored one, or an even stride of at most `columns`
    (never fewer than `points`); a 422 naming `points` before anything is read when the
    jobs x points asked for is over MAX_CELLS."""
    axis = step_axis(spans)
    shown = len(axis) if points == 0 or len(axis) <= points else points
    if len(ids) * shown > MAX_CELLS:
        raise ApiError(
            422,
            "too_many_points",
            f"points: {len(ids)} jobs x {shown} steps is over {MAX_CELLS}; ask fewer",
            "points",
        )
    return stride(axis, max(shown, columns))


def _summarized(histories: Iterator[History], into: list[dict]) -> Iterator[History]:
    """The histories passed on, each one's summary (over every stored step) appended to `into`."""
    for job_id, steps, losses in histories:
        into.append({"job_id": job_id, **summarize(steps, losses)})
        yield job_id, steps, losses


def plotted_grid(ids: Sequence[int], points: int) -> tuple[HistoryGrid, np.ndarray]:
    """The grid of a picture and its shared axis: a few candidates per point, read bounded."""
    session = db_session()
    spans = stored_spans(session, ids)
    axis = read_axis(ids, spans, points, PLOT_CANDIDATES * points)
    grid = grid_on(ids, axis, read_histories(session, ids, spans))
    return grid, shared_axis(grid, points)


def _csv(lines: Iterator[str], filename: str) -> Response:
    return Response(
        lines,
        mimetype="text/csv",
        headers={"Content-Disposition": f"attachment; filename={filename}"},
    )


@bp.get("/compare")
@documented(
    "Histories on one step axis, a summary per job (over every stored step) and the largest"
    f" difference of each pair (over every stored step while jobs x steps is at most {MAX_CELLS},"
    " else over an even stride of them)",
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
    points = _points(len(ids))
    pairs_offset = int_arg("pairs_offset", 0, low=0) or 0
    pairs_limit = int_arg("pairs_limit", 2000, low=0, high=100_000) or 0
    fmt = choice_arg("format", ("json", "csv"), "json")
    table = choice_arg("table", ("summary", "histories"), "summary")
    jobs = load_jobs(ids)
    session = db_session()
    spans = stored_spans(session, ids)
    # Pairs compare every stored step when jobs x steps fits MAX_CELLS, else an even stride.
    axis = read_axis(ids, spans, points, MAX_CELLS // len(ids))
    summaries: list[dict] = []
    grid = grid_on(ids, axis, _summarized(read_histories(session, ids, spans), summaries))
    columns = shared_axis(grid, points)
    if fmt == "csv":
        return _csv(_compare_csv(table, summaries, grid, columns), "compare.csv")
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
    points = _points(len(ids))
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
    points = _points(1)
    size = size_arg((800, 500))
    jobs = load_jobs([job_id])
    figure = curves_figure(_curves(jobs, *plotted_grid([job_id], points)), *size)
    return Response(render(figure, "png"), mimetype="image/png")


@bp.get("/sweeps/<int:sweep_id>/plot.png")
@documented(
    f"The sweep's curves coloured by one factor (at most {MAX_CURVES}: an even sample by id of a"
    " larger sweep; pruned ones faded, the early-stopping rungs dotted), a panel of that"
    " factor's levels, and the optimizer x lr heatmap of mean log10"
    " final loss when the sweep varies both",
    tag="plots",
    params=(
        path_id("sweep_id", "sweep"),
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
    rows = sweep_rows(db_session(), sweep_id)
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


@bp.get("/sweeps/<int:sweep_id>/best-so-far.png", defaults={"fmt": "png"})
@bp.get("/sweeps/<int:sweep_id>/best-so-far.svg", defaults={"fmt": "svg"})
@documented(
    "The best final loss found against the training steps spent (pruned jobs' steps included),"
    " as GET /sweeps/{sweep_id}/best-so-far computes it",
    tag="plots",
    params=(path_id("sweep_id", "sweep"), *SIZE_PARAMS),
    responses={200: {"image/png": None, "image/svg+xml": None}},
    errors=(404, 422),
)
def best_so_far_plot(sweep_id: int, fmt: str) -> Response:
    """The search converging, as a picture."""
    row_or_404(Sweep, sweep_id)
    size = size_arg((900, 500))
    points = best_so_far(ended_rows(db_session(), sweep_id))
    return Response(render(best_so_far_figure(sweep_id, points, size), fmt), mimetype=MIME[fmt])


EXPORT_PARAMS = (
    str_param("format", "json (default) or csv", ("json", "csv")),
    str_param("table", "for csv: histories (default, long format) or jobs", ("histories", "jobs")),
)


def _export(where: sa.ColumnElement[bool], header: dict | None, stem: str) -> Response:
    fmt = choice_arg("format", ("json", "csv"), "json")
    table = choice_arg("table", ("histories", "jobs"), "histories")
    # The body reads in sessions of its own, page by page: the request's session (and its
    # transaction) ends when this view returns, before the first byte is sent.
    db_session().close()
    histories = job_histories(current_app.extensions["trainq.sessions"], where)
    if fmt == "csv":
        write = export_csv_jobs if table == "jobs" else export_csv_histories
        return _csv(write(histories), f"{stem}-{table}.csv")
    return Response(
        export_json(histories, header),
        mimetype="application/json",
        headers={"Content-Disposition": f"attachment; filename={stem}.json"},
    )


@bp.get("/jobs/<int:job_id>/export")
@documented(
    "Download the job: fields, summary and history (JSON), or a CSV table",
    tag="export",
    params=(path_id("job_id", "job"), *EXPORT_PARAMS),
    responses={200: {"application/json": ExportOut, "text/csv": None}},
    errors=(404, 422),
)
def export_job(job_id: int) -> Response:
    """One job's download."""
    load_jobs([job_id])
    return _export(Job.id == job_id, None, f"job-{job_id}")


@bp.get("/sweeps/<int:sweep_id>/export")
@documented(
    "Download a whole sweep: its jobs with fields and summaries, and every history (streamed)",
    tag="export",
    params=(path_id("sweep_id", "sweep"), *EXPORT_PARAMS),
    responses={200: {"application/json": ExportOut, "text/csv": None}},
    errors=(404, 422),
)
def export_sweep(sweep_id: int) -> Response:
    """A sweep's download."""
    sweep = row_or_404(Sweep, sweep_id)
    return _export(Job.sweep_id == sweep_id, sweep_fields(sweep), f"sweep-{sweep_id}")
