"""Server-rendered pages: dashboard, job, compare and sweep; their scripts poll the JSON API."""

from __future__ import annotations

from datetime import datetime

from flask import Blueprint, Response, abort, render_template, request
from werkzeug.exceptions import HTTPException

from service.api.extensions import config, current_token, db_session
from service.api.headers import page_headers
from service.api.page_queries import (
    factor_value,
    recent_jobs,
    recent_sweeps,
    sweep_progress,
)
from service.api.results import best_so_far_plot, sweep_plot
from service.api.sign_in import require_sign_in
from service.api.sweep_figures import curve_series, heatmap
from service.jobs import get_job, job_spec, job_to_dict
from service.models import Job, Sweep
from service.results.curve_labels import colour, curve_labels, differing_fields
from service.sweeps.factors import factor_table
from service.sweeps.leaderboard import factor_fields, factor_rows, leaderboard_jobs
from service.sweeps.policy import SweepPolicy

# Templates and static files are the app's own (service/api/templates, service/api/static).
bp = Blueprint("pages", __name__)

RECENT_JOBS = 50
RECENT_SWEEPS = 20
MAX_COMPARE = 50
LEADERBOARD_ROWS = 200


@bp.app_template_filter("num")
def format_number(value: float | None) -> str:
    """A number to four significant digits, as the pages' scripts write it."""
    if value is None:
        return "-"
    return f"{value:.4g}".replace("e+0", "e+").replace("e-0", "e-")


@bp.app_template_filter("when")
def format_when(value: datetime | None) -> str:
    """A UTC timestamp to the second."""
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


@bp.app_context_processor
def page_globals() -> dict[str, object]:
    """Whether the pages need signing in, and who is signed in, for the header."""
    token = current_token()
    return {
        "tokens_required": bool(config().api_tokens),
        "signed_in": token.name if token else None,
    }


# A strict content security policy on every page (service/api/headers.py adds the rest).
bp.after_request(page_headers)
# With tokens on, every page needs a signed-in read token (service/api/sign_in.py).
bp.before_request(require_sign_in)


@bp.errorhandler(HTTPException)
def page_error(error: HTTPException) -> tuple[str, int]:
    """Errors of the pages as HTML."""
    return render_template("error.html", error=error), error.code or 500


@bp.get("/")
def dashboard() -> str:
    """Recent jobs and sweeps, with live status."""
    session = db_session()
    return render_template(
        "dashboard.html",
        jobs=recent_jobs(session, RECENT_JOBS),
        sweeps=recent_sweeps(session, RECENT_SWEEPS),
        recent_jobs=RECENT_JOBS,
    )


@bp.get("/jobs/<int:job_id>")
def job_page(job_id: int) -> str:
    """Every field of one job and its loss curve."""
    job = get_job(db_session(), job_id)
    if job is None:
        abort(404, description=f"There is no job {job_id}.")
    return render_template("job.html", job=job, fields=job_to_dict(job))


def compare_ids() -> list[int]:
    """The job ids of `?jobs=1,2` or `?jobs=1&jobs=2`, in order, without repeats."""
    ids: list[int] = []
    for raw in request.args.getlist("jobs"):
        for part in raw.replace(" ", ",").split(","):
            if not part:
                continue
            if not (part.isascii() and part.isdigit()) or len(part) > 12:
                abort(400, description=f"jobs: {part!r} is not a job id.")
            if int(part) not in ids:
                ids.append(int(part))
    if len(ids) > MAX_COMPARE:
        abort(400, description=f"jobs: at most {MAX_COMPARE} jobs on one page.")
    return ids


@bp.get("/compare")
def compare_page() -> str:
    """Chosen jobs' curves overlaid, the legend naming what differs between them."""
    ids = compare_ids()
    session = db_session()
    jobs: list[Job] = []
    for job_id in ids:
        job = get_job(session, job_id)
        if job is None:
            abort(404, description=f"There is no job {job_id}.")
        jobs.append(job)
    series = [
        {"id": job.id, "label": label, "color": colour(i), "status": job.status}
        for i, (job, label) in enumerate(zip(jobs, curve_labels(jobs), strict=True))
    ]
    return render_template(
        "compare.html",
        jobs=jobs,
        series=series,
        differing=differing_fields([job_spec(job) for job in jobs]),
        ids=",".join(str(i) for i in ids),
    )


@bp.get("/sweeps/<int:sweep_id>")
def sweep_page(sweep_id: int) -> str:
    """A sweep's leaderboard, best final loss first; its curves, heatmap and factor panels."""
    session = db_session()
    sweep = session.get(Sweep, sweep_id)
    if sweep is None:
        abort(404, description=f"There is no sweep {sweep_id}.")
    jobs = leaderboard_jobs(session, sweep_id, LEADERBOARD_ROWS)
    factors = list(sweep.varied or [])
    fields = factor_fields(factors)
    table = factor_table(factor_rows(session, sweep_id, factors), fields)
    series, legend = curve_series(jobs, fields[0] if fields else None)
    rungs = SweepPolicy.of(sweep.request).rung_steps(
        max((job.iterations for job in jobs), default=0)
    )
    return render_template(
        "sweep.html",
        sweep=sweep,
        progress=sweep_progress(session, [sweep])[0],
        jobs=jobs,
        factors=factors,
        factor_value=factor_value,
        heatmap=heatmap(table),
        curves={"series": series, "rungs": rungs},
        legend=legend,
        pruned=sum(job.status == "pruned" for job in jobs),
        shown=LEADERBOARD_ROWS,
        top_ids=",".join(str(job.id) for job in jobs[:10] if job.final_loss is not None),
    )


# The sweep page's figures, for its links: a navigation carries the sign-in cookie, which the
# API (Bearer tokens only) does not accept. Same views, same parameters.
@bp.get("/sweeps/<int:sweep_id>/best-so-far.svg")
def sweep_best_so_far_figure(sweep_id: int) -> Response:
    """The sweep's best-so-far curve (SVG), as GET /api/v1/sweeps/{id}/best-so-far.svg."""
    return best_so_far_plot(sweep_id, "svg")


@bp.get("/sweeps/<int:sweep_id>/plot.png")
def sweep_plot_figure(sweep_id: int) -> Response:
    """The sweep's plot (PNG), as GET /api/v1/sweeps/{id}/plot.png."""
    return sweep_plot(sweep_id)
