"""What a stored artifact is, read from its object in the store rather than taken from whoever hands its ref over:
the shape from the file's header (nothing decoded), and whether the kind claimed fits the content (a mask is a
one-channel PNG, an image a three-channel one)."""

from __future__ import annotations

import json
import struct
from typing import Any

from memory import ArtifactStore
from schemas import ArtifactRef, CorruptArtifact, InvalidInput

_MEDIA = {"image": "image/", "mask": "image/", "video": "video/", "masks": "video/",
          "embedding": "application/vnd.safetensors", "boxes": "application/json", "text": "application/json"}
_MAX_SAFETENSORS_HEADER = 1 << 20  # a header of one tensor's name, dtype, shape and offsets is a few hundred bytes


def stored_ref(store: ArtifactStore, ref: ArtifactRef, *, field: str = "ref") -> ArtifactRef:
    """`ref` with the shape its stored content has. `InvalidInput` naming `field` when the kind claimed does not
    fit the content (or its media type); `ArtifactNotFound` when the store has no such object."""
    if not ref.media_type.startswith(_MEDIA[ref.kind]):
        raise InvalidInput(f"{ref.kind} {ref.short} is said to be {ref.media_type}, which no {ref.kind} is stored as",
                           field=field, fix="give the ref as the store or the session gave it")
    path = store.path(ref)
    shape: tuple[int, ...]
    if ref.kind in ("image", "mask"):
        shape = _image_shape(path, ref, field)
    elif ref.kind in ("video", "masks"):
        shape = _video_shape(path, ref)
    elif ref.kind == "embedding":
        shape = _tensor_shape(path, ref)
    else:
        value = store.get_json(ref)  # boxes and text are small JSON documents
        shape = (len(value),) if isinstance(value, list) else ()
    return ref if shape == ref.shape else ref.model_copy(update={"shape": shape})


def _image_shape(path: Any, ref: ArtifactRef, field: str) -> tuple[int, ...]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:  # the header only
            width, height = image.size
            bands = len(image.getbands())
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise CorruptArtifact(f"{ref.kind} {ref.short} is not a readable image", field=field) from None
    if (ref.kind == "mask" and bands != 1) or (ref.kind == "image" and bands not in (3, 4)):
        what = "a one-channel (mask)" if bands == 1 else f"a {bands}-channel"
        raise InvalidInput(f"{ref.short} is {what} image, not {'an' if ref.kind == 'image' else 'a'} {ref.kind}",
                           field=field, fix=f"give {'an image' if ref.kind == 'image' else 'a mask'} ref as the store "
                                            "or the session gave it")
    return (height, width) if ref.kind == "mask" else (height, width, 3)


def _video_shape(path: Any, ref: ArtifactRef) -> tuple[int, ...]:
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            # The count the container declares, else its packets counted (read, never decoded), as the store does.
            frames = stream.frames or sum(1 for packet in container.demux(stream) if packet.size)
            height, width = stream.height, stream.width
    except (av.error.FFmpegError, IndexError, OSError):
        raise CorruptArtifact(f"{ref.kind} {ref.short} is not a readable video", field="ref") from None
    return (frames, height, width) if ref.kind == "masks" else (frames, height, width, 3)


def _tensor_shape(path: Any, ref: ArtifactRef) -> tuple[int, ...]:
    """The shape in a safetensors file's JSON header (its first 8 bytes say the header's length)."""
    unreadable = CorruptArtifact(f"embedding {ref.short} is not a readable safetensors file", field="ref")
    with open(path, "rb") as file:
        head = file.read(8)
        if len(head) != 8:
            raise unreadable
        (length,) = struct.unpack("<Q", head)
        if length > _MAX_SAFETENSORS_HEADER:
            raise unreadable
        try:
            header = json.loads(file.read(length))
            return tuple(int(n) for n in header["tensor"]["shape"])
        except (ValueError, KeyError, TypeError):
            raise unreadable from None
