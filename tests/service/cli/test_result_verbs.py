"""`trainq compare` and `trainq export` against the API served over real HTTP."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy.orm as so
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image

from service.cli import main
from tests.service.results_data import add_job, decay, expected_pair
from tests.support.live_server import serving
from tests.support.loss_chunks import stored_history


@pytest.fixture
def served(app: Flask, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The app on a local port, TRAINQ_URL pointing at it."""
    with serving(app) as url:
        monkeypatch.setenv("TRAINQ_URL", url)
        yield url


def test_compare_prints_summaries_pairs_and_writes_plots(
    served: str, client: FlaskClient, session: so.Session, tmp_path: Path
) -> None:
    a = add_job(client, session, decay(10.0, 0.9, 60), optimizer="adam")
    b = add_job(client, session, decay(10.0, 0.95, 60), optimizer="sgd")
    png, svg = tmp_path / "c.png", tmp_path / "c.svg"
    result = CliRunner().invoke(main, ["compare", str(a), str(b), "--plot", str(png)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:4] == ["job_id", "steps", "initial", "final"]
    assert lines[1].split()[:2] == [str(a), "60"]
    value, step, _ = expected_pair(stored_history(session, a), stored_history(session, b))
    pair_line = next(line for line in lines if line.split()[:2] == [str(a), str(b)])
    assert pair_line.split()[2:4] == [f"{value:.4g}", str(step)]
    with Image.open(png) as image:
        assert image.size == (900, 550)
    as_json = CliRunner().invoke(
        main, ["compare", str(a), str(b), "--json", "--points", "10", "--plot", str(svg)]
    )
    assert json.loads(as_json.output)["points"] == 10
    assert svg.read_text().lstrip().startswith("<?xml")
    bad = CliRunner().invoke(main, ["compare", str(a), "--plot", str(tmp_path / "c.gif")])
    assert bad.exit_code != 0
    assert "png or .svg" in bad.output
    missing = CliRunner().invoke(main, ["compare", str(a), "99999"])
    assert missing.exit_code == 1
    assert "99999" in missing.output


def test_export_to_a_file_and_to_stdout(
    served: str, client: FlaskClient, session: so.Session, tmp_path: Path
) -> None:
    job = add_job(client, session, decay(3.0, 0.5, 8))
    out = tmp_path / "job.csv"
    result = CliRunner().invoke(
        main, ["export", "--job", str(job), "--format", "csv", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [(int(r["job_id"]), int(r["step"]), float(r["loss"])) for r in rows] == [
        (job, s, v) for s, v in zip(*stored_history(session, job), strict=True)
    ]
    printed = CliRunner().invoke(main, ["export", "--job", str(job)])
    assert json.loads(printed.output)["jobs"][0]["id"] == job
    both = CliRunner().invoke(main, ["export", "--job", "1", "--sweep", "1"])
    assert both.exit_code == 2
    nothing = CliRunner().invoke(main, ["export", "--sweep", "31337"])
    assert nothing.exit_code == 1
    assert "31337" in nothing.output
