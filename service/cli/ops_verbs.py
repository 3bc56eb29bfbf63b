"""Operations verbs: `trainq token new` (a scoped API token) and `trainq flower`."""

from __future__ import annotations

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


COMMANDS = [token]
