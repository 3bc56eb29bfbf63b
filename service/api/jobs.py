"""/api/v1/jobs: submit, list, read, read the loss history, cancel."""

from __future__ import annotations

import csv
import io
import logging

import sqlalchemy as sa
import sqlalchemy.exc
from flask import Blueprint, Response, jsonify, request, url_for

from service import job_states
from service.api.apidoc import Param, documented, int_param, list_param, path_id, str_param
from service.api.body import parse_json
from service.api.extensions import (
    ApiError,
    celery_client,
    config,
    db_session,
    invalid_parameter,
    not_found,
    owner_name,
    require_owner,
    row_or_404,
    write_sessions,
)
from service.api.health import with_warnings
from service.api.idempotency import answer_if_submitted, idempotency_key, stored_once
from service.api.limits import check_active_cap
from service.api.params import (
    choice_arg,
    float_arg,
    int_arg,
    list_arg,
    page_fields,
)
from service.api.schemas import JobOut, JobPage, LossHistory
from service.db import locked, row_count
from service.dispatch.send import send
from service.job_list import SORT_CHOICES, Cursor, CursorError, keyset_page, offset_page
from service.jobs import (
    downsample,
    job_to_dict,
    new_job,
    queue_for,
    read_losses,
    tags_filter,
)
from service.jobspec import INITS, OPTIMIZERS, STAGES, JobRequest, validate_job
from service.loss_store import finite_or_none
from service.models import Job, JobStatus

bp = Blueprint("jobs", __name__)
log = logging.getLogger(__name__)

STATUSES = tuple(s.value for s in JobStatus)
JOB_ID = path_id("job_id", "job")
MAX_POINTS = 1_000_000  # samples of one loss history
LIST_PARAMS = (
    list_param("status", "comma-separated: " + ", ".join(STATUSES), STATUSES),
    list_param("stage", "comma-separated stages", STAGES),
    list_param("optimizer", "comma-separated optimizers", OPTIMIZERS),
    list_param("init", "comma-separated inits", INITS),
    Param("lr_min", {"type": "number"}, "lr >= this"),
    Param("lr_max", {"type": "number"}, "lr <= this"),
    int_param("sweep", "the sweep's id", minimum=1),
    str_param("tag", "comma-separated: jobs carrying every one"),
    str_param("name", "exact name"),
    str_param("owner", "exact owner: the name of the token that submitted the job"),
    str_param("sort", "key, '-' for descending; NULL keys sort last", SORT_CHOICES),
    int_param("limit", "page size (default 50)", minimum=1, maximum=1000),
    int_param("offset", "rows to skip (compatibility; prefer cursor)", minimum=0),
    str_param("cursor", "next_cursor of the previous page (same filters and sort)"),
)


def json_body() -> object:
    """The request's JSON body, or a 415 or 400 naming what is wrong with it."""
    # A browser form can send text/plain anywhere without asking: only JSON is read as a body.
    if not request.is_json:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"Content-Type: the body must be application/json, not {request.mimetype or 'none'}",
            "Content-Type",
        )
    data = parse_json(request.get_data())
    if data is None:
        raise ApiError(400, "malformed_body", "the body must be a JSON document")
    return data


def send_jobs(jobs: list[Job]) -> None:
    """Enqueue committed jobs; on a broker failure they stay queued for the reconciler to send."""
    sent_at = send(celery_client(), write_sessions(), [(job.id, job.queue) for job in jobs])
    for job in jobs:
        job.enqueued_at = sent_at


@bp.post("/jobs")
@documented(
    "Validate a job, record it and enqueue it (Idempotency-Key: a retry returns the same job)",
    tag="jobs",
    request=JobRequest,
    responses={201: JobOut, 200: JobOut},
    errors=(400, 413, 422, 429),
)
def submit_job() -> tuple[Response, int]:
    """Validate a job, write its row, then enqueue it."""
    key = idempotency_key()
    answer_if_submitted(Job, key, job_to_dict)
    cfg = config()
    spec = validate_job(json_body(), cfg.limits)
    check_active_cap(1)
    job = new_job(
        spec,
        queue_for(spec["device"], cfg.default_queue),
        idempotency_key=key,
        owner=owner_name(),
    )
    with stored_once(Job, key, job_to_dict) as session:
        session.add(job)
    send_jobs([job])
    response = jsonify(with_warnings(job_to_dict(job), [job.queue]))
    response.headers["Location"] = url_for("jobs.show_job", job_id=job.id)
    return response, 201


@bp.get("/jobs")
@documented(
    "Jobs filtered and sorted, by keyset cursor or offset pages",
    tag="jobs",
    params=LIST_PARAMS,
    responses={200: JobPage},
)
def list_jobs() -> Response:
    """Jobs filtered by status, stage, optimizer, init, lr range, sweep, tag and name; paged."""
    query = sa.select(Job)
    statuses = list_arg("status", STATUSES)
    if statuses:
        query = query.where(Job.status.in_(statuses))
    for param, choices, column in (
        ("stage", STAGES, Job.stage),
        ("optimizer", OPTIMIZERS, Job.optimizer),
        ("init", INITS, Job.init),
    ):
        values = list_arg(param, choices)
        if values:
            query = query.where(column.in_(values))
    lr_min, lr_max = float_arg("lr_min"), float_arg("lr_max")
    if lr_min is not None:
        query = query.where(Job.lr >= lr_min)
    if lr_max is not None:
        query = query.where(Job.lr <= lr_max)
    sweep = int_arg("sweep", low=1)
    if sweep is not None:
        query = query.where(Job.sweep_id == sweep)
    tags = list_arg("tag")
    if tags:
        query = query.where(tags_filter(tags))
    name = request.args.get("name")
    if name:
        query = query.where(Job.name == name)
    owner = request.args.get("owner")
    if owner:
        query = query.where(Job.owner == owner)
    sort = choice_arg("sort", SORT_CHOICES, "-created") or "-created"
    limit = int_arg("limit", 50, low=1, high=1000) or 50
    offset = int_arg("offset", 0, low=0) or 0
    token = request.args.get("cursor") or None
    if token is not None and offset:
        raise invalid_parameter("cursor", "give either cursor or offset")
    cursor = None
    if token is not None:
        try:
            cursor = Cursor.decode(token, sort.lstrip("-"))
        except CursorError as error:
            raise invalid_parameter("cursor", str(error)) from None
    session = db_session()
    total = row_count(session, query)
    next_cursor = None
    if offset:
        jobs = offset_page(session, query, sort, limit, offset)
    else:
        jobs, following = keyset_page(session, query, sort, limit, cursor)
        next_cursor = following.encode() if following else None
    return jsonify(
        {
            "jobs": [job_to_dict(job) for job in jobs],
            **page_fields(total, limit, offset),
            "next_cursor": next_cursor,
        }
    )


@bp.get("/jobs/<int:job_id>")
@documented("One job", tag="jobs", params=(JOB_ID,), responses={200: JobOut}, errors=(404,))
def show_job(job_id: int) -> Response:
    """One job with every field and its state."""
    return jsonify(job_to_dict(row_or_404(Job, job_id)))


@bp.get("/jobs/<int:job_id>/losses")
@documented(
    "The loss history, optionally a window of steps and downsampled (first and last kept)",
    tag="jobs",
    params=(
        JOB_ID,
        int_param("start", "first step (inclusive)", minimum=0),
        int_param("stop", "last step (exclusive)", minimum=0),
        int_param("points", "at most this many samples (0: all)", maximum=MAX_POINTS),
        str_param("format", "json or csv", ("json", "csv")),
    ),
    responses={200: {"application/json": LossHistory, "text/csv": None}},
    errors=(404, 422),
)
def job_losses(job_id: int) -> Response:
    """The job's loss history, optionally a window of steps and downsampled to `points`."""
    session = db_session()
    job = row_or_404(Job, job_id)
    start = int_arg("start", None, low=0)
    stop = int_arg("stop", None, low=0)
    points = int_arg("points", 0, low=0, high=MAX_POINTS)
    fmt = choice_arg("format", ("json", "csv"), "json")
    steps, losses = read_losses(session, job_id, start, stop)
    if points:
        steps, losses = downsample(steps, losses, points)
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["step", "loss"])
        writer.writerows(zip(steps, (repr(v) for v in losses), strict=True))
        return Response(
            buffer.getvalue(),
            mimetype="text/csv",
            headers={"Content-Disposition": f"attachment; filename=job-{job_id}-losses.csv"},
        )
    # JSON has no Infinity or NaN: a diverged job's last loss is null (CSV keeps repr()).
    finite = [finite_or_none(v) for v in losses]
    return jsonify({"job_id": job_id, "status": job.status, "steps": steps, "losses": finite})


@bp.post("/jobs/<int:job_id>/cancel")
@documented(
    "Cancel a queued job now (200) or a running one at its next flush (202)",
    tag="jobs",
    params=(JOB_ID,),
    responses={200: JobOut, 202: JobOut},
    errors=(403, 404, 409),
)
def cancel_job(job_id: int) -> Response | tuple[Response, int]:
    """Cancel a queued job at once, or ask a running one to stop at its next flush."""
    session = db_session()
    job = locked(session, Job, job_id)
    if job is None:
        raise not_found("job", job_id)
    require_owner("job", job_id, job.owner)
    if job.is_terminal:
        if job.status == JobStatus.CANCELLED:
            return jsonify(job_to_dict(job))
        raise ApiError(409, "already_finished", f"job {job_id} already ended as {job.status}")
    job_states.cancel(session, job)
    session.commit()
    return jsonify(job_to_dict(job)), 202 if job.status == JobStatus.RUNNING else 200
