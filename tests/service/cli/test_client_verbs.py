"""The CLI's client verbs against a live API over HTTP, with a real worker behind it."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from service.cli import main
from tests.conftest import Stack


@pytest.fixture
def run(live_url: str, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("TRAINQ_URL", live_url)

    def invoke(*args: str) -> str:
        result = CliRunner().invoke(main, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    return invoke


def test_submit_wait_show_and_list(run, stack: Stack) -> None:  # type: ignore[no-untyped-def]
    out = run(
        "submit", "--stage", "optim", "--optimizer", "adam", "--lr", "0.001",
        "--iterations", "40", "--N", "8", "--D-in", "16", "--H", "8", "--D-out", "4",
        "--seed", "11", "--name", "cli-run", "--tag", "cli", "--wait", "--json",
    )  # fmt: skip
    job = json.loads(out[out.index("{") :])
    assert job["status"] == "succeeded"
    assert job["steps_done"] == 40
    assert (job["optimizer"], job["lr"], job["seed"], job["tags"]) == ("adam", 0.001, 11, ["cli"])
    shown = run("show", str(job["id"]), "--losses")
    assert "cli-run" in shown
    assert "succeeded" in shown
    assert len([line for line in shown.splitlines() if "\t" in line]) == 40
    assert "loss history (step, loss; tab-separated):" in shown.splitlines()  # before the steps
    listed = run("jobs", "--tag", "cli")
    assert f"\n{job['id']} " in listed
    assert "1 of 1 job(s)" in listed


def test_invalid_submission_exits_non_zero_naming_the_field(live_url: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("TRAINQ_URL", live_url)
    result = CliRunner().invoke(main, ["submit", "--stage", "nn", "--optimizer", "adam"])
    assert result.exit_code != 0
    assert "HTTP 422" in result.output
    assert "field optimizer" in result.output


def test_cancel_verb(run, stack: Stack) -> None:  # type: ignore[no-untyped-def]
    job = stack.submit(stage="optim", iterations=100_000, N=8, D_in=16, H=8, D_out=4)
    stack.wait(job["id"], until=lambda j: j["status"] == "running")
    assert "stopping" in run("cancel", str(job["id"]))
    assert stack.wait(job["id"], timeout=30)["status"] == "cancelled"
