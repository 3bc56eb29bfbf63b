"""Result verbs over HTTP: compare jobs (table, pairwise differences, a plot) and export."""

from __future__ import annotations

from pathlib import Path

import click

from service.cli.client import TrainqClient
from service.cli.output import fmt, print_json, print_table

# GET /compare's summary, under its names (service.results.compare.summarize).
SUMMARY_COLUMNS = (
    "job_id",
    "steps",
    "initial",
    "final",
    "min",
    "min_step",
    "step_below_1pct",
    "step_below_0_1pct",
    "auc_log10",
)
PLOT_KINDS = {".png": "png", ".svg": "svg"}


@click.command()
@click.argument("job_ids", nargs=-1, required=True, type=int)
@click.option("--points", type=click.IntRange(0, 10_000), help="steps on the shared axis")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), help="write FILE.png/.svg")
@click.option("--json", "as_json", is_flag=True, help="print the whole comparison as JSON")
def compare(
    job_ids: tuple[int, ...], points: int | None, plot_path: str | None, as_json: bool
) -> None:
    """Compare jobs: a summary per job and the largest relative difference of each pair."""
    kind = None
    if plot_path:
        kind = PLOT_KINDS.get(Path(plot_path).suffix.lower())
        if kind is None:
            raise click.BadParameter("the plot file must end in .png or .svg", param_hint="--plot")
    client = TrainqClient()
    ids = ",".join(map(str, job_ids))
    params = {"jobs": ids, **({"points": points} if points is not None else {})}
    result = client.api("GET", "/compare", params=params)
    if kind and plot_path:
        image = client.request("GET", f"/api/v1/compare/plot.{kind}", params=params).content
        Path(plot_path).write_bytes(image)
    if as_json:
        print_json(result)
        return
    print_table(result["summaries"], SUMMARY_COLUMNS)
    if result["pairs"]:
        click.echo("")
        click.echo("largest relative difference |a-b|/max(|a|,|b|) over common steps:")
        print_table(result["pairs"], ("a", "b", "max_rel_diff", "step", "common_steps"))
    if result["next_pairs_offset"] is not None:
        click.echo(f"({len(result['pairs'])} of {result['pairs_total']} pairs; --json for more)")
    if kind:
        click.echo(f"plot written to {plot_path} ({fmt(len(image))} bytes)", err=True)


@click.command()
@click.option("--job", "job_id", type=int, help="export one job")
@click.option("--sweep", "sweep_id", type=int, help="export a whole sweep")
@click.option(
    "--format", "fmt_", type=click.Choice(["json", "csv"]), default="json", show_default=True
)
@click.option(
    "--table",
    type=click.Choice(["histories", "jobs"]),
    default="histories",
    show_default=True,
    help="for csv: long-format histories or one row per job with its summary",
)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="file (default stdout)")
def export(
    job_id: int | None, sweep_id: int | None, fmt_: str, table: str, output: str | None
) -> None:
    """Download a job or a sweep: fields, summaries and histories, as JSON or CSV."""
    if (job_id is None) == (sweep_id is None):
        raise click.UsageError("give exactly one of --job ID or --sweep ID")
    path = f"/api/v1/jobs/{job_id}/export" if job_id else f"/api/v1/sweeps/{sweep_id}/export"
    client = TrainqClient()
    response = client.request("GET", path, params={"format": fmt_, "table": table}, stream=True)
    with response:
        chunks = response.iter_content(chunk_size=1 << 16)
        if output:
            with open(output, "wb") as sink:
                for chunk in chunks:
                    sink.write(chunk)
        else:
            for chunk in chunks:
                click.echo(chunk, nl=False)


COMMANDS = [compare, export]
