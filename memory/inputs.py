"""What enters the store from outside (a path a user gave, an upload) and the limits it is held to, each checked before
the file is read whole or decoded; and the one clear error for a write the store's disk refuses."""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from schemas import InvalidInput, VitronError, VitronSettings


def _setting_default(name: str) -> int:
    return VitronSettings.model_fields[name].default


@dataclass(frozen=True)
class InputLimits:
    """How much a file from outside (a path a user gave, an upload) may hold, each checked before the file is read
    whole or decoded. The settings of the same names set them (VITRON_MAX_PIXELS, …), and the errors name those."""

    max_pixels: int = _setting_default("max_pixels")  # an image's, a mask's or one video frame's width x height
    max_video_pixels: int = _setting_default("max_video_pixels")  # a video's frames x width x height
    max_upload_bytes: int = _setting_default("max_upload_bytes")  # a file read whole (an image, a mask)

    @classmethod
    def from_settings(cls, settings: VitronSettings) -> InputLimits:
        return cls(settings.max_pixels, settings.max_video_pixels, settings.max_upload_bytes)


class TooLarge(InvalidInput):
    """A file over one of the input limits; the error names the setting that would let it in."""


class StoreUnwritable(VitronError):
    """The artifact store's folder cannot be written: its disk is full, it is read-only, or another user's."""


_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}
_NOT_WRITABLE = {errno.EROFS, errno.EACCES, errno.EPERM}


@contextlib.contextmanager
def writing(root: Path, *, denied: bool = True) -> Iterator[None]:
    """One clear error for a write the store's disk refuses: full (always), or read-only or not ours (`denied`: only
    around the store's own folders and temp files, where such an error cannot be about a file being read)."""
    try:
        yield
    except OSError as exc:
        fix = "point VITRON_HOME (or VITRON_ARTIFACTS_DIR) at a folder on a disk this user can write, with room"
        if exc.errno in _DISK_FULL:
            raise StoreUnwritable(f"the disk of the artifact store at {root} is full ({exc.strerror})",
                                  field="VITRON_HOME", fix=f"free space on it, or {fix}") from exc
        if denied and exc.errno in _NOT_WRITABLE:
            where = exc.filename or root
            raise StoreUnwritable(f"the artifact store at {root} cannot be written: {where}: {exc.strerror}",
                                  field="VITRON_HOME", fix=fix) from exc
        raise


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_COLOUR_AND_TEXT = {b"iCCP", b"sRGB", b"cHRM", b"gAMA", b"cICP", b"mDCV", b"cLLI", b"tEXt", b"zTXt", b"iTXt"}


def quiet_png(data: bytes) -> bytes:
    """A user's PNG without its colour-profile and text chunks, for OpenCV to decode: libpng prints a warning line on
    stderr for a profile it finds odd ("iCCP: known incorrect sRGB profile"), and OpenCV neither applies a profile
    nor reads the text, so the pixels are the same. Anything else (not a PNG, a damaged one) is left as it is."""
    if not data.startswith(_PNG_SIGNATURE):
        return data
    kept, at, dropped = [data[:8]], 8, False
    while at + 8 <= len(data):
        end = at + 12 + int.from_bytes(data[at:at + 4], "big")
        if data[at + 4:at + 8] in _PNG_COLOUR_AND_TEXT and end <= len(data):
            dropped = True
        else:
            kept.append(data[at:end])
        at = end
    kept.append(data[at:])
    return b"".join(kept) if dropped else data


def read_user_file(path: str | Path, field: str, max_bytes: int | None, probe: bool = False) -> bytes:
    """A file a user named, read whole (`probe`: only checked): refused when missing, empty, over `max_bytes` (its
    size first, so a huge file is never read) or unreadable, each error naming `field`."""
    src = Path(path)
    if not src.is_file():
        raise InvalidInput(f"no file at {src}", field=field, fix="check the path")
    size = src.stat().st_size
    if size == 0:
        raise InvalidInput(f"{src} is empty (0 bytes)", field=field, fix=f"give a non-empty {field} file")
    if max_bytes is not None and size > max_bytes:
        raise too_many_bytes(src, size, max_bytes, field)
    if probe:
        return b""
    try:
        with src.open("rb") as fh:
            data = fh.read(max_bytes + 1 if max_bytes is not None else -1)
    except PermissionError:
        raise InvalidInput(f"{src} cannot be read by this user", field=field, fix="check its permissions") from None
    if max_bytes is not None and len(data) > max_bytes:  # it grew since the stat
        raise too_many_bytes(src, len(data), max_bytes, field)
    return data


def too_many_bytes(src: Path, size: int, limit: int, field: str) -> TooLarge:
    return TooLarge(f"{src} is {size:,} bytes, over the limit of {limit:,}", field=field,
                    fix="give a smaller file, or raise VITRON_MAX_UPLOAD_BYTES")


def too_many_pixels(name: str, found: str, limit: int, field: str) -> TooLarge:
    return TooLarge(f"{name} is too large: {found}, over the limit of {limit:,}", field=field,
                    fix="give a smaller picture (downscale it), or raise VITRON_MAX_PIXELS")


def too_long(name: str, found: str, width: int, height: int, limit: int) -> TooLarge:
    return TooLarge(f"{name} is too large: {found} of {width}x{height}, over the limit of {limit:,} pixels in all "
                    "(frames x width x height)", field="video",
                    fix="give a shorter or smaller video (cut or downscale it), or raise VITRON_MAX_VIDEO_PIXELS")
