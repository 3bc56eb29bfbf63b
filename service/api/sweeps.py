"""/api/v1/sweeps: submit a sweep, follow its progress, cancel it, rank its jobs, its factors."""

from __future__ import annotations

import logging
import secrets
from typing import Any, cast

import sqlalchemy as sa
import sqlalchemy.exc
from flask import Blueprint, Response, jsonify, request, url_for

from service import job_states
from service.api.apidoc import documented, int_param, list_param, path_id, str_param
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
from service.api.jobs import json_body
from service.api.limits import check_active_cap
from service.api.params import (
    choice_arg,
    int_arg,
    list_arg,
    page_fields,
)
from service.api.schemas import BestSoFar, SweepFactors, SweepOut, SweepPage, SweepResults
from service.db import row_count
from service.dispatch.send import send
from service.jobs import queue_for
from service.jobspec import MAX_SEED, Limits, SpecError, validate_job
from service.models import JobStatus, Sweep
from service.sweeps.best_so_far import best_so_far_body
from service.sweeps.expansion import count_jobs, expand
from service.sweeps.factors import factor_table
from service.sweeps.leaderboard import (
    DEFAULT_SORT,
    SORTS,
    factor_fields,
    factor_rows,
    leaderboard,
)
from service.sweeps.request import SweepRequest, validate_sweep
from service.sweeps.search import check_space
from service.sweeps.store import best_trial, insert_sweep_jobs, status_counts, sweep_to_dict

bp = Blueprint("sweeps", __name__)
log = logging.getLogger(__name__)

SKIPPED_SHOWN = 5
STATUSES = tuple(s.value for s in JobStatus)
SORT_KEYS = tuple(SORTS) + tuple(f"-{s}" for s in SORTS)
SWEEP_ID = path_id("sweep_id", "sweep")


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


@bp.post("/sweeps")
@documented(
    "Expand a grid and/or random search into jobs, validate and enqueue them all"
    " (Idempotency-Key: a retry returns the same sweep)",
    tag="sweeps",
    request=SweepRequest,
    responses={201: SweepOut, 200: SweepOut},
    errors=(400, 413, 422, 429),
)
def submit_sweep() -> tuple[Response, int]:
    """Expand and validate every job, write them in one bulk insert, enqueue them in one go."""
    key = idempotency_key()
    answer_if_submitted(Sweep, key, _show)
    cfg = config()
    body = json_body()
    sweep_request = validate_sweep(body)
    if sweep_request.search is not None:
        return _submit_search(sweep_request, cast(dict[str, Any], body), key)
    _check_sweep_cap(*count_jobs(sweep_request))
    expansion = expand(sweep_request)
    for job in expansion.jobs:
        job.setdefault("name", sweep_request.name)
    specs, skipped = _validate_all(expansion.jobs, cfg.limits, sweep_request.skip_invalid)
    if not specs:
        raise ApiError(422, "no_valid_jobs", "every combination of the sweep is invalid", "grid")
    check_active_cap(len(specs))
    # Stored as submitted (what GET /sweeps/{id} shows), with the seed that replays it and the
    # fusion asked for (the default filled in: the reconciler re-sends lost jobs by it).
    stored_request = {
        **cast(dict[str, Any], body),
        "seed": expansion.seed,
        "fused": sweep_request.fused,
    }
    sweep = Sweep(
        name=sweep_request.name,
        seed=expansion.seed,
        request=stored_request,
        varied=expansion.varied,
        job_count=len(specs),
        skipped=len(skipped),
        idempotency_key=key,
        owner=owner_name(),
    )
    queues = [queue_for(spec["device"], cfg.default_queue) for spec in specs]
    with stored_once(Sweep, key, _show) as session:
        sent = insert_sweep_jobs(session, sweep, specs, queues)
    send(celery_client(), write_sessions(), sent)
    body_out = _show(sweep)
    body_out["skipped_reasons"] = skipped[:SKIPPED_SHOWN]
    response = jsonify(with_warnings(body_out, queues))
    response.headers["Location"] = url_for("sweeps.show_sweep", sweep_id=sweep.id)
    return response, 201


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


def _submit_search(
    sweep_request: SweepRequest, body: dict[str, Any], key: str | None
) -> tuple[Response, int]:
    """Store a search sweep with no trial yet: the controller asks them (sweeps/controller.py)."""
    assert sweep_request.search is not None
    _check_sweep_cap(sweep_request.search.n, "search.n")
    check_space(sweep_request, config().limits)
    seed = sweep_request.seed
    if seed is None:
        seed = secrets.randbelow(MAX_SEED + 1)
    sweep = Sweep(
        name=sweep_request.name,
        seed=seed,
        # `fused` with its default filled in: the controller and the reconciler send by it.
        request={**body, "seed": seed, "fused": sweep_request.fused},
        varied=sorted(sweep_request.search.space),
        job_count=0,
        trials_wanted=sweep_request.search.n,
        idempotency_key=key,
        # Its trials are this owner's too, and count toward its active cap (controller.py).
        owner=owner_name(),
    )
    with stored_once(Sweep, key, _show) as session:
        session.add(sweep)
    response = jsonify(with_warnings(_show(sweep), [queue_of(sweep_request.base)]))
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
