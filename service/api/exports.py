"""/api/v1 exports: download a job or a whole sweep, as JSON or a CSV table (streamed)."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, Response, current_app

from service.api.apidoc import documented, path_id, str_param
from service.api.curve_reads import csv_response, load_jobs
from service.api.extensions import db_session, row_or_404
from service.api.params import choice_arg
from service.api.schemas import ExportOut
from service.models import Job, Sweep
from service.results.export import (
    export_csv_histories,
    export_csv_jobs,
    export_json,
    job_histories,
)
from service.sweeps.store import sweep_fields

bp = Blueprint("exports", __name__)

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
        return csv_response(write(histories), f"{stem}-{table}.csv")
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
