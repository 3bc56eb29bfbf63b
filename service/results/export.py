"""Downloads: jobs with their summaries, and long-format histories, as CSV or JSON, streamed."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import sqlalchemy as sa
import sqlalchemy.orm as so

from service.db import session_scope
from service.jobs import SPEC_COLUMNS, STATE_COLUMNS, TIME_COLUMNS, job_to_dict
from service.loss_store import finite_or_none
from service.models import Job
from service.results.compare import summarize
from service.results.histories import read_group, read_groups, stored_spans

# Jobs read per page while streaming a sweep.
BATCH = 200
# A spreadsheet reads a cell starting with one of these as a formula (or strips it, then does).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# Every field of a job as the API returns it (service.jobs.job_to_dict), under its names.
JOB_FIELDS = ("id", *SPEC_COLUMNS, "tags", *STATE_COLUMNS, *TIME_COLUMNS, "duration_s")
# CSV column -> the history summary's key, for what the job's own fields do not say already
# (its final_loss, min_loss and min_loss_step are the summary's final, min and min_step).
SUMMARY_FIELDS = {
    "initial_loss": "initial",
    "step_below_1pct": "step_below_1pct",
    "step_below_0_1pct": "step_below_0_1pct",
    "auc_log10": "auc_log10",
}


def spreadsheet_cell(text: str) -> str:
    """Text as a CSV cell a spreadsheet shows as text: a leading formula character gets a `'`."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def csv_cell(value: Any) -> Any:
    """A value as every CSV export writes it: floats exact, text never a formula, None empty."""
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return spreadsheet_cell(value)
    return value


def _csv_line(cells: Iterable[Any]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(csv_cell(c) for c in cells)
    return buffer.getvalue()


def job_histories(
    factory: so.sessionmaker[so.Session], where: sa.ColumnElement[bool]
) -> Iterator[tuple[dict, np.ndarray, np.ndarray]]:
    """(job dict, steps, losses) of every job matching `where`, in id order.

    Read page by page (id after the last one, BATCH jobs), every page and every history read
    in its own short transaction: none stays open while the client downloads.
    """
    last = 0
    while True:
        with session_scope(factory) as session:
            page = session.scalars(
                sa.select(Job).where(where, Job.id > last).order_by(Job.id).limit(BATCH)
            ).all()
            jobs = {job.id: job_to_dict(job) for job in page}
            spans = stored_spans(session, list(jobs))
        if not jobs:
            return
        for group in read_groups(list(jobs), spans):
            with session_scope(factory) as session:
                histories = read_group(session, group)
            for job_id, steps, losses in histories:
                yield jobs[job_id], steps, losses
        last = max(jobs)


def export_json(
    histories: Iterable[tuple[dict, np.ndarray, np.ndarray]], header: dict[str, Any] | None = None
) -> Iterator[str]:
    """{"sweep": ..., "jobs": [job fields + summary + history]}, one job per chunk."""
    yield "{"
    if header is not None:
        yield f'"sweep": {json.dumps(header)}, '
    yield '"jobs": ['
    for n, (job, steps, losses) in enumerate(histories):
        job["summary"] = summarize(steps, losses)
        job["history"] = {
            "steps": steps.tolist(),
            "losses": [finite_or_none(v) for v in losses],
        }
        yield ("," if n else "") + json.dumps(job)
    yield "]}\n"


def export_csv_jobs(histories: Iterable[tuple[dict, np.ndarray, np.ndarray]]) -> Iterator[str]:
    """One row per job: every field the API gives it, then its history's summary."""
    yield _csv_line([*JOB_FIELDS, *SUMMARY_FIELDS])
    for job, steps, losses in histories:
        summary = summarize(steps, losses)
        fields = [job_cell(job, f) for f in JOB_FIELDS]
        yield _csv_line(fields + [summary[key] for key in SUMMARY_FIELDS.values()])


def job_cell(job: dict[str, Any], field: str) -> Any:
    """A job's field as one CSV cell: its tags joined by commas."""
    value = job.get(field)
    return ",".join(value or []) if field == "tags" else value


def export_csv_histories(
    histories: Iterable[tuple[dict, np.ndarray, np.ndarray]],
) -> Iterator[str]:
    """Long format: job_id, step, loss (empty loss: not a finite number)."""
    yield "job_id,step,loss\n"
    for job, steps, losses in histories:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        job_id = job["id"]
        writer.writerows(
            (job_id, int(s), repr(float(v)) if np.isfinite(v) else "")
            for s, v in zip(steps, losses, strict=True)
        )
        yield buffer.getvalue()


def sweep_rows(session: so.Session, sweep_id: int) -> list[dict[str, Any]]:
    """A sweep's jobs as dicts in id order, read a page at a time (no ORM object kept)."""
    query = sa.select(Job).where(Job.sweep_id == sweep_id).order_by(Job.id)
    return [job_to_dict(job) for job in session.scalars(query.execution_options(yield_per=500))]
