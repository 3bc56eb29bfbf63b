"""A local server child process: launched in its own session, awaited, stopped and killed."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self


def log_tail(path: Path, lines: int = 20) -> str:
    """Return the last lines of a log file, or a placeholder if unreadable."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "<no log>"


class LocalServer:
    """A server child process leading its own process group, logging to `log_path`.

    Subclasses name the `program`, the `stop_signal` it shuts down cleanly on, build the
    command line, and say in `_answers` whether it takes clients yet.
    """

    program: ClassVar[str]
    stop_signal: ClassVar[signal.Signals]
    _proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        """Where the server's stdout and stderr go."""
        raise NotImplementedError

    @property
    def pid(self) -> int | None:
        """PID of the running server, or None."""
        return self._proc.pid if self._proc is not None and self.is_running() else None

    def is_running(self) -> bool:
        """Whether the server process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def _answers(self) -> bool:
        """Whether the server takes clients now (False while it is still starting)."""
        raise NotImplementedError

    def _spawn(self, command: list[str], **popen: Any) -> subprocess.Popen[bytes]:
        """Launch `command` in its own session, its output appended to the log."""
        with open(self.log_path, "ab") as log:
            # Own session: a Ctrl-C aimed at the caller's terminal must not also hit the
            # server, and kill() can SIGKILL it and its children as one group, like a crash.
            self._proc = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **popen
            )
        return self._proc

    def _wait_ready(self, timeout: float, not_ready: str) -> None:
        """Poll `_answers` until it holds, the process dies, or timeout passes (then kill it).

        `not_ready` opens the timeout's message, e.g. "postgres on port 5432 not ready".
        """
        deadline = time.monotonic() + timeout
        while True:
            if self._proc is None or self._proc.poll() is not None:
                code = self._proc.returncode if self._proc else None
                raise RuntimeError(
                    f"{self.program} exited with {code} during startup; log "
                    f"{self.log_path}:\n{log_tail(self.log_path)}"
                )
            if self._answers():
                return
            if time.monotonic() >= deadline:
                self.kill()
                raise RuntimeError(
                    f"{not_ready} after {timeout}s; log {self.log_path}:\n{log_tail(self.log_path)}"
                )
            time.sleep(0.05)

    def stop(self, timeout: float = 10) -> None:
        """Send `stop_signal` (a clean shutdown), escalating to SIGKILL on timeout."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(self.stop_signal)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL the server and every child it forked at once (a simulated crash)."""
        proc = self._proc
        if proc is None:
            return
        # Only while the leader is unreaped: its pid pins the group id, so
        # killpg cannot hit an unrelated group that recycled the number.
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def start(self, timeout: float = 10) -> Self:
        """Launch the server and wait until it takes clients."""
        raise NotImplementedError

    def cleanup(self) -> None:
        """Stop the server and remove the files it made for itself (none unless overridden)."""
        self.stop()

    def __enter__(self) -> Self:
        """Start the server unless it already runs."""
        return self if self.is_running() else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the server and remove the files it made for itself."""
        self.cleanup()
