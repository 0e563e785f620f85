"""`vitron serve` and `vitron keys create|list|revoke`: the HTTP server and its API keys."""

from __future__ import annotations

import ipaddress
import json
from typing import Annotated

import typer
from rich.table import Table

from .console import clear_errors, err, fail, out

keys_app = typer.Typer(help="API keys of the HTTP server: each reaches its owner's threads and artifacts only.",
                       no_args_is_help=True)


def _keys():
    from memory import ApiKeys, Database

    database = Database.from_settings()
    return database, ApiKeys(database)


@keys_app.command("create")
@clear_errors
def create_cmd(owner: Annotated[str, typer.Option(help="Whose threads and artifacts the key reaches.")],
               label: Annotated[str, typer.Option(help="A note on what the key is for.")] = "",
               as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False) -> None:
    """Make a key; it is shown this once (only its hash is kept)."""
    database, keys = _keys()
    with database:
        record, key = keys.create(owner, label)
    if as_json:
        print(json.dumps({**record.to_dict(), "key": key}))
        return
    out.print(f"key {record.id} for {owner}: [bold]{key}[/bold]\n[dim]it is shown this once; send it as "
              "Authorization: Bearer <key>[/dim]", highlight=False)


@keys_app.command("list")
@clear_errors
def list_cmd(as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False) -> None:
    """The keys: id, owner, label, when made and revoked (never the keys themselves)."""
    database, keys = _keys()
    with database:
        rows = [k.to_dict() for k in keys.list()]
    if as_json:
        print(json.dumps({"keys": rows}))
        return
    table = Table("id", "owner", "label", "created", "revoked")
    for row in rows:
        table.add_row(row["id"], row["owner"], row["label"], row["created_at"][:19], (row["revoked_at"] or "")[:19])
    out.print(table)


@keys_app.command("revoke")
@clear_errors
def revoke_cmd(key_id: Annotated[str, typer.Argument(help="The key's id (`vitron keys list`).")]) -> None:
    """Revoke a key: it stops working at once."""
    database, keys = _keys()
    with database:
        record = keys.revoke(key_id)
    out.print(f"revoked key {record.id} of {record.owner}")


@clear_errors
def serve_cmd(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    public_url: Annotated[str | None, typer.Option(
        help="The server's address as clients see it, for its signed links (default: each request's own).")] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn's log level.")] = "info",
) -> None:
    """Serve the HTTP API: threads and runs with streamed events, artifacts by signed URL, tools, workflows, and an
    OpenAI-compatible /v1/chat/completions. Without API keys it listens on loopback only."""
    import uvicorn

    from agent.server import create_app
    from memory import ApiKeys, Database

    with Database.from_settings() as database:
        keyed = ApiKeys(database).any()
    if not keyed and not _loopback(host):
        fail(f"no API key is configured, so the server listens on loopback only, not {host}; make one with "
             "`vitron keys create --owner NAME`, or use --host 127.0.0.1", 2)
    err.print(f"[dim]vitron serve on http://{host}:{port} — "
              + ("API keys required" if keyed else "no API keys configured: loopback only, no authentication")
              + "[/dim]", highlight=False)
    uvicorn.run(create_app(public_url=public_url), host=host, port=port, log_level=log_level)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
