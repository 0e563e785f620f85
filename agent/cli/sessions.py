"""`vitron sessions …`: list, show, delete and migrate the remembered sessions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.tree import Tree

from .console import clear_errors, out

sessions_app = typer.Typer(help="Remembered sessions: list, show, delete; migrate the database.",
                           no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


def _memory():
    from memory import SessionMemory

    return SessionMemory.from_settings()


def _any_owner():
    """Every owner's sessions: these commands are the operator's, on the machine that holds the database."""
    from memory.sessions import ANY_OWNER

    return ANY_OWNER


@sessions_app.command("list")
@clear_errors
def list_cmd(
    owner: Annotated[str | None, typer.Option(help="Only this owner's sessions.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, most recent first.")] = 50,
    as_json: JsonFlag = False,
) -> None:
    """The sessions, most recently active first: every owner's (the command is the operator's, on the machine that
    holds the database), or one owner's."""
    with _memory() as memory:
        sessions = memory.list_sessions(owner=_any_owner() if owner is None else owner, limit=limit)
    if as_json:
        print(json.dumps({"sessions": [s.to_dict() for s in sessions]}))
        return
    table = Table("id", "title", "owner", "turns", "artifacts", "updated")
    for s in sessions:
        table.add_row(s.id, s.title, s.owner or "", str(s.turns), str(s.artifacts),
                      s.updated_at.strftime("%Y-%m-%d %H:%M:%S"))
    out.print(table)


@sessions_app.command("show")
@clear_errors
def show_cmd(
    session: Annotated[str, typer.Argument(help="Session id (or a unique prefix of at least 4 characters).")],
    as_json: JsonFlag = False,
) -> None:
    """A session's turns, steps and artifact table with lineage."""
    with _memory() as memory:
        session_id = memory.resolve_session_id(session, owner=_any_owner())
        info = memory.get_session(session_id)
        turns = memory.turns(session_id)
        steps = memory.steps(session_id)
        table = memory.artifact_table(session_id)
        paths = {a.alias: str(memory.store.path(a.ref)) if memory.store.exists(a.ref) else None for a in table}
    if as_json:
        artifacts = [{**a.to_dict(), "path": paths[a.alias]} for a in table]
        print(json.dumps({"session": info.to_dict(), "turns": [t.to_dict() for t in turns],
                          "steps": [s.to_dict() for s in steps], "artifacts": artifacts}))
        return
    out.print(f"[bold]{info.title or '(untitled)'}[/bold]  {info.id}  owner {info.owner or '-'}  "
              f"created {info.created_at:%Y-%m-%d %H:%M}")
    for turn in turns:
        out.print(turn.describe(), highlight=False)
    if steps:
        step_table = Table("step", "module", "command", "status", "backend", "seconds", title="steps")
        for st in steps:
            seconds = f"{st.duration_s:.2f}" if st.duration_s is not None else ""
            status = st.status + (f": {st.error.get('problem')}" if st.error else "")
            step_table.add_row(str(st.id), st.module, st.command, status, st.backend or "", seconds)
        out.print(step_table)
    if table:
        by_alias = {a.alias: a for a in table}
        tree = Tree("artifacts (what made each)")
        for entry in table:
            _lineage_branch(tree, entry, by_alias, paths, depth=0)
        out.print(tree)


def _lineage_branch(parent, entry, by_alias, paths, depth: int) -> None:
    branch = parent.add(f"{entry.describe()}" + (f"  [dim]{paths[entry.alias]}[/dim]" if depth == 0 else ""),
                        highlight=False)
    if depth < 8:  # deep chains print their first links; `--json` has them all
        for alias in entry.parents:
            if alias in by_alias:
                _lineage_branch(branch, by_alias[alias], by_alias, paths, depth + 1)


@sessions_app.command("export")
@clear_errors
def export_cmd(
    session: Annotated[str, typer.Argument(help="Session id (or a unique prefix of at least 4 characters).")],
    turn: Annotated[int | None, typer.Option(help="Only this turn's steps (its number in `sessions show`).")] = None,
    out_file: Annotated[Path | None, typer.Option("--out", "-o", help="Write the workflow here (.yaml or .json); "
                                                                      "default: print YAML.")] = None,
) -> None:
    """Write the workflow that does again what the session's steps did; its inputs are the uploads they read
    (the session's own files by default), so `vitron workflow run` on it gives the same files."""
    import yaml

    from workflows import export_session

    with _memory() as memory:
        document = export_session(memory, memory.resolve_session_id(session, owner=_any_owner()), turn=turn)
    as_json = out_file is not None and out_file.suffix == ".json"
    text = json.dumps(document, indent=2) if as_json else yaml.safe_dump(document, sort_keys=False)
    if out_file is None:
        print(text, end="")
        return
    out_file.write_text(text)
    out.print(f"wrote {out_file}: {len(document['steps'])} steps, inputs {', '.join(document['inputs']) or 'none'}",
              highlight=False)


@sessions_app.command("delete")
@clear_errors
def delete_cmd(
    session: Annotated[str, typer.Argument(help="Session id (or a unique prefix of at least 4 characters).")],
    as_json: JsonFlag = False,
) -> None:
    """Delete a session: its rows, its checkpoints and the stored files no other session uses."""
    with _memory() as memory:
        deleted = memory.delete_session(memory.resolve_session_id(session, owner=_any_owner()))
    summary = {"session": deleted.session_id, "turns": deleted.turns, "steps": deleted.steps,
               "artifacts": deleted.artifacts, "files_removed": len(deleted.blobs_removed),
               "files_kept": len(deleted.blobs_kept)}
    if as_json:
        print(json.dumps(summary))
        return
    out.print(f"deleted session {deleted.session_id}: {deleted.turns} turns, {deleted.steps} steps, "
              f"{deleted.artifacts} artifacts, {len(deleted.blobs_removed)} files removed from the store"
              + (f" ({len(deleted.blobs_kept)} kept: put moments ago, they may be on their way into another "
                 "session; VITRON_STORE_DELETE_GRACE_S)" if deleted.blobs_kept else ""))


@sessions_app.command("migrate")
@clear_errors
def migrate_cmd(as_json: JsonFlag = False) -> None:
    """Bring the session database up to this version's schema (Alembic migrations)."""
    from memory import Database
    from memory.database import head_revision
    from schemas import VitronSettings

    settings = VitronSettings()
    with Database(settings.database) as db:
        before = db.revision()
        db.upgrade()
        after = db.revision()
    if as_json:
        print(json.dumps({"database": db.display_url, "from": before, "to": after, "head": head_revision()}))
        return
    out.print(f"{db.display_url}: {before or 'empty'} → {after}")
