"""How the CLI reports progress off a terminal: a line every few seconds, not a bar."""

from __future__ import annotations

import pytest

from service.cli import output


def test_off_a_terminal_progress_is_a_line_every_few_seconds(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a clock the test moves, and stdout not a terminal (pytest captures it)
    now = [100.0]
    monkeypatch.setattr(output.time, "monotonic", lambda: now[0])
    with output.progress("job 4", 500) as show:
        # When progress is reported at 0 s, 1 s and PROGRESS_EVERY_S later
        show(0, 500, "queued, no live worker on queue cpu")
        now[0] += 1
        show(10, 500, "running")
        now[0] += output.PROGRESS_EVERY_S
        show(250, 500, "running")
    # Then the first report and the one a period after it are lines; the one between is not
    assert capsys.readouterr().out.splitlines() == [
        "job 4: 0/500 queued, no live worker on queue cpu",
        "job 4: 250/500 running",
    ]
