"""`vitron store verify`: check every object of the artifact store against its SHA-256, and repair."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from .console import clear_errors, err, out, progress_bar

store_app = typer.Typer(help="The artifact store: check its objects.", no_args_is_help=True)


@store_app.command("verify")
@clear_errors
def verify_cmd(
    repair: Annotated[bool, typer.Option("--repair", help="Remove the damaged objects: each comes back when its "
                                                          "content is put again (the same file uploaded again, "
                                                          "the step that made it run again).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Hash every object in the artifact store against the digest it is stored under. Exit 1 while damaged objects
    remain (as `vitron jobs check` does when a check fails; 2 is for a command that could not run)."""
    from memory import ArtifactStore
    from schemas import VitronSettings

    settings = VitronSettings()
    store = ArtifactStore.from_settings(settings)
    with progress_bar(enabled=not as_json) as progress:
        report = store.verify(repair=repair, progress=progress)
    users = _sessions_using(settings, store, report.damaged) if report.damaged else {}
    if as_json:
        print(json.dumps({"store": str(store.root), **report.to_dict(), "sessions": users}))
    else:
        out.print(f"{store.root}: {report.checked} checked, {report.ok} ok, {len(report.damaged)} damaged, "
                  f"{len(report.removed)} removed", highlight=False, soft_wrap=True)
        for sha in report.damaged:
            state = "removed" if sha in report.removed else "damaged"
            used = users.get(sha) if users is not None else None
            by = f" (sessions {', '.join(s[:8] for s in used)})" if used else ""
            out.print(f"  {state} {sha[:12]}…{by}", highlight=False, soft_wrap=True)
        if report.removed:
            out.print("removed objects come back when their content is put again: upload the same file again, or "
                      "run the step that made it again", highlight=False, soft_wrap=True)
        if report.remaining:
            err.print("damaged objects remain: `vitron store verify --repair` removes them", highlight=False,
                      soft_wrap=True)
    if report.remaining:
        raise typer.Exit(1)


def _sessions_using(settings, store, shas) -> dict[str, list[str]] | None:
    """Which sessions hold each damaged content; None when the session database cannot say (the check stands)."""
    from memory import Database, SessionMemory
    from schemas import VitronError

    try:
        with SessionMemory(Database.from_settings(settings), store) as memory:
            return memory.sessions_using(shas)
    except VitronError as exc:
        err.print(f"which sessions use them is unknown: {exc.message}", style="dim", markup=False, highlight=False,
                  soft_wrap=True)
        return None
