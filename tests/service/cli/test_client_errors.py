"""The real `trainq` command when the server is down, stalls, refuses the token or fails: one
line saying what to do, exit code 1, never a traceback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from service.ops.redis_server import free_port
from tests.conftest import DatabaseFactory
from tests.support.live_server import serving
from tests.support.processes import ROOT
from tests.support.scoped_tokens import SECRETS, make_scoped_app

VERBS = (["submit", "--stage", "nn"], ["jobs"], ["health"])


def trainq(url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user does, in its own process."""
    environ = {k: v for k, v in os.environ.items() if k not in ("TRAINQ_TOKEN", "TRAINQ_TIMEOUT")}
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        cwd=ROOT,
        env={**environ, "TRAINQ_URL": url, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The error line, after checking it is the only output and the exit code is 1."""
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize("verb", VERBS, ids=lambda v: v[0])
def test_a_closed_port_is_one_line(verb: list[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    line = one_line(trainq(url, *verb))
    assert line == f"Error: cannot reach {url}: is `make run` running? (set TRAINQ_URL)"


@pytest.fixture
def stalling_url() -> Iterator[str]:
    """A server that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()


def test_a_server_that_stalls_is_one_line(stalling_url: str) -> None:
    line = one_line(trainq(stalling_url, "jobs", TRAINQ_TIMEOUT="1"))
    assert line.startswith(f"Error: {stalling_url} did not answer within 1 s")
    assert "TRAINQ_TIMEOUT" in line


class Failing(BaseHTTPRequestHandler):
    """Answers every request with a 500 and the API's error body."""

    def do_GET(self) -> None:
        body = json.dumps({"error": {"code": "internal", "message": "boom", "field": None}})
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *_args: object) -> None:
        """Quiet."""


def test_a_server_error_is_one_line() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Failing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        line = one_line(trainq(url, "jobs"))
    finally:
        server.shutdown()
        server.server_close()
    assert (
        line == f"Error: HTTP 500: boom: {url} failed on its side (see its log, var/logs/api.log)"
    )


@pytest.fixture
def guarded_url(databases: DatabaseFactory, broker_url: str) -> Iterator[str]:
    """The real API with tokens on, over HTTP."""
    app = make_scoped_app(databases.create("sqlite"), broker_url)
    with serving(app) as url:
        yield url
    app.extensions["trainq.engine"].dispose()


def test_tokens_refused_say_which_token_and_scope(guarded_url: str) -> None:
    # Without a token: the server wants one, and TRAINQ_TOKEN is where it goes
    line = one_line(trainq(guarded_url, "jobs"))
    assert line.startswith("Error: HTTP 401: ")
    assert line.endswith("the server wants a token and TRAINQ_TOKEN is not set")
    # A token the server does not know
    line = one_line(trainq(guarded_url, "jobs", TRAINQ_TOKEN="not-a-token"))
    assert line.endswith("the token in TRAINQ_TOKEN is not one the server knows")
    # A read token that submits: the scope it needs and the one it has, from the API's body
    line = one_line(trainq(guarded_url, "submit", "--stage", "nn", TRAINQ_TOKEN=SECRETS["viewer"]))
    assert line.startswith(
        "Error: HTTP 403: this needs a token of scope 'submit'; viewer is 'read'"
    )
    assert "TRAINQ_TOKEN" in line
    assert "trainq token new" in line
    # and the same token may read
    listed = trainq(guarded_url, "jobs", TRAINQ_TOKEN=SECRETS["viewer"])
    assert listed.returncode == 0, listed.stderr
