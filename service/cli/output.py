"""How the CLI prints: a fixed-width table or JSON, warnings, and progress while it waits."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import click

# Off a terminal (a log, CI), progress is a line this often instead of a bar.
PROGRESS_EVERY_S = 5.0
LONG_INT_DIGITS = 9


def print_json(data: Any) -> None:
    """Pretty JSON on stdout."""
    click.echo(json.dumps(data, indent=2, sort_keys=False))


def print_warnings(body: dict[str, Any]) -> None:
    """The API's `warnings` of a submission, one line each on stderr."""
    for warning in body.get("warnings", []):
        click.echo(f"warning: {warning}", err=True)


def fmt(value: Any) -> str:
    """A cell: floats in short scientific form, None as '-'."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def short(value: Any) -> str:
    """A cell as fmt writes it, with a long integer (a 19-digit seed) cut to its ends."""
    text = fmt(value)
    if isinstance(value, int) and len(text) > LONG_INT_DIGITS:
        return f"{text[:4]}..{text[-3:]}"
    return text


def print_table(
    rows: Sequence[dict[str, Any]], columns: Sequence[str], cell: Callable[[Any], str] = fmt
) -> None:
    """A plain table with a header row."""
    cells = [[cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    click.echo("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))


def shared_columns(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> dict[str, Any]:
    """Column -> value, for each of `columns` that every one of two or more rows shares."""
    if len(rows) < 2:
        return {}
    first = rows[0]
    return {c: first.get(c) for c in columns if all(row.get(c) == first.get(c) for row in rows)}


def _note(note: str | None) -> str | None:
    return note


@contextmanager
def progress(label: str, length: int) -> Iterator[Callable[[int, int, str], None]]:
    """Report (done, of, note): a bar on a terminal, else a line every PROGRESS_EVERY_S."""
    if sys.stdout.isatty():
        with click.progressbar(length=max(1, length), label=label, item_show_func=_note) as bar:

            def draw(done: int, of: int, note: str) -> None:
                bar.length = max(1, of)
                bar.update(done - bar.pos, note)

            yield draw
        return
    printed_at = -float("inf")
    last = ""

    def line(done: int, of: int, note: str) -> None:
        nonlocal printed_at, last
        text = f"{label}: {done}/{of}" + (f" {note}" if note else "")
        if text != last and time.monotonic() - printed_at >= PROGRESS_EVERY_S:
            click.echo(text)
            printed_at, last = time.monotonic(), text

    yield line
