"""Artifacts over HTTP: uploads, checked before anything is decoded or stored (a byte limit, a pixel limit read
from the header, the content sniffed, never trusted by its name), and downloads by signed URL (Range answered)."""

from __future__ import annotations

import asyncio
import io
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, Response

from memory.inputs import TooLarge
from schemas import MEDIA_TYPES, ArtifactNotFound, ArtifactRef, CorruptArtifact, InvalidInput, VitronError

from .context import ServerContext, context, owner

router = APIRouter()

IMAGE_FORMATS = {"PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF"}
MULTIPART_OVERHEAD = 64 * 1024  # a form's own framing around its one file
_SUFFIX_TO_MEDIA = {suffix: media for media, suffix in MEDIA_TYPES.items()}


def too_large(what: str, limit: int, field: str = "file") -> TooLarge:
    unit = "pixels" if "pixel" in what else "bytes"
    setting = "VITRON_MAX_PIXELS" if unit == "pixels" else "VITRON_MAX_UPLOAD_BYTES"
    return TooLarge(f"{what}, over the limit of {limit} {unit}", field=field,
                    fix=f"send a smaller file, or raise {setting}")


async def read_body(request: Request, limit: int) -> bytes:
    """The upload's bytes: a multipart form's one file, or the raw body. More than `limit` bytes is refused as soon
    as it is seen (by Content-Length, or while reading a chunked body), before anything is parsed or stored."""
    form = request.headers.get("content-type", "").startswith("multipart/form-data")
    cap = limit + (MULTIPART_OVERHEAD if form else 0)
    length = request.headers.get("content-length", "")
    if length.isascii() and length.isdigit() and int(length) > cap:
        raise too_large(f"the upload is {int(length)} bytes", limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            raise too_large("the upload is larger", limit)
        chunks.append(chunk)
    body = b"".join(chunks)
    if form:
        request._body = body  # the form is parsed from these bytes, already counted
        parsed = await request.form(max_files=1, max_fields=8)
        try:
            upload = next((v for v in parsed.values() if not isinstance(v, str)), None)
            if upload is None:
                raise InvalidInput("the form holds no file", field="file", fix="send the file in a form field `file`")
            body = await upload.read(limit + 1)
        finally:
            await parsed.close()
    if len(body) > limit:
        raise too_large("the upload is larger", limit)
    if not body:
        raise InvalidInput("the upload is empty", field="file", fix="send an image or a video")
    return body


def store_upload(ctx: ServerContext, data: bytes, kind: str | None = None) -> ArtifactRef:
    """Store an image, mask or video from its bytes, by what they are: the name and the content type are not
    trusted. Refused before decoding: an image or video frame whose header says more pixels than the limit (the
    store's check, VITRON_MAX_PIXELS), a video of more pixels in all (VITRON_MAX_VIDEO_PIXELS)."""
    if (suffix := _video_suffix(data)) is not None:
        if kind not in (None, "video"):
            raise InvalidInput(f"the upload is a video, not {kind}", field="kind", fix="send kind=video, or none")
        return _store_video(ctx, data, suffix)
    from PIL import Image, UnidentifiedImageError

    neither = InvalidInput("the upload is neither an image (PNG, JPEG, WebP, BMP, GIF, TIFF) nor a video "
                           "(MP4, MOV, WebM, MKV, AVI)", field="file", fix="send an image or a video")
    try:
        ctx.store.check_image(data, name="the upload", field="file")  # the header only: nothing decoded yet
        with Image.open(io.BytesIO(data)) as image:
            if image.format not in IMAGE_FORMATS:
                raise UnidentifiedImageError(image.format)
            pixels = np.asarray(image.convert("L" if kind == "mask" else "RGB"))
    except (CorruptArtifact, UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, VitronError) and not isinstance(exc, CorruptArtifact):
            raise
        raise neither from None
    if kind == "mask":
        return ctx.store.put_mask(pixels > 127)
    if kind not in (None, "image"):
        raise InvalidInput(f"the upload is an image, not {kind}", field="kind", fix="send kind=image or mask")
    return ctx.store.put_image(pixels)


def _video_suffix(data: bytes) -> str | None:
    """The container a video's first bytes say (MP4 or QuickTime, Matroska or WebM, AVI), as a file ending."""
    if data[4:8] == b"ftyp":
        return ".mov" if data[8:12] == b"qt  " else ".mp4"
    if data[:4] == b"\x1a\x45\xdf\xa3":
        return ".webm" if b"webm" in data[:64] else ".mkv"
    if data[:4] == b"RIFF" and data[8:12] == b"AVI ":
        return ".avi"
    return None


def _store_video(ctx: ServerContext, data: bytes, suffix: str) -> ArtifactRef:
    unreadable = InvalidInput("the video cannot be read", field="file", fix="send an MP4, MOV, WebM, MKV or AVI file")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"upload{suffix}"
        path.write_bytes(data)
        try:  # the store reads the frame size and count from the headers and packets, before storing
            return ctx.store.import_video(path)
        except TooLarge as exc:  # its words, without the temporary file's name
            raise TooLarge(exc.problem.replace(str(path), "the video"), field="file", fix=exc.fix) from None
        except (CorruptArtifact, InvalidInput):
            raise unreadable from None


@router.post("/artifacts", status_code=201)
async def upload(request: Request, kind: str | None = None, owner: str | None = Depends(owner)) -> dict[str, Any]:
    """Upload an image, a mask (`?kind=mask`) or a video: multipart (one file) or the raw body."""
    ctx = context(request)
    data = await read_body(request, ctx.settings.max_upload_bytes)
    ref = await asyncio.to_thread(store_upload, ctx, data, kind)
    ctx.runs.add_upload(owner, ref)
    return ctx.describe(ref, request)


@router.get("/artifacts/{sha256}")
def artifact(request: Request, sha256: str, owner: str | None = Depends(owner)) -> dict[str, Any]:
    """An artifact the key's owner uploaded or made: its ref and a signed download link."""
    ctx = context(request)
    return ctx.describe(ctx.artifact(owner, sha256, "sha256"), request)


@router.get("/files/{name}", response_model=None)
def download(request: Request, name: str, exp: int, sig: str,
             frame: int | None = Query(None, ge=0, le=10**7)) -> FileResponse | Response:
    """The file behind a signed link (no key needed: the signature is the permission). Answers Range requests.
    `frame=N` on a video's link: that frame as a PNG (a page shows a video's per-frame masks over its player)."""
    ctx = context(request)
    sha256, _, suffix = name.partition(".")
    media_type = _SUFFIX_TO_MEDIA.get(f".{suffix}")
    gone = ArtifactNotFound("no such file, or the link expired", field="sig",
                            fix="ask the API for a new link (GET /artifacts/{sha256})")
    if media_type is None or not ctx.signer.check(sha256, exp, sig):
        raise gone
    kind = {"video": "video", "image": "image"}.get(media_type.split("/")[0], "text")
    try:
        path = ctx.store.path(ArtifactRef(sha256=sha256, kind=kind, media_type=media_type))
    except (VitronError, ValueError):
        raise gone from None  # never the store's own words: they name where it lives
    if frame is not None:
        if kind != "video":
            raise InvalidInput("only a video's link takes frame=N", field="frame", fix="leave frame out")
        return Response(_frame_png(ctx, ArtifactRef(sha256=sha256, kind="video", media_type=media_type), frame),
                        media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})
    return FileResponse(path, media_type=media_type, filename=name)


def _frame_png(ctx: ServerContext, ref: ArtifactRef, index: int) -> bytes:
    from PIL import Image

    try:
        pixels = next(iter(ctx.store.iter_frames(ref, index, index + 1)), None)
    except VitronError:
        pixels = None
    if pixels is None:
        raise ArtifactNotFound(f"the video has no frame {index}", field="frame", fix="ask for a frame it has")
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()
