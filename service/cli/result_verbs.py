"""CLI verbs placeholder: filled in by its issue."""

COMMANDS: list = []
