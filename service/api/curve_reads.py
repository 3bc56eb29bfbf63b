"""The reads behind the curve views (compare, plots, exports): the jobs asked for, a picture's
size, and a bounded grid of their histories."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import sqlalchemy as sa
from flask import Response, request

from service.api import MAX_ID
from service.api.apidoc import Param, int_param
from service.api.extensions import ApiError, db_session, invalid_parameter, not_found
from service.api.params import int_arg
from service.models import Job
from service.results.compare import shared_axis
from service.results.histories import (
    HistoryGrid,
    grid_on,
    read_histories,
    step_axis,
    stored_spans,
    stride,
)

MAX_JOBS = 1000
MAX_POINTS = 10_000
# Jobs x steps a compare may return at once; beyond it, ask for fewer points.
MAX_CELLS = 2_000_000
MAX_PIXELS = 3000
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


def points_arg(jobs: int) -> int:
    """?points= for `jobs` curves: 1000 by default, 200 above 50 jobs; 0 is every step."""
    default = 200 if jobs > 50 else 1000
    return int_arg("points", default, low=0, high=MAX_POINTS) or 0


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


def plotted_grid(ids: Sequence[int], points: int) -> tuple[HistoryGrid, np.ndarray]:
    """The grid of a picture and its shared axis: a few candidates per point, read bounded."""
    session = db_session()
    spans = stored_spans(session, ids)
    axis = read_axis(ids, spans, points, PLOT_CANDIDATES * points)
    grid = grid_on(ids, axis, read_histories(session, ids, spans))
    return grid, shared_axis(grid, points)


def csv_response(lines: Iterator[str], filename: str) -> Response:
    """Streamed CSV lines as a download named `filename`."""
    return Response(
        lines,
        mimetype="text/csv",
        headers={"Content-Disposition": f"attachment; filename={filename}"},
    )
