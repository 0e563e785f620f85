"""`vitron models`: which backend each module will use, from which weights, and whether they are on disk."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from .console import clear_errors, out


@clear_errors
def models_cmd(as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False) -> None:
    """Show each module's backend (embedded or from the models file), its weights and whether they are there."""
    from agent.service import model_rows

    path, rows = model_rows()
    if as_json:
        print(json.dumps({"models_file": path, "modules": rows}))
        return
    table = Table("code", "module", "backend", "weights", "ready", title=f"models file: {path}")
    for row in rows:
        weights = "\n".join(f"{role}: {w['path']}" + ("" if w["exists"] else " [red](missing)[/red]")
                            for role, w in row["weights"].items()) or f"[dim]{row['source']}[/dim]"
        ready = "[green]yes[/green]" if row["ready"] else f"[red]no[/red]: {row.get('problem', '')}"
        table.add_row(row["code"], row["module"], row["backend"] or "-", weights, ready)
    out.print(table)
