"""Artifacts over HTTP: uploads, checked before anything is decoded (a byte limit, a pixel limit read from the
header, the content sniffed, never trusted by its name), and downloads by signed URL (Range requests answered)."""

from __future__ import annotations

import asyncio
import io
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse

from schemas import MEDIA_TYPES, ArtifactNotFound, ArtifactRef, InvalidInput, VitronError

from .context import ServerContext

router = APIRouter()

IMAGE_FORMATS = {"PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF"}
_SUFFIX_TO_MEDIA = {suffix: media for media, suffix in MEDIA_TYPES.items()}


class TooLarge(InvalidInput):
    """An upload over the server's byte or pixel limit."""


def context(request: Request) -> ServerContext:
    return request.app.state.context


def owner(request: Request) -> str | None:
    return context(request).owner_of(request)


async def read_body(request: Request, limit: int) -> tuple[bytes, str]:
    """The upload's bytes and the name it came with: a multipart form's one file, or the raw body. More than `limit`
    bytes is refused as soon as it is seen (by Content-Length, or while reading)."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit + 64 * 1024:
        raise TooLarge(f"the upload is {int(length)} bytes, over the limit of {limit}", field="file",
                       fix="upload a smaller file, or raise VITRON_MAX_UPLOAD_BYTES")
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=8, max_part_size=limit)
        upload = next((v for v in form.values() if not isinstance(v, str)), None)
        if upload is None:
            raise InvalidInput("the form holds no file", field="file", fix="send the file in a form field `file`")
        data = await upload.read(limit + 1)
        name = upload.filename or ""
    else:
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise TooLarge(f"the upload is over the limit of {limit} bytes", field="file",
                               fix="upload a smaller file, or raise VITRON_MAX_UPLOAD_BYTES")
            chunks.append(chunk)
        data, name = b"".join(chunks), request.headers.get("x-filename", "")
    if len(data) > limit:
        raise TooLarge(f"the upload is over the limit of {limit} bytes", field="file",
                       fix="upload a smaller file, or raise VITRON_MAX_UPLOAD_BYTES")
    if not data:
        raise InvalidInput("the upload is empty", field="file", fix="send an image or a video")
    return data, name


def store_upload(ctx: ServerContext, data: bytes, kind: str | None = None) -> ArtifactRef:
    """Store an image, mask or video from its bytes, by what they are: the name and the content type are not
    trusted. Refused before decoding: an image whose header says more pixels than the limit."""
    max_pixels = ctx.settings.max_pixels
    if _is_video(data):
        if kind not in (None, "video"):
            raise InvalidInput(f"the upload is a video, not {kind}", field="kind", fix="send kind=video, or none")
        return _store_video(ctx, data, max_pixels)
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size  # read from the header: nothing decoded yet
            if image.format not in IMAGE_FORMATS:
                raise UnidentifiedImageError(image.format)
            if width * height > max_pixels:
                raise TooLarge(f"the image is {width}x{height} ({width * height} pixels), over the limit of "
                               f"{max_pixels}", field="file", fix="send a smaller image, or raise VITRON_MAX_PIXELS")
            pixels = np.asarray(image.convert("L" if kind == "mask" else "RGB"))
    except Image.DecompressionBombError:  # Pillow's own guard, far above ours: the header says too many pixels
        raise TooLarge(f"the image's header says more than {max_pixels} pixels", field="file",
                       fix="send a smaller image, or raise VITRON_MAX_PIXELS") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, VitronError):
            raise
        raise InvalidInput("the upload is neither an image (PNG, JPEG, WebP, BMP, GIF, TIFF) nor a video "
                           "(MP4, MOV, WebM, MKV, AVI)", field="file", fix="send an image or a video") from None
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


def _is_video(data: bytes) -> bool:
    return _video_suffix(data) is not None


def _store_video(ctx: ServerContext, data: bytes, max_pixels: int) -> ArtifactRef:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"upload{_video_suffix(data)}"
        path.write_bytes(data)
        try:
            ref = ctx.store.import_video(path)
        except VitronError as exc:
            raise InvalidInput(exc.problem, field="file", fix=exc.fix or "send a video PyAV can read") from None
    height, width = (ref.shape[1], ref.shape[2]) if len(ref.shape) >= 3 else (0, 0)
    if width * height > max_pixels:
        ctx.store.delete(ref)
        raise TooLarge(f"the video's frames are {width}x{height}, over the limit of {max_pixels} pixels",
                       field="file", fix="send a smaller video, or raise VITRON_MAX_PIXELS")
    return ref


@router.post("/artifacts", status_code=201)
async def upload(request: Request, kind: str | None = None, owner: str | None = Depends(owner)) -> dict[str, Any]:
    """Upload an image, a mask (`?kind=mask`) or a video: multipart (one file) or the raw body."""
    ctx = context(request)
    data, _ = await read_body(request, ctx.settings.max_upload_bytes)
    ref = await asyncio.to_thread(store_upload, ctx, data, kind)
    ctx.runs.add_upload(owner, ref)
    return ctx.describe(ref, request)


@router.get("/artifacts/{sha256}")
def artifact(request: Request, sha256: str, owner: str | None = Depends(owner)) -> dict[str, Any]:
    """An artifact the key's owner uploaded or made: its ref and a signed download link."""
    ctx = context(request)
    ref = ctx.runs.owned(owner, sha256)
    if ref is None:
        raise ArtifactNotFound(f"no artifact {sha256[:12]}", field="sha256", fix="use an artifact this key uploaded "
                               "or one of its threads made")
    return ctx.describe(ref, request)


@router.get("/files/{name}")
def download(request: Request, name: str, exp: int, sig: str) -> FileResponse:
    """The file behind a signed link (no key needed: the signature is the permission). Answers Range requests."""
    ctx = context(request)
    sha256, _, suffix = name.partition(".")
    media_type = _SUFFIX_TO_MEDIA.get(f".{suffix}")
    if media_type is None or not ctx.signer.check(sha256, exp, sig):
        raise ArtifactNotFound("no such file, or the link expired", field="sig",
                               fix="ask the API for a new link (GET /artifacts/{sha256})")
    try:
        path = ctx.store.path(ArtifactRef(sha256=sha256, kind=_kind_of(media_type), media_type=media_type))
    except ValueError:
        raise ArtifactNotFound("no such file", field="name", fix="use a link the API gave") from None
    return FileResponse(path, media_type=media_type, filename=name)


def _kind_of(media_type: str) -> str:
    return {"video": "video", "image": "image"}.get(media_type.split("/")[0], "text")
