"""Operations verbs: `trainq token new` (a scoped API token) and `trainq flower` (Celery Flower)."""

from __future__ import annotations

import importlib.util
import os
import sys

import click

from service.tokens import SCOPES, TokenConfigError, new_token


@click.group()
def token() -> None:
    """API tokens with a name and a scope; only their SHA-256 is configured."""


@token.command("new")
@click.argument("name")
@click.option("--scope", type=click.Choice(SCOPES), default="submit", show_default=True)
def token_new(name: str, scope: str) -> None:
    """Print a fresh secret (give it to NAME) and the entry to add to TRAINQ_API_TOKENS."""
    try:
        secret, entry = new_token(name, scope)
    except TokenConfigError as error:
        raise click.BadParameter(str(error), param_hint="NAME") from None
    click.echo(f"token:  {secret}")
    click.echo(f"entry:  {entry}")


def flower_command(address: str, port: int, extra: tuple[str, ...]) -> list[str]:
    """The Celery Flower command line `trainq flower` runs."""
    return [
        sys.executable, "-m", "celery", "-A", "worker.celery_app", "flower",
        f"--address={address}", f"--port={port}", *extra,
    ]  # fmt: skip


@click.command(context_settings={"ignore_unknown_options": True})
@click.option("--address", default="127.0.0.1", show_default=True)
@click.option("--port", default=5555, show_default=True, type=int)
@click.argument("extra", nargs=-1, type=click.UNPROCESSED)
def flower(address: str, port: int, extra: tuple[str, ...]) -> None:
    """Celery Flower on trainq's broker (the `flower` extra); EXTRA goes to Flower as is,
    e.g. --basic-auth=user:password."""
    if importlib.util.find_spec("flower") is None:
        raise click.ClickException(
            "Flower is not installed: pip install 'trainq[flower]' (or make install)"
        )
    argv = flower_command(address, port, extra)
    os.execv(sys.executable, argv)


COMMANDS = [token, flower]
