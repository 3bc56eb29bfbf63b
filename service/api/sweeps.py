"""/api/v1/sweeps: submit a sweep, follow its progress, cancel it, rank its jobs, its factors."""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
import sqlalchemy.exc
from flask import Blueprint, jsonify, request, url_for

from service.api.extensions import ApiError, celery_client, config, db_session
from service.api.jobs import json_body
from service.api.params import choice_arg, int_arg, list_arg
from service.broker import enqueue_jobs
from service.factors import factor_table
from service.jobs import SPEC_COLUMNS, queue_for
from service.jobspec import Limits, SpecError, validate_job
from service.models import Job, JobStatus, Sweep
from service.models.base import utcnow
from service.sweep_expansion import check_request, count_jobs, expand
from service.sweeps import cancel_sweep_jobs, insert_sweep_jobs, status_counts, sweep_to_dict

bp = Blueprint("sweeps", __name__)
log = logging.getLogger(__name__)

SKIPPED_SHOWN = 5
STATUSES = tuple(s.value for s in JobStatus)
RESULT_SORTS = {
    "final_loss": Job.final_loss,
    "min_loss": Job.min_loss,
    "min_loss_step": Job.min_loss_step,
    "steps_done": Job.steps_done,
    "lr": Job.lr,
    "id": Job.id,
}
# Leaderboard buckets: finished finite runs first, then the rest in order of how bad.
OUTCOME_RANK = sa.case(
    (Job.status == JobStatus.SUCCEEDED.value, 0),
    (Job.status == JobStatus.RUNNING.value, 1),
    (Job.status == JobStatus.QUEUED.value, 2),
    (Job.status == JobStatus.DIVERGED.value, 3),
    (Job.status == JobStatus.CANCELLED.value, 4),
    else_=5,
)


def _not_found(sweep_id: int) -> ApiError:
    return ApiError(404, "not_found", f"no sweep {sweep_id}")


def _get_sweep(sweep_id: int, *, for_update: bool = False) -> Sweep:
    sweep = db_session().get(Sweep, sweep_id, with_for_update=for_update)
    if sweep is None:
        raise _not_found(sweep_id)
    return sweep


def _show(sweep: Sweep) -> dict[str, Any]:
    return sweep_to_dict(sweep, status_counts(db_session(), [sweep.id])[sweep.id])


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
def submit_sweep():  # type: ignore[no-untyped-def]
    """Expand and validate every job, write them in one bulk insert, enqueue them in one go."""
    session = db_session()
    key = request.headers.get("Idempotency-Key")
    if key is not None and not 1 <= len(key) <= 200:
        raise ApiError(
            422, "invalid_header", "Idempotency-Key: 1 to 200 characters", "Idempotency-Key"
        )
    if key:
        existing = session.scalar(sa.select(Sweep).where(Sweep.idempotency_key == key))
        if existing is not None:
            return jsonify(_show(existing)), 200
    cfg = config()
    body = check_request(json_body())
    total, blame = count_jobs(body)
    if total > cfg.max_sweep_jobs:
        raise ApiError(
            422,
            "too_many_jobs",
            f"{blame}: the sweep expands to {total} jobs, over the cap of {cfg.max_sweep_jobs}",
            blame,
        )
    expansion = expand(body)
    for job in expansion.jobs:
        job.setdefault("name", body["name"])
    specs, skipped = _validate_all(
        expansion.jobs, Limits.from_config(cfg), body.get("skip_invalid", False)
    )
    if not specs:
        raise ApiError(422, "no_valid_jobs", "every combination of the sweep is invalid", "grid")
    stored_request = {**body, "seed": expansion.seed}
    sweep = Sweep(
        name=body["name"],
        seed=expansion.seed,
        request=stored_request,
        varied=expansion.varied,
        job_count=len(specs),
        skipped=len(skipped),
        idempotency_key=key,
    )
    queues = [queue_for(spec["device"], cfg.default_queue) for spec in specs]
    try:
        sent = insert_sweep_jobs(session, sweep, specs, queues)
        session.commit()
    except sqlalchemy.exc.IntegrityError:
        session.rollback()
        existing = session.scalar(sa.select(Sweep).where(Sweep.idempotency_key == key))
        if existing is None:
            raise
        return jsonify(_show(existing)), 200
    _send(sweep.id, sent)
    body_out = _show(sweep)
    body_out["skipped_reasons"] = skipped[:SKIPPED_SHOWN]
    response = jsonify(body_out)
    response.headers["Location"] = url_for("sweeps.show_sweep", sweep_id=sweep.id)
    return response, 201


def _send(sweep_id: int, jobs: list[tuple[int, str]]) -> None:
    """One enqueue over one connection, then one UPDATE; a broker failure leaves them to the
    reconciler (enqueued_at stays null)."""
    try:
        enqueue_jobs(celery_client(), jobs)
    except Exception as error:  # the broker is down: the rows are the truth, send later
        log.warning("broker unavailable, sweep %d left for the reconciler: %s", sweep_id, error)
        return
    session = db_session()
    session.execute(
        sa.update(Job)
        .where(Job.sweep_id == sweep_id, Job.enqueued_at.is_(None))
        .values(enqueued_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    session.commit()


@bp.get("/sweeps")
def list_sweeps():  # type: ignore[no-untyped-def]
    """Sweeps, newest first, each with its progress; paged."""
    limit = int_arg("limit", 50, low=1, high=1000)
    offset = int_arg("offset", 0, low=0)
    session = db_session()
    query = sa.select(Sweep)
    name = request.args.get("name")
    if name:
        query = query.where(Sweep.name == name)
    total = session.scalar(sa.select(sa.func.count()).select_from(query.subquery())) or 0
    sweeps = session.scalars(
        query.order_by(Sweep.created_at.desc(), Sweep.id.desc()).limit(limit).offset(offset)
    ).all()
    counts = status_counts(session, [s.id for s in sweeps])
    items = []
    for sweep in sweeps:
        item = sweep_to_dict(sweep, counts[sweep.id])
        item.pop("request")
        items.append(item)
    return jsonify(
        {
            "sweeps": items,
            "total": total,
            "limit": limit,
            "offset": offset,
            "next_offset": offset + limit if offset + limit < total else None,
        }
    )


@bp.get("/sweeps/<int:sweep_id>")
def show_sweep(sweep_id: int):  # type: ignore[no-untyped-def]
    """One sweep with its job counts per status and whether every job has ended."""
    return jsonify(_show(_get_sweep(sweep_id)))


@bp.post("/sweeps/<int:sweep_id>/cancel")
def cancel_sweep(sweep_id: int):  # type: ignore[no-untyped-def]
    """Queued jobs are cancelled at once; running ones stop at their next flush."""
    sweep = _get_sweep(sweep_id, for_update=True)
    sweep.cancel_requested = True
    cancel_sweep_jobs(db_session(), sweep_id)
    db_session().commit()
    body = _show(sweep)
    return jsonify(body), 202 if body["counts"]["running"] else 200


def _leaderboard_columns(varied: list[str]) -> list[tuple[str, Any]]:
    fields = [f for f in varied if f in SPEC_COLUMNS and f != "seed"]
    return [(f, getattr(Job, SPEC_COLUMNS[f])) for f in fields] + [("seed", Job.seed)]


@bp.get("/sweeps/<int:sweep_id>/results")
def sweep_results(sweep_id: int):  # type: ignore[no-untyped-def]
    """The leaderboard: one row per job; finished runs by loss first, diverged and failed last."""
    sweep = _get_sweep(sweep_id)
    sorts = tuple(RESULT_SORTS) + tuple(f"-{s}" for s in RESULT_SORTS)
    sort = choice_arg("sort", sorts, "final_loss") or "final_loss"
    limit = int_arg("limit", 100, low=1, high=10_000)
    offset = int_arg("offset", 0, low=0)
    statuses = list_arg("status", STATUSES)
    column = RESULT_SORTS[sort.lstrip("-")]
    direction = column.desc() if sort.startswith("-") else column.asc()
    order = [direction, Job.id] if sort.lstrip("-") == "id" else [OUTCOME_RANK, direction, Job.id]
    columns = _leaderboard_columns(sweep.varied)
    query = sa.select(
        Job.id,
        Job.status,
        Job.final_loss,
        Job.min_loss,
        Job.min_loss_step,
        Job.steps_done,
        Job.diverged_at,
        *(c.label(f"f_{name}") for name, c in columns),
    ).where(Job.sweep_id == sweep_id)
    if statuses:
        query = query.where(Job.status.in_(statuses))
    session = db_session()
    total = session.scalar(sa.select(sa.func.count()).select_from(query.subquery())) or 0
    rows = session.execute(query.order_by(*order).limit(limit).offset(offset)).all()
    results = []
    for rank, row in enumerate(rows, start=offset + 1):
        item = {"rank": rank, **{k: row._mapping[k] for k in row._mapping if k[:2] != "f_"}}
        item.update({name: row._mapping[f"f_{name}"] for name, _ in columns})
        results.append(item)
    return jsonify(
        {
            "sweep_id": sweep_id,
            "sort": sort,
            "varied": sweep.varied,
            "results": results,
            "total": total,
            "limit": limit,
            "offset": offset,
            "next_offset": offset + limit if offset + limit < total else None,
        }
    )


@bp.get("/sweeps/<int:sweep_id>/factors")
def sweep_factors(sweep_id: int):  # type: ignore[no-untyped-def]
    """Per factor and level: the final log10 loss over everything else; main effects; best."""
    sweep = _get_sweep(sweep_id)
    factors = [f for f in sweep.varied if f in SPEC_COLUMNS and f != "seed"]
    fields = list(dict.fromkeys([*factors, "optimizer", "init", "lr", "seed"]))
    query = sa.select(
        Job.id,
        Job.status,
        Job.final_loss,
        *(getattr(Job, SPEC_COLUMNS[f]).label(f"f_{f}") for f in fields),
    ).where(Job.sweep_id == sweep_id)
    rows = []
    for row in db_session().execute(query):
        mapping = row._mapping
        item = {
            "id": mapping["id"],
            "status": mapping["status"],
            "final_loss": mapping["final_loss"],
        }
        item.update({f: mapping[f"f_{f}"] for f in fields})
        rows.append(item)
    table = factor_table(rows, factors)
    return jsonify({"sweep_id": sweep_id, "varied": sweep.varied, **table})
