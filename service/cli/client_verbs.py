"""Client verbs over HTTP (TRAINQ_URL): submit, show, jobs, cancel, health."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from service.choices import DEVICES, DTYPES, STAGES
from service.cli.client import TrainqClient
from service.cli.output import fmt, print_json, print_table, print_warnings, progress
from service.models import TERMINAL_STATES

JOB_COLUMNS = (
    "id",
    "status",
    "stage",
    "optimizer",
    "init",
    "lr",
    "steps_done",
    "final_loss",
    "name",
)


def _client() -> TrainqClient:
    return TrainqClient()


def wait_for(
    client: TrainqClient, job: dict[str, Any], poll: float = 0.5, unserved: bool = False
) -> dict[str, Any]:
    """Poll a job until it reaches a terminal state, showing its progress.

    `unserved`: the submission said its queue has no live worker, which is said while it waits.
    """
    with progress(f"job {job['id']}", job["iterations"]) as show:
        while True:
            job = client.job(job["id"])
            note = job["status"]
            if unserved and job["status"] == "queued":
                note = f"queued, no live worker on queue {job['queue']}"
            show(job["steps_done"], job["iterations"], note)
            if job["status"] in TERMINAL_STATES:
                return job
            time.sleep(poll)


@click.command()
@click.option("--stage", type=click.Choice(STAGES))
@click.option("--optimizer")
@click.option("--init", "init_")
@click.option("--lr", type=float)
@click.option("--momentum", type=float)
@click.option("--weight-decay", type=float)
@click.option("--iterations", type=int)
@click.option("--N", "n", type=int)
@click.option("--D-in", "d_in", type=int)
@click.option("--H", "h", type=int)
@click.option("--D-out", "d_out", type=int)
@click.option("--seed", type=int)
@click.option("--device", type=click.Choice(DEVICES))
@click.option("--dtype", type=click.Choice(DTYPES))
@click.option("--name")
@click.option("--tag", "tags", multiple=True, help="a label (repeatable)")
@click.option(
    "--file", "path", type=click.Path(exists=True, dir_okay=False), help="job fields as JSON"
)
@click.option("--idempotency-key")
@click.option("--wait", is_flag=True, help="follow the job until it ends")
@click.option("--json", "as_json", is_flag=True, help="print the job as JSON")
def submit(
    path: str | None, idempotency_key: str | None, wait: bool, as_json: bool, **options: Any
) -> None:
    """Submit one job; fields from options and/or a JSON file."""
    fields: dict[str, Any] = json.loads(Path(path).read_text()) if path else {}
    names = {"init_": "init", "n": "N", "d_in": "D_in", "h": "H", "d_out": "D_out"}
    for key, value in options.items():
        if value not in (None, ()):
            fields[names.get(key, key)] = list(value) if key == "tags" else value
    if "stage" not in fields:
        raise click.UsageError("--stage is required (or a file with a 'stage' field)")
    client = _client()
    job = client.submit(fields, idempotency_key)
    print_warnings(job)
    if wait:
        job = wait_for(client, job, unserved=bool(job.get("warnings")))
    if as_json:
        print_json(job)
    else:
        click.echo(
            f"job {job['id']} {job['status']}: stage={job['stage']} optimizer={job['optimizer']}"
            f" init={job['init']} lr={job['lr']:g} seed={job['seed']}"
            f" final_loss={fmt(job['final_loss'])}"
        )


@click.command()
@click.argument("job_id", type=int)
@click.option("--losses", "show_losses", is_flag=True, help="also print the loss history")
@click.option("--json", "as_json", is_flag=True)
def show(job_id: int, show_losses: bool, as_json: bool) -> None:
    """Show one job with every field."""
    client = _client()
    job = client.job(job_id)
    history = client.losses(job_id) if show_losses else None
    if as_json:
        print_json({"job": job, "losses": history} if history else job)
        return
    width = max(len(k) for k in job)
    for key, value in job.items():
        click.echo(f"{key.ljust(width)}  {fmt(value)}")
    if history:
        click.echo("\nloss history (step, loss; tab-separated):")
        for step, loss in zip(history["steps"], history["losses"], strict=True):
            click.echo(f"{step}\t{loss!r}")


@click.command()
@click.option("--status")
@click.option("--stage")
@click.option("--optimizer")
@click.option("--init", "init_")
@click.option("--sweep", type=int)
@click.option("--tag")
@click.option("--sort", default="-created", show_default=True)
@click.option("--limit", default=20, show_default=True, type=int)
@click.option("--json", "as_json", is_flag=True)
def jobs(init_: str | None, as_json: bool, **filters: Any) -> None:
    """List jobs, newest first (filters as in GET /api/v1/jobs)."""
    page = _client().jobs(init=init_, **filters)
    if as_json:
        print_json(page)
        return
    print_table(page["jobs"], JOB_COLUMNS)
    click.echo(f"{len(page['jobs'])} of {page['total']} job(s)")


@click.command()
@click.argument("job_id", type=int)
def cancel(job_id: int) -> None:
    """Cancel a job (queued: at once; running: within a few iterations)."""
    job = _client().cancel(job_id)
    click.echo(f"job {job_id}: {job['status']}{' (stopping)' if job['cancel_requested'] else ''}")


@click.command()
def health() -> None:
    """Show the service's health: database, broker, workers per queue."""
    print_json(_client().health())


COMMANDS = [submit, show, jobs, cancel, health]
