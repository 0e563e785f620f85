"""References to content in the artifact store. Rows, messages and states hold these, never bytes."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

ArtifactKind = Literal["image", "mask", "video", "masks", "embedding", "boxes", "text"]
"""What an artifact is.

- `image`: RGB uint8 `[h, w, 3]`, stored as PNG.
- `mask`: boolean `[h, w]`, stored as 8-bit greyscale PNG (0 or 255).
- `video`: RGB frames `[n, h, w, 3]`, stored as MP4 (H.264) or as the container it was uploaded in.
- `masks`: per-frame boolean masks `[n, h, w]`, stored losslessly as FFV1 greyscale in Matroska.
- `embedding`: tensors, stored as safetensors.
- `boxes`, `text`: small JSON documents.
"""

MEDIA_TYPES: dict[str, str] = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "video/mp4": ".mp4",
    "video/x-matroska": ".mkv",
    "video/webm": ".webm",
    "video/quicktime": ".mov",
    "video/x-msvideo": ".avi",
    "application/vnd.safetensors": ".safetensors",
    "application/json": ".json",
}
"""Media types the store accepts, with the file ending each is stored under."""

SHA256_PATTERN = r"^[0-9a-f]{64}$"


class ArtifactRef(BaseModel):
    """Content hash plus what the content is. Small and JSON-safe by construction."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sha256: str = Field(pattern=SHA256_PATTERN, description="SHA-256 of the stored bytes, lowercase hex.")
    kind: ArtifactKind
    media_type: str = Field(description="How the bytes are encoded, e.g. image/png.")
    shape: tuple[Annotated[int, Field(ge=0)], ...] = Field(
        default=(), description="Array shape of the decoded content."
    )
    alias: str | None = Field(default=None, description="A session's name for it, such as img1.")

    @field_validator("media_type")
    @classmethod
    def _known_media_type(cls, value: str) -> str:
        if value not in MEDIA_TYPES:
            raise ValueError(f"{value!r} is not one of {sorted(MEDIA_TYPES)}")
        return value

    @property
    def short(self) -> str:
        return self.sha256[:12]
