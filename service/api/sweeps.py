"""/api/v1/sweeps: submit a sweep (a grid's jobs, or a search's trials to come), list, show and
cancel it; its analysis is service/api/sweep_analysis.py."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any, cast

import sqlalchemy as sa
from flask import Blueprint, Response, jsonify, request, url_for

from service import job_states
from service.api.apidoc import documented, int_param, path_id, str_param
from service.api.body import json_body
from service.api.extensions import (
    ApiError,
    celery_client,
    config,
    db_session,
    owner_name,
    require_owner,
    row_or_404,
    write_sessions,
)
from service.api.health import queue_of, with_warnings
from service.api.idempotency import answer_if_submitted, idempotency_key, stored_once
from service.api.limits import check_active_cap
from service.api.params import int_arg, page_fields
from service.api.sweep_schemas import SweepAccepted, SweepOut, SweepPage
from service.db import row_count
from service.dispatch.send import send
from service.jobspec import MAX_SEED, Limits, SpecError, validate_job
from service.models import Sweep
from service.sweeps.expansion import count_jobs, expand
from service.sweeps.request import SweepRequest, validate_sweep
from service.sweeps.search import check_space
from service.sweeps.store import best_trial, insert_sweep_jobs, status_counts, sweep_to_dict

bp = Blueprint("sweeps", __name__)

SKIPPED_SHOWN = 5
SWEEP_ID = path_id("sweep_id", "sweep")


@dataclass(frozen=True)
class Planned:
    """What a submission stores: the sweep's seed and varied fields, and the jobs written now
    (a grid's every valid combination; none for a search, whose trials the controller asks)."""

    seed: int
    varied: list[str]
    specs: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    trials_wanted: int | None = None


def _show(sweep: Sweep) -> dict[str, Any]:
    session = db_session()
    counts = status_counts(session, [sweep.id])[sweep.id]
    return sweep_to_dict(sweep, counts, best_trial(session, sweep))


def _validate_all(
    jobs: list[dict[str, Any]], limits: Limits, skip_invalid: bool
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Validated specs of every expanded job; the first bad one is a 422 unless skipping."""
    specs, skipped = [], []
    for index, fields in enumerate(jobs):
        try:
            specs.append(validate_job(fields, limits))
        except SpecError as error:
            if not skip_invalid:
                raise ApiError(
                    422,
                    "invalid_combination",
                    f"job {index} of the sweep: {error.message}",
                    error.field,
                    index=index,
                    job=fields,
                ) from None
            skipped.append({"index": index, "field": error.field, "message": error.message})
    return specs, skipped


def _check_sweep_cap(total: int, blame: str) -> None:
    """422 naming `blame` when a sweep would make more jobs than TRAINQ_MAX_SWEEP_JOBS."""
    cap = config().max_sweep_jobs
    if total > cap:
        raise ApiError(
            422,
            "too_many_jobs",
            f"{blame}: the sweep expands to {total} jobs, over TRAINQ_MAX_SWEEP_JOBS={cap}",
            blame,
        )


def _plan_grid(sweep_request: SweepRequest, limits: Limits) -> Planned:
    """A grid (and/or random draws): every combination expanded and validated now."""
    _check_sweep_cap(*count_jobs(sweep_request))
    expansion = expand(sweep_request)
    for job in expansion.jobs:
        job.setdefault("name", sweep_request.name)
    specs, skipped = _validate_all(expansion.jobs, limits, sweep_request.skip_invalid)
    if not specs:
        raise ApiError(422, "no_valid_jobs", "every combination of the sweep is invalid", "grid")
    return Planned(expansion.seed, expansion.varied, specs, skipped)


def _plan_search(sweep_request: SweepRequest, limits: Limits) -> Planned:
    """A search: its space checked now, no trial yet (the controller asks them,
    service/sweeps/controller.py)."""
    assert sweep_request.search is not None
    _check_sweep_cap(sweep_request.search.n, "search.n")
    check_space(sweep_request, limits)
    seed = sweep_request.seed
    if seed is None:
        seed = secrets.randbelow(MAX_SEED + 1)
    varied = sorted(sweep_request.search.space)
    return Planned(seed, varied, trials_wanted=sweep_request.search.n)


@bp.post("/sweeps")
@documented(
    "Expand a grid and/or random search into jobs, validate and enqueue them all"
    " (Idempotency-Key: a retry returns the same sweep)",
    tag="sweeps",
    request=SweepRequest,
    responses={201: SweepAccepted, 200: SweepAccepted},
    errors=(400, 413, 422, 429),
)
def submit_sweep() -> tuple[Response, int]:
    """Plan the sweep's jobs, write them with the sweep in one bulk insert, enqueue them."""
    key = idempotency_key()
    answer_if_submitted(Sweep, key, _show)
    cfg = config()
    body = cast(dict[str, Any], json_body())
    sweep_request = validate_sweep(body)
    searching = sweep_request.search is not None
    planned = (_plan_search if searching else _plan_grid)(sweep_request, cfg.limits)
    # A search's trials count toward the active cap as the controller asks them.
    if planned.specs:
        check_active_cap(len(planned.specs))
    sweep = Sweep(
        name=sweep_request.name,
        seed=planned.seed,
        # Stored as submitted (what GET /sweeps/{id} shows), with the seed that replays it and
        # the fusion asked for (the default filled in: the controller and the reconciler send
        # by it).
        request={**body, "seed": planned.seed, "fused": sweep_request.fused},
        varied=planned.varied,
        job_count=len(planned.specs),
        skipped=len(planned.skipped),
        trials_wanted=planned.trials_wanted,
        idempotency_key=key,
        # Its jobs (a search's trials too) are this owner's and count toward its active cap.
        owner=owner_name(),
    )
    queues = [queue_of(spec) for spec in planned.specs]
    with stored_once(Sweep, key, _show) as session:
        sent = insert_sweep_jobs(session, sweep, planned.specs, queues)
    send(celery_client(), write_sessions(), sent)
    body_out = _show(sweep)
    if not searching:
        body_out["skipped_reasons"] = planned.skipped[:SKIPPED_SHOWN]
    # Warned about the queues its jobs went to, or a search's trials will go to.
    warned = [queue_of(sweep_request.base)] if searching else queues
    response = jsonify(with_warnings(body_out, warned))
    response.headers["Location"] = url_for("sweeps.show_sweep", sweep_id=sweep.id)
    return response, 201


@bp.get("/sweeps")
@documented(
    "Sweeps, newest first, each with its progress",
    tag="sweeps",
    params=(
        str_param("name", "exact name"),
        str_param("owner", "exact owner: the name of the token that submitted the sweep"),
        int_param("limit", "page size (default 50)", minimum=1, maximum=1000),
        int_param("offset", "rows to skip", minimum=0),
    ),
    responses={200: SweepPage},
)
def list_sweeps() -> Response:
    """Sweeps, newest first, each with its progress; paged."""
    limit = int_arg("limit", 50, low=1, high=1000)
    offset = int_arg("offset", 0, low=0)
    session = db_session()
    query = sa.select(Sweep)
    name = request.args.get("name")
    if name:
        query = query.where(Sweep.name == name)
    owner = request.args.get("owner")
    if owner:
        query = query.where(Sweep.owner == owner)
    total = row_count(session, query)
    sweeps = session.scalars(
        query.order_by(Sweep.created_at.desc(), Sweep.id.desc()).limit(limit).offset(offset)
    ).all()
    counts = status_counts(session, [s.id for s in sweeps])
    items = []
    for sweep in sweeps:
        item = sweep_to_dict(sweep, counts[sweep.id])
        item.pop("request")
        items.append(item)
    return jsonify({"sweeps": items, **page_fields(total, limit, offset)})


@bp.get("/sweeps/<int:sweep_id>")
@documented(
    "The sweep with `counts`: status -> number of jobs",
    tag="sweeps",
    params=(SWEEP_ID,),
    responses={200: SweepOut},
    errors=(404,),
)
def show_sweep(sweep_id: int) -> Response:
    """One sweep with its job counts per status and whether every job has ended."""
    return jsonify(_show(row_or_404(Sweep, sweep_id)))


@bp.post("/sweeps/<int:sweep_id>/cancel")
@documented(
    "Cancel the queued jobs now (200); running ones stop at their next flush (202)",
    tag="sweeps",
    params=(SWEEP_ID,),
    responses={200: SweepOut, 202: SweepOut},
    errors=(403, 404),
)
def cancel_sweep(sweep_id: int) -> tuple[Response, int]:
    """Queued jobs are cancelled at once; running ones stop at their next flush."""
    sweep = row_or_404(Sweep, sweep_id, for_update=True)
    require_owner("sweep", sweep_id, sweep.owner)
    sweep.cancel_requested = True
    job_states.cancel_sweep(db_session(), sweep_id)
    db_session().commit()
    body = _show(sweep)
    return jsonify(body), 202 if body["counts"]["running"] else 200
