"""A local server's lifecycle on a stand-in child: startup failures name the log, stop escalates."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Self

import pytest

from service.ops.local_server import LocalServer, log_tail


class Child(LocalServer):
    """A Python child that runs `code`, answering once its marker file exists."""

    program = "child"
    stop_signal = signal.SIGTERM

    def __init__(self, tmp_path: Path, code: str) -> None:
        self.dir, self.code = tmp_path, code

    @property
    def log_path(self) -> Path:
        """The child's output."""
        return self.dir / "child.log"

    def _answers(self) -> bool:
        return (self.dir / "ready").exists()

    def start(self, timeout: float = 10) -> Self:
        """Run the child and wait for its marker."""
        self._spawn([sys.executable, "-c", self.code], cwd=self.dir)
        self._wait_ready(timeout, "child not ready")
        return self


def test_a_server_that_exits_during_startup_is_reported_with_its_log(tmp_path: Path) -> None:
    child = Child(tmp_path, "import sys; print('bad config'); sys.exit(3)")
    with pytest.raises(RuntimeError, match="child exited with 3 during startup") as raised:
        child.start()
    assert "bad config" in str(raised.value)


def test_a_server_never_ready_is_killed_at_the_timeout(tmp_path: Path) -> None:
    child = Child(tmp_path, "import time; time.sleep(60)")
    with pytest.raises(RuntimeError, match=r"child not ready after 0.5s"):
        child.start(timeout=0.5)
    assert not child.is_running()
    assert child.pid is None


def test_stop_escalates_to_sigkill_when_the_stop_signal_is_ignored(tmp_path: Path) -> None:
    ignores = (
        "import pathlib, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
        " pathlib.Path('ready').touch(); time.sleep(60)"
    )
    with Child(tmp_path, ignores) as child:
        assert child.is_running()
        child.stop(timeout=0.5)
        assert not child.is_running()
        assert child._proc is not None
        assert child._proc.returncode == -signal.SIGKILL


def test_log_tail_keeps_the_last_lines_and_says_when_there_is_no_log(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text("".join(f"line {i}\n" for i in range(30)))
    assert log_tail(log, 2) == "line 28\nline 29"
    assert log_tail(tmp_path / "missing.log") == "<no log>"
