"""The `trainq` command: server verbs (up, api, worker, db) and HTTP client verbs."""

from __future__ import annotations

import click

from service.cli import client_verbs, ops_verbs, result_verbs, server_verbs, sweep_verbs


@click.group()
@click.version_option(package_name="trainq")
def main() -> None:
    """trainq: run PyTorch training experiments as jobs and compare them."""


for module in (server_verbs, client_verbs, sweep_verbs, result_verbs, ops_verbs):
    for command in module.COMMANDS:
        main.add_command(command)
