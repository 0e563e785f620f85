"""The tools as an MCP server, on the official `mcp` SDK: `vitron mcp` over stdio (a desktop chat app or an IDE starts
it), and the same server under `/mcp` of `vitron serve` (streamable HTTP, behind the server's API keys).

A thin skin over `agent.toolkit`:

- tools: `upload` (a data URL in; its alias and thread out), one per module (named as `vitron tools` names them) and
  per saved workflow, and `run_turn` (a whole agent turn in plain English). Every call names its `thread` (a new one
  when left out, returned in the result); artifacts go in by alias (`@img1`, "latest").
- results: the text the calling model reads, a downscaled preview of each picture made (MCP image content) and a
  resource link to each artifact, `vitron://threads/{thread}/artifacts/{alias}`; `structuredContent` has the thread and
  the artifacts. A bad call is a tool error (`isError`) whose text names the field and the fix.
- resources: those links, readable (the artifact's own bytes: PNG, MP4, JSON), and listed for the latest threads.
- progress notifications while a call runs (when the client sends a progress token); a cancelled request stops its
  call's steps.
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread
import mcp_types as types
import numpy as np
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import MCPError

from memory import ArtifactEntry
from schemas import InvalidInput, VitronError

from .toolkit import CallResult, Toolkit, describe

log = logging.getLogger("vitron.mcp")

URI_TEMPLATE = "vitron://threads/{thread}/artifacts/{alias}"
_URI = re.compile(r"^vitron://threads/(?P<thread>[^/]+)/artifacts/@?(?P<alias>[A-Za-z_][A-Za-z0-9_]*)$")
PREVIEW_SIDE = 512
"""The longest side, in pixels, of a result's preview: what a chat shows inline; the full artifact is its resource."""
LISTED_THREADS = 10  # resources/list: the artifacts of the owner's latest threads (the template reaches them all)

INSTRUCTIONS = """\
Pixel-level vision tools: segment, edit, generate and animate images and videos, and answer questions about them.
Start with `upload` (an image or video as a data URL): it returns the picture's alias (@img1) and a thread id. Pass
that `thread` to every later call, and name pictures, masks and videos by alias (@img1, @mask1; "latest" is the newest
of its kind). Each result names what it made by alias, shows a preview, and links the full artifact as a resource.
`run_turn` asks the agent in plain English ("segment the cup and make it blue") on a thread."""

THREAD = {"type": "string", "description": "The thread (session) to work in: an id a call returned. Left out: a new "
                                           "thread, whose id the result gives."}

Owner = Callable[[ServerRequestContext[Any, Any]], str | None]
"""Whose threads a request reaches: None (stdio, a server without keys) or the owner of its API key."""


def build_server(toolkit: Callable[[], Toolkit], owner: Owner, *, max_upload_bytes: int | None = None) -> Server:
    """The MCP server over `toolkit()` (the serving agent's, made when it starts); `owner(ctx)` says whose threads a
    request reaches."""

    async def list_tools(ctx: ServerRequestContext, params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=_tools(toolkit()))

    async def call_tool(ctx: ServerRequestContext, params: types.CallToolRequestParams) -> types.CallToolResult:
        kit = toolkit()
        arguments = dict(params.arguments or {})
        progress = _Progress(ctx)
        try:
            thread = await anyio.to_thread.run_sync(kit.open_thread, arguments.pop("thread", None), owner(ctx))
            work = _work(kit, thread, params.name, arguments, progress.event, max_upload_bytes)
            try:
                result = await anyio.to_thread.run_sync(work, abandon_on_cancel=True)
            except anyio.get_cancelled_exc_class():
                with anyio.CancelScope(shield=True):  # the client gave up: its call's steps stop too
                    await anyio.to_thread.run_sync(kit.cancel, thread)
                raise
        except VitronError as exc:
            return _error(f"{params.name}: {exc.message}")
        return await anyio.to_thread.run_sync(_answer, kit, result)

    async def list_resources(ctx: ServerRequestContext, params: Any) -> types.ListResourcesResult:
        kit = toolkit()
        entries = await anyio.to_thread.run_sync(_latest_artifacts, kit, owner(ctx))
        return types.ListResourcesResult(resources=[
            types.Resource(uri=_uri(thread, e), name=f"@{e.alias}", description=describe(e),
                           mime_type=e.ref.media_type) for thread, e in entries])

    async def list_templates(ctx: ServerRequestContext, params: Any) -> types.ListResourceTemplatesResult:
        return types.ListResourceTemplatesResult(resource_templates=[types.ResourceTemplate(
            uri_template=URI_TEMPLATE, name="artifact",
            description="An artifact of a thread by its alias (@img1, @mask2, @video1): the image (PNG), mask (PNG), "
                        "video or per-frame masks (MP4), or boxes and text (JSON).")])

    async def read_resource(ctx: ServerRequestContext,
                            params: types.ReadResourceRequestParams) -> types.ReadResourceResult:
        uri = str(params.uri)
        found = _URI.match(uri)
        if found is None:
            raise MCPError(code=types.INVALID_PARAMS, message=f"not an artifact's URI: {uri[:80]!r} (they read "
                                                               f"{URI_TEMPLATE})")
        kit = toolkit()
        try:
            thread = await anyio.to_thread.run_sync(kit.open_thread, found["thread"], owner(ctx))
            entry = await anyio.to_thread.run_sync(kit.artifact, thread, found["alias"])
            data = await anyio.to_thread.run_sync(kit.memory.store.get_bytes, entry.ref)
        except VitronError as exc:
            raise MCPError(code=types.INVALID_PARAMS, message=exc.message) from None
        if entry.ref.media_type == "application/json":
            return types.ReadResourceResult(contents=[types.TextResourceContents(
                uri=uri, mime_type="application/json", text=data.decode())])
        return types.ReadResourceResult(contents=[types.BlobResourceContents(
            uri=uri, mime_type=entry.ref.media_type, blob=base64.b64encode(data).decode("ascii"))])

    return Server("vitron", version="1", instructions=INSTRUCTIONS, on_list_tools=list_tools,
                  on_call_tool=call_tool, on_list_resources=list_resources,
                  on_list_resource_templates=list_templates, on_read_resource=read_resource)


# -- tools -----------------------------------------------------------------------------------------------------


def _tools(kit: Toolkit) -> list[types.Tool]:
    tools = [types.Tool(
        name="upload", description="Upload an image, a mask or a video (a data URL such as data:image/png;base64,…, "
                                   "or the base64 alone). Returns its alias (@img1) and the thread, for later calls.",
        input_schema={"type": "object", "additionalProperties": False, "required": ["data"], "properties": {
            "data": {"type": "string", "description": "The file as a data URL, or its base64."},
            "kind": {"enum": ["image", "mask", "video"], "description": "What it is; default: what its bytes say "
                                                                        "(an image or a video)."},
            "thread": THREAD}})]
    for spec in kit.specs().values():
        schema = spec.input_schema()
        schema["properties"] = {**schema.get("properties", {}), "thread": THREAD}
        schema.pop("title", None)
        tools.append(types.Tool(name=spec.name, description=spec.description, input_schema=schema))
    tools.append(types.Tool(
        name="run_turn", description="A whole turn of the vision agent in plain English on a thread (\"segment the "
                                     "cup and make it blue\", \"now blur the background\"): it plans the steps, runs "
                                     "them on the thread's pictures and answers; what it made comes back by alias.",
        input_schema={"type": "object", "additionalProperties": False, "properties": {
            "text": {"type": "string", "description": "What to do, in plain words."},
            "approve": {"type": "boolean", "description": "Answers a turn waiting for approval of heavy steps "
                                                          "(then leave text out): true runs them, false skips them."},
            "thread": THREAD}}))
    return tools


def _work(kit: Toolkit, thread: str, name: str, arguments: dict[str, Any], on_event: Callable[[dict], None],
          max_upload_bytes: int | None) -> Callable[[], CallResult]:
    def work() -> CallResult:
        if name == "upload":
            return _upload(kit, thread, arguments, max_upload_bytes)
        if name == "run_turn":
            unknown = sorted(set(arguments) - {"text", "approve"})
            text, approve = arguments.get("text"), arguments.get("approve")
            if unknown or (text is None) == (approve is None) or not isinstance(text or "", str):
                raise InvalidInput("run_turn takes text, or approve to answer an approval pause", field="text",
                                   fix='send {"text": "segment the cup"} (and the thread)')
            return kit.run_turn(thread, text, approve=approve, on_event=on_event)
        return kit.call(thread, name, arguments, on_event=on_event)

    return work


def _upload(kit: Toolkit, thread: str, arguments: dict[str, Any], max_bytes: int | None) -> CallResult:
    """A data URL's file stored as an upload does over HTTP: sniffed, never trusted by its media type, its size and
    pixels within the server's limits."""
    from .server.artifacts import store_upload, too_large

    data, kind = arguments.get("data"), arguments.get("kind")
    extra = sorted(set(arguments) - {"data", "kind"})
    if extra or not isinstance(data, str) or kind not in (None, "image", "mask", "video"):
        raise InvalidInput(f"upload takes data and kind, not {', '.join(extra)}" if extra else
                           "data must be a data URL (data:image/png;base64,…) or base64 text, and kind image, mask or "
                           "video", field="data" if not extra else extra[0],
                           fix='send {"data": "data:image/png;base64,…"}')
    settings = kit.agent.settings
    limit = max_bytes or settings.max_upload_bytes
    encoded = data.partition(",")[2] if data.startswith("data:") else data
    if len(encoded) > limit * 4 // 3 + 4:
        raise too_large(f"the upload is about {len(encoded) * 3 // 4} bytes", limit, field="data")
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("data is not base64", field="data",
                           fix="send the file as a data URL: data:image/png;base64,…") from None
    if not raw:
        raise InvalidInput("data is empty", field="data", fix="send an image or a video")
    ref = store_upload(SimpleNamespace(settings=settings, store=kit.memory.store), raw, kind)
    return kit.upload(thread, ref, kind=ref.kind)


class _Progress:
    """A call's turn events as MCP progress notifications: steps done plus the running step's fraction (it only
    grows), with the step's message. Sent from the call's worker thread into the request's event loop."""

    def __init__(self, ctx: ServerRequestContext) -> None:
        self.ctx = ctx
        self.done = 0
        self.last = 0.0

    def event(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind in ("step_finished", "step_failed", "step_skipped"):
            self.done += 1
            self.send(float(self.done), f"{event.get('module')}: {kind.removeprefix('step_')}")
        elif kind == "step_started":
            self.send(float(self.done), f"{event.get('module')}: started")
        elif kind == "progress":
            self.send(self.done + min(0.99, max(0.0, float(event.get("fraction") or 0.0))),
                      str(event.get("message") or ""))

    def send(self, value: float, message: str) -> None:
        if value < self.last:
            return
        self.last = value
        try:
            anyio.from_thread.run(self.ctx.session.report_progress, value, None, message)
        except Exception:  # the request ended, or its client went away: the call goes on without reports
            log.debug("a progress report could not be sent", exc_info=True)


# -- results ---------------------------------------------------------------------------------------------------


def _answer(kit: Toolkit, result: CallResult) -> types.CallToolResult:
    content: list[Any] = [types.TextContent(type="text", text=f"{result.text}\n(thread {result.thread})")]
    artifacts = []
    for entry in result.made:
        uri = _uri(result.thread, entry)
        preview = _preview(kit, entry) if entry.made_by != "upload" else None  # the client has its own upload
        if preview is not None:
            content.append(types.ImageContent(type="image", data=preview, mime_type="image/png"))
        content.append(types.ResourceLink(type="resource_link", uri=uri, name=f"@{entry.alias}",
                                          description=describe(entry), mime_type=entry.ref.media_type))
        artifacts.append({**entry.to_dict(), "uri": uri})
    structured = {"thread": result.thread, "ok": result.ok, "artifacts": artifacts,
                  **({"values": result.values} if result.values else {}),
                  **({"error": result.error.to_dict()} if result.error is not None else {})}
    return types.CallToolResult(content=content, structured_content=structured, is_error=not result.ok)


def _error(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=True)


def _uri(thread: str, entry: ArtifactEntry) -> str:
    return URI_TEMPLATE.format(thread=thread, alias=entry.alias)


def _preview(kit: Toolkit, entry: ArtifactEntry) -> str | None:
    """A PNG of the picture (a video's or per-frame masks' first frame), its longest side at most `PREVIEW_SIDE`, as
    base64; None for what is no picture (boxes, text) or cannot be read."""
    from PIL import Image

    store, ref = kit.memory.store, entry.ref
    try:
        if ref.kind == "image":
            pixels = store.get_image(ref)
        elif ref.kind == "mask":
            pixels = store.get_mask(ref).astype(np.uint8) * 255
        elif ref.kind in ("video", "masks"):
            pixels = next(iter(store.iter_frames(ref, 0, 1)), None)
        else:
            return None
    except VitronError:
        return None
    if pixels is None:
        return None
    image = Image.fromarray(pixels)
    scale = PREVIEW_SIDE / max(image.size)
    if scale < 1:
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _latest_artifacts(kit: Toolkit, owner: str | None) -> list[tuple[str, ArtifactEntry]]:
    found = []
    for info in kit.memory.list_sessions(owner=owner, limit=LISTED_THREADS):
        found += [(info.id, entry) for entry in kit.artifacts(info.id)]
    return found


# -- transports ------------------------------------------------------------------------------------------------


def run_stdio(settings: Any = None) -> None:
    """Serve over stdin and stdout until the client closes them (`vitron mcp`): the local user's threads."""
    from .api import VitronAgent

    async def serve() -> None:
        from mcp.server.stdio import stdio_server

        with VitronAgent.from_settings(settings) as agent:
            server = build_server(lambda: Toolkit.of(agent), lambda ctx: None)
            async with stdio_server() as (read, write):
                await server.run(read, write, server.create_initialization_options())

    anyio.run(serve)


class HttpMount:
    """The server under a path of the HTTP app (`vitron serve`): streamable HTTP, each request checked against the
    app's API keys first (the threads it reaches are its key owner's). `running()` goes in the app's lifespan."""

    def __init__(self, context: Callable[[], Any], max_body_bytes: int) -> None:
        from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

        self._context = context  # the app's ServerContext, made when it starts

        def owner(ctx: ServerRequestContext) -> str | None:
            return self._context().owner_of(ctx.request) if ctx.request is not None else None

        server = build_server(lambda: Toolkit.of(self._context().agent), owner)
        self.manager = StreamableHTTPSessionManager(app=server, max_request_body_size=max_body_bytes)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        async with self.manager.run():
            yield

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        from starlette.requests import Request
        from starlette.responses import JSONResponse

        from .server.context import Unauthorized

        try:
            self._context().owner_of(Request(scope))
        except Unauthorized as exc:
            body = {"error": {"type": "Unauthorized", "field": "Authorization", "problem": str(exc),
                              "fix": "send a key from `vitron keys create`", "message": str(exc)}}
            response = JSONResponse(body, status_code=401, headers={"WWW-Authenticate": "Bearer"})
            return await response(scope, receive, send)
        await self.manager.handle_request(scope, receive, send)


__all__ = ["INSTRUCTIONS", "PREVIEW_SIDE", "URI_TEMPLATE", "HttpMount", "build_server", "run_stdio"]
