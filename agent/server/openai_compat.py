"""An OpenAI-compatible endpoint: `GET /v1/models` and `POST /v1/chat/completions`, streamed or not, so any OpenAI
client (and chat frontends built on one) can talk to the agent.

Images come in as `image_url` parts (a data URL; an http(s) URL only from the hosts `VITRON_FETCH_URLS` lists) and go
out as Markdown image links to signed URLs, mirrored in `message.images`. Stateless clients resend the conversation:
the links in earlier assistant messages are read back to their artifacts, so "now make it green" edits the previous
result. `X-Vitron-Thread` (a thread id) or the `user` field keeps the conversation in one persisted thread instead.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
import time
import uuid
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field
from sse_starlette.sse import EventSourceResponse

from schemas import ArtifactRef, InvalidInput

from .artifacts import TooLarge, store_upload
from .context import ServerContext, context, model_ids, owner
from .runs import RunFailed, TurnRequest, error_json

router = APIRouter(prefix="/v1")

FETCH_TIMEOUT_S = 15  # the whole fetch of an image from an allowed host, however slowly it trickles in

_LINK = re.compile(r"/files/([0-9a-f]{64})\.[a-z0-9]+\?exp=[0-9]+&sig=[0-9a-f]+")
_DATA_URL = re.compile(r"^data:(?P<type>[\w.+-]+/[\w.+-]+)?(?:;[^,]*)?;base64,(?P<data>.*)$", re.S)


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = "vitron-mini"
    messages: list[dict[str, Any]] = Field(min_length=1)
    stream: bool = False
    user: str | None = None


@router.get("/models")
def models(request: Request, owner_name: str | None = Depends(owner)) -> dict[str, Any]:
    created = int(time.time())
    return {"object": "list", "data": [{"id": name, "object": "model", "created": created, "owned_by": "vitron"}
                                       for name in model_ids(context(request).settings)]}


@router.post("/chat/completions", response_model=None)
async def chat_completions(request: Request, body: ChatRequest,
                           owner_name: str | None = Depends(owner)) -> Any:
    ctx = context(request)
    agent = await asyncio.to_thread(ctx.agent_for, body.model)
    thread_id, text, image = await _conversation(request, ctx, body, owner_name)
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"

    async def answer() -> tuple[str, list[dict[str, Any]]]:
        # A run like any other: one at a time on a thread (a second message waits its turn), recorded, cancellable.
        run = ctx.manager.start(thread_id, owner_name, TurnRequest(text=text, image=image), strategy="enqueue",
                                raw={"openai": body.model}, agent=agent, base_url=str(request.base_url))
        await run.wait()
        if run.reply is None:
            raise RunFailed(run.error or {"type": "InternalError"})
        return _answer(run.reply)

    if not body.stream:
        content, images = await answer()
        return {"id": completion_id, "object": "chat.completion", "created": int(time.time()), "model": body.model,
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": content, "images": images}}],
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
                "vitron": {"thread_id": thread_id}}

    async def chunks() -> Any:
        def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
            return json.dumps({"id": completion_id, "object": "chat.completion.chunk", "created": int(time.time()),
                               "model": body.model, "choices": [{"index": 0, "delta": delta,
                                                                 "finish_reason": finish}]})

        yield chunk({"role": "assistant", "content": ""})
        try:
            content, images = await answer()
        except Exception as exc:  # the status was sent: the error goes in the stream, as OpenAI's does
            error = error_json(exc)
            yield json.dumps({"error": {"message": error["message"], "type": error["type"],
                                        "param": error["field"], "code": error["type"]}})
        else:
            yield chunk({"content": content, "images": images})
            yield chunk({}, "stop")
        yield "[DONE]"

    return EventSourceResponse(chunks(), ping=15, headers={"X-Vitron-Thread": thread_id})


def _answer(reply: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """A run's reply as a message: its text, then a Markdown link per artifact made; images also as `images`."""
    lines, images = [reply["text"]], []
    for artifact in reply["artifacts"]:
        if artifact["kind"] == "image":
            lines.append(f"![{artifact['alias']}]({artifact['url']})")
            images.append({"type": "image_url", "image_url": {"url": artifact["url"]}})
        elif artifact["kind"] in ("video", "mask", "masks"):
            lines.append(f"[{artifact['alias']}]({artifact['url']})")
    return "\n\n".join(line for line in lines if line), images


async def _conversation(request: Request, ctx: ServerContext, body: ChatRequest,
                        owner_name: str | None) -> tuple[str, str, ArtifactRef | None]:
    """(the thread, the last user message's text, its image): a persisted thread, or a new one holding what the
    resent conversation made so far."""
    last = body.messages[-1]
    if last.get("role") != "user":
        raise InvalidInput("the last message must be the user's", field="messages", fix="end with a user message")
    text, images = await _parts(ctx, owner_name, last.get("content"), f"messages[{len(body.messages) - 1}]")
    memory = ctx.agent.memory
    header = request.headers.get("x-vitron-thread")
    if header:
        thread_id = ctx.thread(header, owner_name).id
    elif body.user:
        title = f"openai user {body.user}"[:500]
        found = [s for s in memory.list_sessions(owner=owner_name, limit=1000)
                 if s.title == title and s.owner == owner_name]
        thread_id = found[0].id if found else memory.create_session(title, owner=owner_name).id
    else:
        thread_id = memory.create_session("openai conversation", owner=owner_name).id
        for index, message in enumerate(body.messages[:-1]):
            await _replay(ctx, thread_id, owner_name, message, f"messages[{index}]")
    return thread_id, text or "", images[-1] if images else None


async def _replay(ctx: ServerContext, thread_id: str, owner_name: str | None, message: dict[str, Any],
                  where: str) -> None:
    """An earlier message of a resent conversation into the new thread: a user's images as uploads; the artifacts
    an assistant's links name (this owner's only), so later turns can build on them."""
    memory = ctx.agent.memory
    if message.get("role") == "user":
        text, images = await _parts(ctx, owner_name, message.get("content"), where)
        if images:
            memory.append_turn(thread_id, "user", text or "", attachments=images)
    elif message.get("role") == "assistant":
        content = message.get("content") or ""
        refs = [ref for sha in _LINK.findall(content if isinstance(content, str) else json.dumps(content))
                if (ref := ctx.runs.owned(owner_name, sha)) is not None]
        if refs:
            text = content if isinstance(content, str) else ""
            memory.append_turn(thread_id, "assistant", reply=_LINK.sub("", text), attachments=refs)


async def _parts(ctx: ServerContext, owner_name: str | None, content: Any, where: str) -> tuple[str, list[ArtifactRef]]:
    if isinstance(content, str):
        return content, []
    if not isinstance(content, list):
        raise InvalidInput("a message's content is text or a list of parts", field=f"{where}.content",
                           fix='send "content": "…" or [{"type": "text", …}, {"type": "image_url", …}]')
    texts, images = [], []
    for index, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            texts.append(str(part.get("text", "")))
        elif kind == "image_url":
            url = part.get("image_url")
            url = url.get("url") if isinstance(url, dict) else url
            images.append(await _image(ctx, owner_name, str(url or ""), f"{where}.content[{index}].image_url"))
        else:
            raise InvalidInput(f"unknown content part {kind!r}", field=f"{where}.content[{index}]",
                               fix="use text and image_url parts")
    return " ".join(t for t in texts if t), images


async def _image(ctx: ServerContext, owner_name: str | None, url: str, where: str) -> ArtifactRef:
    """An image part's artifact: a data URL's bytes, a link this server gave (the owner's own), or an allowed host's
    image."""
    if link := _LINK.search(url):
        return ctx.artifact(owner_name, link.group(1), where, "image")
    limit = ctx.settings.max_upload_bytes
    if match := _DATA_URL.match(url):
        data = match.group("data")
        if len(data) * 3 // 4 > limit:
            raise TooLarge(f"the image is over the limit of {limit} bytes", field=where,
                           fix="send a smaller image, or raise VITRON_MAX_UPLOAD_BYTES")
        try:
            raw = base64.b64decode(data, validate=False)
        except (binascii.Error, ValueError):
            raise InvalidInput("the data URL is not base64", field=where, fix="send data:image/png;base64,…") from None
    elif url.startswith(("http://", "https://")):
        raw = await _fetch(ctx, url, where)
    else:
        raise InvalidInput("an image_url is a data URL (or an http(s) URL from an allowed host)", field=where,
                           fix="send data:image/png;base64,…")
    try:
        ref = await asyncio.to_thread(store_upload, ctx, raw, "image")
    except InvalidInput as exc:
        raise type(exc)(exc.problem, field=where, fix=exc.fix) from None
    return ref


async def _fetch(ctx: ServerContext, url: str, where: str) -> bytes:
    """An image from the web, only from the hosts VITRON_FETCH_URLS lists, within the size limit and a timeout."""
    from urllib.parse import urlparse

    import httpx

    try:
        host = urlparse(url).hostname or ""
    except ValueError:
        raise InvalidInput("the image URL cannot be read", field=where, fix="check the URL") from None
    allowed = {h.strip().lower() for h in (ctx.settings.fetch_urls or "").split(",") if h.strip()}
    if host.lower() not in allowed:
        raise InvalidInput(f"fetching images from {host or url!r} is off", field=where,
                           fix="send the image as a data URL, or list the host in VITRON_FETCH_URLS")
    limit = ctx.settings.max_upload_bytes
    too_large = TooLarge(f"the image is over the limit of {limit} bytes", field=where, fix="send a smaller image")
    try:
        async with asyncio.timeout(FETCH_TIMEOUT_S), httpx.AsyncClient(timeout=10.0) as client, \
                client.stream("GET", url) as response:  # redirects are not followed: they could leave the host
            if response.status_code != 200:
                raise InvalidInput(f"fetching the image gave HTTP {response.status_code}", field=where,
                                   fix="check the URL")
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                raise too_large
            data = bytearray()
            async for chunk in response.aiter_bytes():
                data += chunk
                if len(data) > limit:
                    raise too_large
    except (httpx.HTTPError, TimeoutError, ValueError) as exc:
        if isinstance(exc, InvalidInput):
            raise
        raise InvalidInput("the image could not be fetched", field=where,
                           fix="check the URL, or send the image as a data URL") from None
    return bytes(data)
