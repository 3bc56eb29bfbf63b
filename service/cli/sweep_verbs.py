"""Sweep verbs over HTTP: `trainq sweep FILE.yaml` (submit, follow, report) and `trainq sweeps`."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import click
import yaml

from service.cli.client import TrainqClient
from service.cli.output import (
    fmt,
    print_json,
    print_table,
    print_warnings,
    progress,
    shared_columns,
    short,
)
from service.sweeps.levels import level_sort_key

SWEEP_COLUMNS = ("id", "name", "job_count", "finished", "done", "varied", "created_at")


class SweepLoader(yaml.SafeLoader):
    """YAML with YAML 1.2 floats: `lr: 1e-3` is a number, not the string PyYAML 1.1 reads."""


SweepLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
    list("-+0123456789."),
)


def _progress(sweep: dict[str, Any]) -> str:
    trials = sweep["trials"]
    best = trials["best"]
    shown = f" best {fmt(best['final_loss'])}" if best else ""
    return f"{trials['asked']} asked, {trials['running']} running, {trials['pruned']} pruned{shown}"


def follow(client: TrainqClient, sweep: dict[str, Any], poll: float) -> dict[str, Any]:
    """Finished / wanted trials (asked, running, pruned, best) until done: a bar or lines."""
    with progress(f"sweep {sweep['id']}", sweep["trials"]["wanted"]) as show:
        while True:
            sweep = client.api("GET", f"/sweeps/{sweep['id']}")
            show(sweep["finished"], sweep["trials"]["wanted"], _progress(sweep))
            if sweep["done"]:
                return sweep
            time.sleep(poll)


def print_counts(sweep: dict[str, Any]) -> None:
    """One line: how far the sweep is and how its jobs ended."""
    counts = ", ".join(f"{n} {status}" for status, n in sweep["counts"].items() if n)
    click.echo(
        f"sweep {sweep['id']} {sweep['name']!r}: {sweep['finished']}/{sweep['trials']['wanted']}"
        f" finished ({counts})"
    )


def print_leaderboard(board: dict[str, Any]) -> None:
    """The top rows of the leaderboard; a setting every row shares is said once, below it."""
    factors = [f for f in board["varied"] if f != "seed"]
    columns = ["rank", "id", "status", *factors, "seed", "final_loss", "min_loss", "min_loss_step"]
    shared = shared_columns(board["results"], [*factors, "seed"])
    click.echo(f"\nleaderboard (top {len(board['results'])} of {board['total']}):")
    print_table(board["results"], [c for c in columns if c not in shared], cell=short)
    if shared:
        click.echo("every row: " + ", ".join(f"{c}={fmt(v)}" for c, v in shared.items()))


def print_factors(table: dict[str, Any], varied: list[str]) -> None:
    """Each factor's levels with mean and spread of the final log10 loss, then the best."""
    click.echo(
        f"\nfactors: final log10 loss over {table['used']} job(s), "
        f"{table['diverged']} diverged (scored {fmt(table['diverged_value'])})"
    )
    if table["excluded"]:
        click.echo(f"left out: {table['excluded']}")
    rows = []
    for effect in table["main_effects"]:
        name = effect["factor"]
        # JSON objects come back key-sorted as strings: order numeric levels by value again
        # (a decade bin's value is its lower edge).
        levels = sorted(
            table["factors"][name]["levels"].items(),
            key=lambda item: level_sort_key(item[1].get("value")),
        )
        for key, level in levels:
            rows.append(
                {
                    "factor": name,
                    "share": effect["share"],
                    "level": key,
                    "n": level["n"],
                    "mean": level["mean"],
                    "std": level["std"],
                }
            )
    if rows:
        print_table(rows, ("factor", "share", "level", "n", "mean", "std"))
    for pair in table.get("interactions", []):
        click.echo(f"interaction {pair['name']}: share {fmt(pair['share'])}")
    best = table["best_config"]
    if best:
        config = " ".join(f"{k}={best['config'][k]}" for k in varied if k in best["config"])
        click.echo(f"best: {config} mean {fmt(best['mean'])} over {best['n']} run(s)")
    for entry in table["best_lr"]:
        click.echo(
            f"best lr for {entry['optimizer']}/{entry['init']}: {fmt(entry['lr'])}"
            f" (mean {fmt(entry['mean'])})"
        )


@click.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--detach", is_flag=True, help="submit and return at once")
@click.option("--top", default=10, show_default=True, type=int, help="leaderboard rows shown")
@click.option("--poll", default=1.0, show_default=True, type=float, help="seconds between polls")
@click.option("--idempotency-key")
@click.option("--json", "as_json", is_flag=True, help="print sweep, results and factors as JSON")
def sweep(
    path: str, detach: bool, top: int, poll: float, idempotency_key: str | None, as_json: bool
) -> None:
    """Submit a sweep from YAML (the POST /sweeps body), follow it, print its results."""
    try:
        body = yaml.load(Path(path).read_text(), Loader=SweepLoader)
    except yaml.YAMLError as error:
        raise click.ClickException(f"{path}: not valid YAML: {error}") from None
    client = TrainqClient()
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    submitted = client.api("POST", "/sweeps", json=body, headers=headers)
    click.echo(
        f"sweep {submitted['id']} {submitted['name']!r}: {submitted['job_count']} job(s),"
        f" varying {', '.join(submitted['varied']) or 'nothing'}; sweep seed {submitted['seed']}"
        + (f", {submitted['skipped']} skipped" if submitted["skipped"] else "")
    )
    print_warnings(submitted)
    if detach:
        return
    done = follow(client, submitted, poll)
    board = client.api("GET", f"/sweeps/{done['id']}/results", params={"limit": top})
    table = client.api("GET", f"/sweeps/{done['id']}/factors")
    if as_json:
        print_json({"sweep": done, "results": board, "factors": table})
        return
    print_counts(done)
    print_leaderboard(board)
    print_factors(table, done["varied"])
    best = done["trials"]["best"]
    if best:
        config = " ".join(f"{k}={v}" for k, v in best["config"].items())
        click.echo(f"best trial: job {best['id']} {config} final loss {fmt(best['final_loss'])}")


@click.command()
@click.option("--limit", default=20, show_default=True, type=int)
@click.option("--json", "as_json", is_flag=True)
def sweeps(limit: int, as_json: bool) -> None:
    """List sweeps, newest first, with their progress."""
    page = TrainqClient().api("GET", "/sweeps", params={"limit": limit})
    if as_json:
        print_json(page)
        return
    for item in page["sweeps"]:
        item["varied"] = ",".join(item["varied"])
    print_table(page["sweeps"], SWEEP_COLUMNS)
    click.echo(f"{len(page['sweeps'])} of {page['total']} sweep(s)")


COMMANDS = [sweep, sweeps]
