"""The pages draw curves in their pictures' colours and labels: the compare page against the
compare plot, the sweep page against the sweep's plot, for the same jobs."""

from __future__ import annotations

import numpy as np
import sqlalchemy.orm as so
from flask.testing import FlaskClient

from service.api.page_models import compare_series, curve_series
from service.jobs import job_to_dict
from service.models import Job
from service.results.export import sweep_rows
from service.results.plots import Curve, curves_figure
from service.results.sweep_plots import sweep_figure
from tests.service.results_data import add_job, add_sweep, decay

STEPS = 20


def flat(job: dict) -> Curve:
    """A curve for a job's fields (the colours and labels do not depend on the losses)."""
    return Curve(job, np.arange(STEPS), np.ones(STEPS))


def test_the_compare_page_and_its_plot_colour_and_label_each_job_alike(
    client: FlaskClient, session: so.Session
) -> None:
    ids = [
        add_job(client, session, decay(10.0, 0.9, STEPS), optimizer=optimizer, lr=lr, seed=1)
        for optimizer, lr in (("adam", 1e-3), ("sgd", 1e-3), ("sgd", 2.5e-4))
    ]
    jobs = [job for job in (session.get(Job, job_id) for job_id in ids) if job is not None]
    series = compare_series(jobs)
    axes = curves_figure([flat(job_to_dict(job)) for job in jobs], 900, 550).axes[0]
    assert [line.get_color() for line in axes.lines] == [s["color"] for s in series]
    assert len({s["color"] for s in series}) == 3
    legend = [text.get_text() for text in axes.get_legend().get_texts()]
    assert legend == [s["label"] for s in series]
    assert legend == [
        "optimizer=adam, lr=0.001",
        "optimizer=sgd, lr=0.001",
        "optimizer=sgd, lr=0.00025",
    ]


def test_the_sweep_page_and_its_plot_colour_each_job_by_the_same_level(
    client: FlaskClient, session: so.Session
) -> None:
    sweep = add_sweep(session, ["optimizer", "lr"])
    for optimizer in ("sgd", "adam", "rmsprop"):
        for lr in (1e-2, 1e-3):
            status = "pruned" if (optimizer, lr) == ("adam", 1e-2) else "succeeded"
            add_job(
                client,
                session,
                decay(10.0, 0.9, STEPS),
                status=status,
                sweep_id=sweep,
                optimizer=optimizer,
                lr=lr,
            )
    rows = sweep_rows(session, sweep)
    jobs = [job for job in (session.get(Job, row["id"]) for row in rows) if job is not None]
    for by in ("optimizer", "lr"):
        series, legend = curve_series(jobs, by)
        figure = sweep_figure(sweep, [flat(row) for row in rows], rows, by, (1200, 500))
        axes = figure.axes[0]
        drawn = [line for line in axes.lines if line.get_gid() in ("curve", "pruned")]
        colours = {s["id"]: s["color"] for s in series}
        assert [line.get_color() for line in drawn] == [colours[row["id"]] for row in rows]
        shown = axes.get_legend()
        entries = [text.get_text() for text in shown.get_texts()][: len(legend)]
        assert entries == [entry["label"] for entry in legend]
        handles = [handle.get_color() for handle in shown.legend_handles][: len(legend)]
        assert handles == [entry["color"] for entry in legend]
        assert len(legend) == len({entry["color"] for entry in legend}) > 1
