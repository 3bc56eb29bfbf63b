"""The README's quick start as a newcomer runs it: its `sh` blocks in order, on a live stack."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Stack
from tests.e2e.test_search import Controllers
from tests.support.processes import ROOT

# `make run` starts the stack; here the `stack` fixture is that stack.
STARTS_THE_STACK = "make run"
# What a failing CLI prints: click's "Error: ...", a traceback, an API error body.
ERROR_OUTPUT = re.compile(
    r'^(error:|traceback \(most recent call last\))|"error": \{', re.IGNORECASE | re.MULTILINE
)
COMMAND_TIMEOUT = 300


def quick_start_commands(readme: str) -> list[str]:
    """The commands of the README's ```sh blocks in order, `make run` left out."""
    commands = []
    for block in re.findall(r"^```sh\n(.*?)^```", readme, flags=re.MULTILINE | re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            command = line.strip()
            if command and not command.startswith(("#", STARTS_THE_STACK)):
                commands.append(command)
    return commands


def test_commands_are_the_sh_blocks_without_make_run() -> None:
    readme = (
        "intro\n```sh\nmake run  # starts it\n```\n"
        "```yaml\nname: x\n```\n"
        "```sh\na 1\n\nb \\\n  2\n```\n"
    )
    assert quick_start_commands(readme) == ["a 1", "b    2"]


@pytest.fixture
def newcomer_dir(tmp_path: Path) -> Path:
    """A folder that looks like the checkout to the quick start (`.venv/bin/trainq`, `examples/`),
    so the files it writes land in a temporary folder, not the tree."""
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    assert (Path(sys.prefix) / "bin" / "trainq").exists(), "the trainq CLI is not installed"
    (checkout / ".venv").symlink_to(sys.prefix)
    (checkout / "examples").symlink_to(ROOT / "examples")
    return checkout


def test_the_readme_quick_start_runs(
    stack: Stack, live_url: str, newcomer_dir: Path, tmp_path: Path
) -> None:
    commands = quick_start_commands((ROOT / "README.md").read_text())
    assert any("sweep examples/search.yaml" in command for command in commands), commands
    # `make run` runs a controller for search sweeps; the stack fixture does not.
    controllers = Controllers(stack, tmp_path)
    controllers.start("readme")
    env = {k: v for k, v in os.environ.items() if k != "TRAINQ_TOKEN"}
    env["TRAINQ_URL"] = live_url
    try:
        for command in commands:
            result = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", command],
                cwd=newcomer_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=COMMAND_TIMEOUT,
            )
            output = result.stdout + result.stderr
            print(f"$ {command}\n{output}")  # the whole session, shown when a command fails
            assert result.returncode == 0, f"{command!r} exited {result.returncode}:\n{output}"
            assert not ERROR_OUTPUT.search(output), f"{command!r} printed an error:\n{output}"
    finally:
        controllers.stop_all()
